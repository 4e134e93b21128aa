"""Showers that stay on disk: a read-only, file-backed array of showers over one or more files.

:class:`DiskShowers` looks like a ``(N, n_voxels)`` numpy array of voxel energies (MeV) whose
rows are the showers of several CaloChallenge / CaloGAN files one after the other, but it
holds nothing in memory: ``x[lo:hi]``, ``x[index_array]`` and ``x[mask]`` read (and validate)
those rows from the files and return an ordinary numpy array. :class:`DiskShowerSet` pairs it
with the incident energies (N floats, MeV, the only per-shower data kept in memory) and the
geometry, and can stand in for a :class:`~caloforge.data.ShowerSet` wherever the showers are
only read in row blocks (the evaluation: features, histograms, classifier inputs, PRDC).

Reads use :func:`caloforge.data._read_rows` (whole blocks, validated as they are read, one-line
errors naming the file and the row), so a 16 GB dataset-3 pair costs one block of memory.

Example:
    >>> ss = open_showers(["dataset_3_3.hdf5", "dataset_3_4.hdf5"])  # doctest: +SKIP
    >>> len(ss), ss.showers.shape  # doctest: +SKIP
    (100000, (100000, 40500))
    >>> block = ss.showers[0:500]  # an ndarray of 500 showers  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from caloforge.data import FileInfo, _open, _read_rows, chunk_rows, validate
from caloforge.errors import DataError
from caloforge.geometry import Geometry

__all__ = ["DiskShowerSet", "DiskShowers", "open_showers"]


class DiskShowers:
    """Read-only ``(N, n_voxels)`` array-like of the showers of ``infos`` (rows of the files in
    order), optionally restricted to the rows ``rows`` (sorted global row numbers).

    Indexing with an int, a slice, an integer array or a boolean mask returns a numpy array
    (the file dtype); :meth:`select` returns a restricted view without reading anything.
    """

    ndim = 2

    def __init__(self, infos: Sequence[FileInfo], rows: np.ndarray | None = None,
                 clip_negative: bool = False) -> None:
        self.infos = list(infos)
        sizes = [i.n_showers for i in self.infos]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.clip_negative = clip_negative
        self.dtype = np.result_type(*[i.dtype for i in self.infos])
        n = int(self._starts[-1]) if self.rows is None else len(self.rows)
        self.shape = (n, self.infos[0].n_voxels)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        """Number of voxel values."""
        return self.shape[0] * self.shape[1]

    def _positions(self, key: object) -> np.ndarray | slice:
        """``key`` as a slice of step 1 or an integer array of positions in this view."""
        n = len(self)
        if isinstance(key, slice):
            lo, hi, step = key.indices(n)
            return slice(lo, max(lo, hi)) if step == 1 else np.arange(lo, hi, step)
        if isinstance(key, int | np.integer):
            k = int(key) + (n if key < 0 else 0)
            if not 0 <= k < n:
                raise IndexError(f"row {key} out of range for {n} showers")
            return np.array([k])
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask of shape {idx.shape} for {n} showers")
            return np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise IndexError(f"expected a row index (int, slice, int array or mask), found "
                             f"{idx.dtype}")
        idx = idx.reshape(-1).astype(np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} showers")
        return idx

    def _global(self, pos: np.ndarray | slice) -> np.ndarray | slice:
        if self.rows is None:
            return pos
        return self.rows[pos]

    def __getitem__(self, key: object) -> np.ndarray:
        if isinstance(key, tuple):
            rows, *cols = key
            return self[rows][(slice(None), *cols)]
        pos = self._positions(key)
        out = self._read(self._global(pos))
        return out[0] if isinstance(key, int | np.integer) else out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def select(self, index: object) -> DiskShowers:
        """The rows ``index`` (slice, int array, mask) as a new lazy view (nothing is read).
        Rows are kept in the order given."""
        pos = self._positions(index)
        if isinstance(pos, slice):
            pos = np.arange(pos.start, pos.stop)
        return DiskShowers(self.infos, np.asarray(self._global(pos)), self.clip_negative)

    def blocks(self, rows: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(lo, hi, showers[lo:hi])`` for consecutive blocks of ``rows`` showers (default
        about 64 MiB)."""
        step = rows or chunk_rows(self.shape[1], self.dtype.itemsize)
        for lo in range(0, len(self), step):
            hi = min(lo + step, len(self))
            yield lo, hi, self[lo:hi]

    # -- reading ------------------------------------------------------------------------------
    def _read(self, rows: np.ndarray | slice) -> np.ndarray:
        """Global ``rows`` (a step-1 slice or an int array in any order) from the files."""
        if isinstance(rows, slice):
            out = np.empty((rows.stop - rows.start, self.shape[1]), dtype=self.dtype)
            self._read_span(rows.start, rows.stop, out)
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        block = chunk_rows(self.shape[1], self.dtype.itemsize)
        k = 0
        while k < len(srt):
            lo = int(srt[k])
            f = int(np.searchsorted(self._starts, lo, side="right")) - 1
            limit = min(lo + block, int(self._starts[f + 1]))
            j = int(np.searchsorted(srt, limit, side="left"))  # rows in [lo, limit)
            hi = int(srt[j - 1]) + 1
            tmp = np.empty((hi - lo, self.shape[1]), dtype=self.dtype)
            self._read_span(lo, hi, tmp)  # the span from the first to the last wanted row
            out[order[k:j]] = tmp[srt[k:j] - lo]
            k = j
        return out

    def _read_span(self, lo: int, hi: int, out: np.ndarray) -> None:
        """Global rows ``lo:hi`` (possibly across files) into ``out``."""
        while lo < hi:
            f = int(np.searchsorted(self._starts, lo, side="right")) - 1
            info = self.infos[f]
            base = int(self._starts[f])
            stop = min(hi, int(self._starts[f + 1]))
            dest = out[: stop - lo]
            with _open(info.path) as fh:
                if info.dtype == self.dtype and dest.flags.c_contiguous:
                    _read_rows(fh, info, lo - base, stop - base, dest, self.clip_negative)
                else:
                    _, part = _read_rows(fh, info, lo - base, stop - base,
                                         clip_negative=self.clip_negative)
                    dest[...] = part
            out = out[stop - lo:]
            lo = stop


def _energies(info: FileInfo) -> np.ndarray:
    """Validated incident energies (N,) of one file in MeV (CaloGAN files store GeV)."""
    key, unit = (("incident_energies", 1.0) if info.format == "calochallenge"
                 else ("energy", 1000.0))
    with _open(info.path) as fh:
        e = np.asarray(fh[key][:], dtype=np.float64).reshape(-1)
    validate(e, np.empty((0, info.n_voxels)), info.path, fields=(key, "showers"))
    return e * unit


class DiskShowerSet:
    """A :class:`~caloforge.data.ShowerSet` whose showers stay in their files.

    Attributes:
        e_inc: Incident energies (N,), MeV, in memory.
        showers: :class:`DiskShowers` (N, n_voxels), MeV, read on indexing.
        geometry: The common geometry of the files.
        paths: The files, in row order.
    """

    def __init__(self, e_inc: np.ndarray, showers: DiskShowers, geometry: Geometry) -> None:
        self.e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
        self.showers = showers
        self.geometry = geometry
        if len(self.e_inc) != len(showers):
            raise DataError(f"{self.paths[0]}[showers]: expected {len(self.e_inc)} rows, found "
                            f"{len(showers)}")

    @property
    def paths(self) -> list[Path]:
        return [i.path for i in self.showers.infos]

    def __len__(self) -> int:
        return len(self.e_inc)

    def subset(self, index: np.ndarray | slice) -> DiskShowerSet:
        """The showers at ``index`` (index array, mask or slice), still on disk."""
        return DiskShowerSet(self.e_inc[index], self.showers.select(index), self.geometry)

    def layer_energies(self) -> np.ndarray:
        """Per-layer energy sums (N, n_layers) in MeV, block by block."""
        out = np.empty((len(self), self.geometry.n_layers))
        for lo, hi, x in self.showers.blocks():
            out[lo:hi] = self.geometry.layer_energies(x)
        return out


def open_showers(paths: str | os.PathLike | Sequence[str | os.PathLike],
                 geometry: Geometry | str | None = None, clip_negative: bool = False
                 ) -> DiskShowerSet:
    """The showers of one or several files (all on one geometry) as a :class:`DiskShowerSet`.

    Only keys, shapes and the incident energies are read here; the voxels are read and
    validated when indexed.

    Raises:
        DataError / GeometryError: a missing, damaged or empty file, or files of different
            geometries (one line naming the file, expected and found).
    """
    from caloforge.stream import FileSource  # the file-list checks of the streamed source

    source = FileSource(paths, geometry, clip_negative=clip_negative)
    for info in source.infos:
        if info.n_showers == 0:
            raise DataError(f"{info.path}[showers]: expected showers to evaluate, found 0 rows")
    e_inc = np.concatenate([_energies(i) for i in source.infos])
    return DiskShowerSet(e_inc, DiskShowers(source.infos, clip_negative=clip_negative),
                         source.geometry)
