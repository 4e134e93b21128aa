"""Atomic, exclusive file output: write to a temporary sibling, fsync, then publish.

A crash or exception never leaves a half-written result at the final path, and an existing
output is only replaced when the caller says so:

* **exclusive** (``overwrite=False``): the finished temporary file is published with
  ``os.link(tmp, path)``, which fails when ``path`` exists. Creating the name and filling it
  are one step, so of two concurrent writers exactly one succeeds and the other gets a
  one-line :class:`~caloforge.errors.CaloforgeError`; neither result is lost or mixed.
* **replace** (``overwrite=True``): ``os.replace``, so the last writer wins, whole.
* **inputs are never outputs**: paths registered with :func:`protect_inputs` (the CLI
  registers every input file of a command) are refused as outputs, ``overwrite`` or not.
* **no debris**: the temporary file ``.NAME.PID.tmp`` is removed on any exception, on
  SIGINT and on SIGTERM (see :func:`signal_cleanup`); those of processes that died
  harder (SIGKILL, power loss) are removed by the next write into the same directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from caloforge.errors import CaloforgeError

#: Temporary names: ``.NAME.PID.tmp`` (the PID tells whether the writer is still alive).
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
#: Real paths that the running command reads and therefore must never write.
_PROTECTED: dict[str, str] = {}
#: Temporary paths of this process that are being written.
_LIVE: set[str] = set()
_counter = iter(range(1, 1 << 62))
_lock = threading.Lock()


class Terminated(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """Raised in the main thread when the process receives SIGTERM, so that every ``finally``
    (temporary files, open HDF5 files) runs before the process exits."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def signal_cleanup() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (SIGINT already raises
    KeyboardInterrupt), so that a terminated command removes its temporary files; the
    previous handler is restored afterwards. A no-op outside the main thread."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, previous)


def _key(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


@contextlib.contextmanager
def protect_inputs(paths: Iterable[str | os.PathLike | None]) -> Iterator[None]:
    """While the block runs, refuse every output that resolves to one of ``paths``.

    Symbolic links and ``..`` are resolved (``os.path.realpath``) and hard links to an
    existing input are recognised (same device and inode).
    """
    added = []
    for p in paths:
        if p is None or str(p) == "":
            continue
        k = _key(p)
        if k not in _PROTECTED:
            _PROTECTED[k] = os.fspath(p)
            added.append(k)
    try:
        yield
    finally:
        for k in added:
            _PROTECTED.pop(k, None)


def _check_not_input(path: Path) -> None:
    if not _PROTECTED:
        return
    k = _key(path)
    given = _PROTECTED.get(k)
    if given is None and path.exists():
        for other, name in _PROTECTED.items():
            with contextlib.suppress(OSError):
                if os.path.exists(other) and os.path.samefile(other, path):
                    given = name
                    break
    if given is not None:
        raise CaloforgeError(f"{path}: expected an output path that is not one of this "
                             f"command's inputs, found the input {given} (choose another "
                             f"output; --overwrite never replaces an input)")


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to clobber an existing ``path`` unless ``overwrite`` is set, and refuse an
    input of the running command (see :func:`protect_inputs`) in any case."""
    path = Path(path)
    if path.is_dir():
        raise CaloforgeError(f"{path}: expected an output file path, found a directory")
    _check_not_input(path)
    if path.exists() and not overwrite:
        raise CaloforgeError(
            f"{path}: output exists; expected a new path, found an existing file (use --overwrite)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise CaloforgeError(
            f"{path}: expected an existing output directory, found no directory {path.parent}"
        )
    if not parent.is_dir():
        raise CaloforgeError(f"{path}: expected an output directory, found {path.parent} is a "
                             f"file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CaloforgeError(f"{path}: expected a writable output directory, found "
                             f"{path.parent} not writable")
    return path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this one counts; another user's counts too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def clean_stale(directory: str | os.PathLike) -> list[Path]:
    """Remove the ``.NAME.PID.tmp`` files in ``directory`` whose process no longer exists
    (left by a writer killed with SIGKILL); return what was removed. Best effort."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _tmp_name(path: Path) -> Path:
    """``.NAME.PID.tmp``; a second concurrent writer in this process gets ``NAME.N``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _lock:
        while tmp.exists() or str(tmp) in _LIVE:
            tmp = path.with_name(f".{path.name}.{next(_counter)}.{os.getpid()}.tmp")
        _LIVE.add(str(tmp))
    return tmp


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``: replace, or create-if-absent in one step."""
    if overwrite:
        _check_not_input(path)
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CaloforgeError(f"{path}: output exists; expected a new path, found a file that "
                             f"another writer created meanwhile (use --overwrite)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                             errno.EMLINK, errno.ENOSYS):
            raise
        # no hard links on this file system: claim the name exclusively, then replace it
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise CaloforgeError(f"{path}: output exists; expected a new path, found a file "
                                 f"that another writer created meanwhile (use --overwrite)"
                                 ) from None
        os.close(fd)
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and published at ``path``.

    Without ``overwrite`` publishing is exclusive (fails with :class:`CaloforgeError` if
    ``path`` appeared meanwhile); with it, ``path`` is replaced whole. On any exception,
    SIGINT or SIGTERM the temporary file is removed and ``path`` is untouched. Stale
    temporary files of dead processes in the same directory are removed first.

    Example:
        >>> with atomic_path("out.h5", overwrite=True) as tmp:  # doctest: +SKIP
        ...     write_something(tmp)
    """
    path = check_writable(path, overwrite)
    clean_stale(path.parent)
    tmp = _tmp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite)
        _fsync_dir(path.parent)
    finally:
        try:
            if tmp.exists():
                tmp.unlink()
        finally:
            with _lock:
                _LIVE.discard(str(tmp))


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
