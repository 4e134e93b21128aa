"""Atomic file output: write to a temporary sibling, fsync, then rename.

A crash or exception never leaves a half-written result at the final path, and an existing
output is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from caloforge.errors import CaloforgeError


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to clobber an existing ``path`` unless ``overwrite`` is set."""
    path = Path(path)
    if path.is_dir():
        raise CaloforgeError(f"{path}: expected an output file path, found a directory")
    if path.exists() and not overwrite:
        raise CaloforgeError(
            f"{path}: output exists; expected a new path, found an existing file (use --overwrite)"
        )
    if not path.parent.exists():
        raise CaloforgeError(
            f"{path}: expected an existing output directory, found no directory {path.parent}"
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed to ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.

    Example:
        >>> with atomic_path("out.h5", overwrite=True) as tmp:  # doctest: +SKIP
        ...     write_something(tmp)
    """
    path = check_writable(path, overwrite)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: not every platform can fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
