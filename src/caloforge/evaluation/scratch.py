"""Classifier inputs on disk: a scratch file of stacked inputs, read batch by batch.

For showers that stay in their files (:class:`caloforge.diskset.DiskShowerSet`), the inputs of
a classifier test (``cls-low``: N x 40,501 float32 per side on dataset 3, 16 GB for 100k
showers) are written block by block into one raw scratch file under the output directory:
the generated rows first, then the reference rows. :class:`ScratchRows` reads rows of it by
number through a memory map that is opened for one read and closed right after, so the pages
it touched leave the process (the page cache keeps them; RSS does not grow with the file).

The FPD/KPD inputs (the ``cls-high`` vectors of both sides) go through the same kind of
file, read in drawn batches, and the high-level features through a column file
(:mod:`caloforge.evaluation.feature_store`): nothing per shower stays in memory.

The file is named ``.NAME.PID.tmp`` like every temporary file of caloforge
(:mod:`caloforge.atomic`): it is removed when the test ends, on any exception, on SIGINT and
SIGTERM, and the debris of a killed process is removed by the next write into that directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from caloforge.errors import DataError


class ScratchRows:
    """Stacked inputs ``[generated; reference]`` of ``dim`` columns in the raw file ``path``
    (C order, ``dtype``), read by row number; the interface of
    :class:`caloforge.evaluation.classifier.PairRows`."""

    def __init__(self, path: Path, n_gen: int, n_ref: int, dim: int, dtype: np.dtype) -> None:
        self.path, self.n_gen, self.n_ref, self.dim = Path(path), n_gen, n_ref, dim
        self.dtype = np.dtype(dtype)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (in that order, repeats allowed) as an in-memory (len(rows), dim)
        array. The file is mapped one window of at most :data:`WINDOW_BYTES` at a time and
        unmapped right after, so the pages a read touches never exceed a window plus the
        result, whatever the file's size (a draw of 50,000 rows of a 100k-row file would
        otherwise touch nearly all of it)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")  # ascending reads: sequential on disk
        ordered = rows[order]
        row_bytes = self.dim * self.dtype.itemsize
        span = max(1, WINDOW_BYTES // row_bytes)  # rows per window
        start = 0
        while start < len(ordered):
            first = int(ordered[start])
            stop = int(np.searchsorted(ordered, first + span, side="left"))
            last = int(ordered[stop - 1])
            mm = np.memmap(self.path, dtype=self.dtype, mode="r", offset=first * row_bytes,
                           shape=(last - first + 1, self.dim))
            try:
                out[order[start:stop]] = mm[ordered[start:stop] - first]
            finally:
                del mm  # unmapped: the touched pages stop counting as this process's memory
            start = stop
        return out


#: Largest part of a scratch file mapped at once by :meth:`ScratchRows.take`.
WINDOW_BYTES = 64 * 2**20


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse (one line) when ``directory`` has fewer than ``needed`` bytes free (plus 1 %
    and 64 MiB of slack), before a byte is written."""
    free = shutil.disk_usage(directory).free
    if free < needed * 1.01 + 64 * 2**20:
        raise DataError(f"{directory}: expected {needed / 1e9:.2f} GB free for {what}, found "
                        f"{free / 1e9:.2f} GB (write the output, -o, to a larger disk)")


def write_scratch(path: Path, sides: Iterable[Iterable[tuple[int, int, np.ndarray]]],
                  rows: int | None = None) -> ScratchRows:
    """Write the blocks of the generated, then the reference input (each an iterable of
    ``(lo, hi, block)`` in row order) into ``path``; return its reader. With ``rows`` (the
    total of both sides) the free disk space is checked once the row width is known."""
    counts, dim, dtype = [], None, None
    with open(path, "wb") as fh:
        for blocks in sides:
            n = 0
            for lo, hi, block in blocks:
                if lo != n or hi - lo != len(block):
                    raise DataError(f"{path}: expected input rows from {n}, found {lo}..{hi}")
                if dim is None:
                    dim, dtype = block.shape[1], block.dtype
                    if rows is not None:
                        check_free_space(path.parent, rows * dim * dtype.itemsize,
                                         f"the scratch file of {rows:,} classifier inputs "
                                         f"x {dim:,} values ({path.name})")
                np.ascontiguousarray(block, dtype=dtype).tofile(fh)
                n = hi
            counts.append(n)
    if dim is None:
        raise DataError(f"{path}: expected classifier inputs, found no rows")
    return ScratchRows(path, counts[0], counts[1], dim, dtype)


@contextlib.contextmanager
def scratch_file(directory: str | os.PathLike, name: str) -> Iterator[Path]:
    """A new scratch path ``directory/.NAME.PID.tmp``, removed when the block ends (also on
    an exception, SIGINT or SIGTERM). ``directory`` is created if needed and removed again
    if it was created here and is left empty."""
    from caloforge.atomic import clean_stale, signal_cleanup

    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    clean_stale(directory)
    path = directory / f".{name}.{os.getpid()}.tmp"
    k = 0
    while path.exists():
        k += 1
        path = directory / f".{name}.{k}.{os.getpid()}.tmp"
    try:
        with signal_cleanup():
            yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty
