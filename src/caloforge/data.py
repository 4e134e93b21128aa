"""Showers in memory and on disk: :class:`ShowerSet` and the CaloChallenge / CaloGAN files.

CaloChallenge HDF5 (the official layout): ``incident_energies`` (N, 1) in MeV and ``showers``
(N, n_voxels) in MeV, voxels in (layer, alpha, r) order with r fastest; gzip optional; float32
or float64. CaloGAN HDF5: ``energy`` (N, 1) in **GeV**, ``layer_0`` (N, 3, 96), ``layer_1``
(N, 12, 12), ``layer_2`` (N, 12, 6) in MeV and ``overflow`` (N, 3).

Every reader validates what it reads (finite values, non-negative energies, E_inc > 0, the
voxel count of the geometry) and raises :class:`~caloforge.errors.DataError` with one line that
names the file and the field. Reading and writing go chunk by chunk, so a 16 GB dataset-3 file
never has to fit in memory; writes are atomic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from caloforge.atomic import atomic_path
from caloforge.errors import DataError, GeometryError, where
from caloforge.geometry import Geometry

CALOGAN_KEYS = ("layer_0", "layer_1", "layer_2")
#: Showers per read/write chunk (rows); ~50 MB at 6480 float64 voxels.
DEFAULT_CHUNK = 1000


@dataclass
class ShowerSet:
    """Incident energies and voxel energies on one geometry.

    Attributes:
        e_inc: Incident energies, shape (N,), MeV.
        showers: Voxel energies, shape (N, n_voxels), MeV, geometry voxel order.
        geometry: The :class:`~caloforge.geometry.Geometry` the voxels live on.
    """

    e_inc: np.ndarray
    showers: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        self.e_inc = np.asarray(self.e_inc).reshape(-1)
        self.showers = np.asarray(self.showers)
        if self.showers.ndim != 2 or len(self.showers) != len(self.e_inc):
            raise DataError(
                f"<memory>[showers]: expected shape (N={len(self.e_inc)}, "
                f"{self.geometry.n_voxels}), found {self.showers.shape}"
            )
        if self.showers.shape[1] != self.geometry.n_voxels:
            raise GeometryError(
                f"<memory>[showers]: expected {self.geometry.n_voxels} voxels for geometry "
                f"{self.geometry.name}, found {self.showers.shape[1]}"
            )

    def __len__(self) -> int:
        return len(self.e_inc)

    def subset(self, index: np.ndarray | slice) -> ShowerSet:
        """The showers at ``index`` (an index array, mask or slice)."""
        return ShowerSet(self.e_inc[index], self.showers[index], self.geometry)

    def layer_energies(self) -> np.ndarray:
        """Per-layer energy sums (N, n_layers) in MeV."""
        return self.geometry.layer_energies(self.showers)


# --------------------------------------------------------------------------------------------
# set operations


def concat(sets: Sequence[ShowerSet]) -> ShowerSet:
    """Concatenate shower sets on the same geometry."""
    if not sets:
        raise DataError("concat: expected at least one ShowerSet, found none")
    geo = sets[0].geometry
    for s in sets[1:]:
        if s.geometry.n_voxels != geo.n_voxels or s.geometry.name != geo.name:
            raise GeometryError(
                f"concat: expected geometry {geo.name}, found {s.geometry.name}"
            )
    return ShowerSet(np.concatenate([s.e_inc for s in sets]),
                     np.concatenate([s.showers for s in sets]), geo)


def subsample(s: ShowerSet, n: int, seed: int = 0) -> ShowerSet:
    """``n`` showers drawn without replacement (order preserved)."""
    if not 0 < n <= len(s):
        raise DataError(f"subsample: expected 0 < n <= {len(s)}, found n={n}")
    idx = np.sort(np.random.default_rng(seed).choice(len(s), n, replace=False))
    return s.subset(idx)


def split(s: ShowerSet, fractions: Sequence[float] = (0.8, 0.1, 0.1),
          seed: int = 0) -> tuple[ShowerSet, ...]:
    """Shuffle with ``seed`` and split into parts of the given fractions (e.g. train/val/test)."""
    f = np.asarray(fractions, dtype=float)
    if np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise DataError(f"split: expected non-negative fractions summing to 1, found {list(f)}")
    perm = np.random.default_rng(seed).permutation(len(s))
    cuts = np.round(np.cumsum(f)[:-1] * len(s)).astype(int)
    return tuple(s.subset(np.sort(part)) for part in np.split(perm, cuts))


# --------------------------------------------------------------------------------------------
# validation


def validate(e_inc: np.ndarray, showers: np.ndarray, path: object = None, offset: int = 0,
             clip_negative: bool = False) -> np.ndarray:
    """Check one chunk of values; return the showers (clipped at 0 when asked).

    Raises:
        DataError: NaN/inf anywhere, E_inc <= 0, or a negative voxel (unless ``clip_negative``).
    """
    bad = ~np.isfinite(e_inc)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where(path, 'incident_energies')}: expected finite energies, "
                        f"found {e_inc[i]} at row {offset + i}")
    if (e_inc <= 0).any():
        i = int(np.argmax(e_inc <= 0))
        raise DataError(f"{where(path, 'incident_energies')}: expected E_inc > 0 MeV, "
                        f"found {e_inc[i]} at row {offset + i}")
    finite = np.isfinite(showers)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise DataError(f"{where(path, 'showers')}: expected finite voxel energies, found "
                        f"{showers[r, c]} at row {offset + r}, voxel {c}")
    if showers.size and showers.min() < 0:
        if clip_negative:
            return np.maximum(showers, 0, dtype=showers.dtype)
        r, c = np.argwhere(showers < 0)[0]
        raise DataError(f"{where(path, 'showers')}: expected voxel energies >= 0, found "
                        f"{showers[r, c]} at row {offset + r}, voxel {c} "
                        f"(use --clip-negative to set them to 0)")
    return showers


# --------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class FileInfo:
    """What a shower file holds, without reading the showers."""

    path: Path
    format: str  # "calochallenge" or "calogan"
    n_showers: int
    n_voxels: int
    dtype: np.dtype
    geometry: Geometry


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: expected a shower file, found no such file")
    if path.is_dir():
        raise DataError(f"{path}: expected an HDF5 file, found a directory")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: expected an HDF5 file, found unreadable data ({exc})") from None


def inspect(path: str | os.PathLike, geometry: Geometry | str | None = None) -> FileInfo:
    """Format, size and geometry of a shower file; checks keys and shapes."""
    path = Path(path)
    with _open(path) as fh:
        return _inspect(fh, path, geometry)


def _resolve_geometry(geometry: Geometry | str | None) -> Geometry | None:
    if isinstance(geometry, str):
        return Geometry.preset(geometry) if not geometry.endswith(".xml") else Geometry.from_xml(
            geometry)
    return geometry


def _inspect(fh: h5py.File, path: Path, geometry: Geometry | str | None) -> FileInfo:
    geometry = _resolve_geometry(geometry)
    keys = set(fh.keys())
    try:
        if "showers" in keys or "incident_energies" in keys:
            for key in ("incident_energies", "showers"):
                if key not in keys:
                    raise DataError(f"{where(path, key)}: expected key {key!r} "
                                    f"(CaloChallenge layout), found keys {sorted(keys)}")
            e, s = fh["incident_energies"], fh["showers"]
            if not isinstance(e, h5py.Dataset) or not isinstance(s, h5py.Dataset):
                raise DataError(f"{path}: expected datasets 'incident_energies' and 'showers', "
                                f"found groups")
            if s.ndim != 2:
                raise DataError(f"{where(path, 'showers')}: expected shape (N, n_voxels), "
                                f"found {s.shape}")
            if e.shape not in ((s.shape[0], 1), (s.shape[0],)):
                raise DataError(f"{where(path, 'incident_energies')}: expected shape "
                                f"({s.shape[0]}, 1) to match showers, found {e.shape}")
            n, n_vox, fmt, dtype = s.shape[0], s.shape[1], "calochallenge", s.dtype
        elif any(k in keys for k in CALOGAN_KEYS) or "energy" in keys:
            for key in ("energy", *CALOGAN_KEYS):
                if key not in keys:
                    raise DataError(f"{where(path, key)}: expected key {key!r} (CaloGAN layout), "
                                    f"found keys {sorted(keys)}")
            n = fh["energy"].shape[0]
            for key in CALOGAN_KEYS:
                if fh[key].ndim != 3 or fh[key].shape[0] != n:
                    raise DataError(f"{where(path, key)}: expected shape ({n}, rows, cols), "
                                    f"found {fh[key].shape}")
            n_vox = sum(int(np.prod(fh[k].shape[1:])) for k in CALOGAN_KEYS)
            fmt, dtype = "calogan", fh["layer_0"].dtype
            if geometry is None:
                geometry = Geometry.preset("calogan")
        else:
            raise DataError(f"{path}: expected keys 'incident_energies' and 'showers' "
                            f"(CaloChallenge) or 'energy', 'layer_0..2' (CaloGAN), "
                            f"found {sorted(keys) or 'no keys'}")
    except (KeyError, OSError, RuntimeError) as exc:
        raise DataError(f"{path}: expected a readable HDF5 file, found a damaged one ({exc})") \
            from None
    if geometry is None:
        geometry = Geometry.for_voxels(n_vox, path)
    if geometry.n_voxels != n_vox:
        raise GeometryError(f"{where(path, 'showers')}: expected {geometry.n_voxels} voxels for "
                            f"geometry {geometry.name}, found {n_vox}")
    return FileInfo(path, fmt, int(n), int(n_vox), np.dtype(dtype), geometry)


def _read_rows(fh: h5py.File, info: FileInfo, start: int, stop: int
               ) -> tuple[np.ndarray, np.ndarray]:
    try:
        if info.format == "calochallenge":
            e = fh["incident_energies"][start:stop].reshape(-1)
            s = fh["showers"][start:stop]
        else:
            e = fh["energy"][start:stop].reshape(-1) * 1000.0  # GeV -> MeV
            s = np.concatenate([fh[k][start:stop].reshape(stop - start, -1)
                                for k in CALOGAN_KEYS], axis=1)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"{info.path}: expected readable rows {start}..{stop}, found a damaged "
                        f"or truncated file ({exc})") from None
    return e, s


def iter_showers(path: str | os.PathLike, batch_size: int = DEFAULT_CHUNK,
                 geometry: Geometry | str | None = None, start: int = 0,
                 stop: int | None = None, clip_negative: bool = False) -> Iterator[ShowerSet]:
    """Yield validated :class:`ShowerSet` chunks of ``batch_size`` showers.

    Memory is bounded by one chunk whatever the file size.
    """
    if batch_size < 1:
        raise DataError(f"batch_size: expected a positive integer, found {batch_size}")
    with _open(path) as fh:
        info = _inspect(fh, Path(path), geometry)
        stop = info.n_showers if stop is None else min(stop, info.n_showers)
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            e, s = _read_rows(fh, info, lo, hi)
            s = validate(e, s, info.path, lo, clip_negative)
            yield ShowerSet(e, s, info.geometry)


def read_showers(path: str | os.PathLike, geometry: Geometry | str | None = None,
                 start: int = 0, stop: int | None = None, clip_negative: bool = False,
                 chunk_size: int = 10 * DEFAULT_CHUNK) -> ShowerSet:
    """Read (part of) a CaloChallenge or CaloGAN file into one :class:`ShowerSet`.

    The geometry is inferred from the voxel count unless given (a preset name, an XML path
    or a :class:`Geometry`). Values are validated chunk by chunk; the voxel dtype is kept.

    Example:
        >>> ss = read_showers("dataset_1_photons_1.hdf5")  # doctest: +SKIP
        >>> ss.showers.shape  # doctest: +SKIP
        (121000, 368)
    """
    with _open(path) as fh:
        info = _inspect(fh, Path(path), geometry)
        stop = info.n_showers if stop is None else min(stop, info.n_showers)
        n = max(stop - start, 0)
        e_all = np.empty(n, dtype=np.float64)
        s_all = np.empty((n, info.n_voxels), dtype=info.dtype)
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            e, s = _read_rows(fh, info, lo, hi)
            s_all[lo - start:hi - start] = validate(e, s, info.path, lo, clip_negative)
            e_all[lo - start:hi - start] = e
    return ShowerSet(e_all, s_all, info.geometry)


# --------------------------------------------------------------------------------------------
# writing


class ShowerWriter:
    """Write showers chunk by chunk into a new file, atomically.

    The file appears at ``path`` only when the ``with`` block ends without an exception.

    Example:
        >>> with ShowerWriter("out.h5", geometry) as w:  # doctest: +SKIP
        ...     for chunk in chunks:
        ...         w.append(chunk.e_inc, chunk.showers)
    """

    def __init__(self, path: str | os.PathLike, geometry: Geometry, *, fmt: str = "calochallenge",
                 dtype: np.dtype | str = np.float32, compression: str | None = "gzip",
                 overwrite: bool = False, attrs: dict | None = None,
                 chunk_rows: int = DEFAULT_CHUNK) -> None:
        if fmt not in ("calochallenge", "calogan"):
            raise DataError(f"format: expected 'calochallenge' or 'calogan', found {fmt!r}")
        if fmt == "calogan" and geometry.name != "calogan":
            raise GeometryError(f"{path}: expected the calogan geometry for a CaloGAN file, "
                                f"found {geometry.name}")
        self.path, self.geometry, self.fmt = Path(path), geometry, fmt
        self.dtype, self.compression = np.dtype(dtype), compression
        self.overwrite, self.attrs, self.chunk_rows = overwrite, attrs or {}, chunk_rows
        self.n = 0

    def __enter__(self) -> ShowerWriter:
        self._ctx = atomic_path(self.path, self.overwrite)
        tmp = self._ctx.__enter__()
        self._fh = h5py.File(tmp, "w")
        for k, v in self.attrs.items():
            self._fh.attrs[k] = v
        rows = self.chunk_rows
        kw = {"compression": self.compression, "dtype": self.dtype}
        if self.fmt == "calochallenge":
            # energies are always float64 so that any float64 E_inc round-trips bit-exactly
            self._e = self._fh.create_dataset("incident_energies", (0, 1), maxshape=(None, 1),
                                              chunks=(max(rows, 1), 1), dtype=np.float64,
                                              compression=self.compression)
            self._s = self._fh.create_dataset(
                "showers", (0, self.geometry.n_voxels), maxshape=(None, self.geometry.n_voxels),
                chunks=(max(1, min(rows, 2**22 // (self.geometry.n_voxels * 4) + 1)),
                        self.geometry.n_voxels), **kw)
        else:
            self._e = self._fh.create_dataset("energy", (0, 1), maxshape=(None, 1),
                                              dtype=np.float64, compression=self.compression)
            self._layers = [self._fh.create_dataset(f"layer_{i}", (0, *lyr.shape),
                                                    maxshape=(None, *lyr.shape), **kw)
                            for i, lyr in enumerate(self.geometry.layers)]
            self._ovf = self._fh.create_dataset("overflow", (0, 3), maxshape=(None, 3), **kw)
        return self

    def append(self, e_inc: np.ndarray, showers: np.ndarray) -> None:
        """Append a chunk: ``e_inc`` (n,) MeV and ``showers`` (n, n_voxels) MeV."""
        e_inc = np.asarray(e_inc).reshape(-1)
        showers = np.asarray(showers)
        if showers.shape != (len(e_inc), self.geometry.n_voxels):
            raise DataError(f"{where(self.path, 'showers')}: expected shape ({len(e_inc)}, "
                            f"{self.geometry.n_voxels}), found {showers.shape}")
        validate(e_inc, showers, self.path, self.n)
        lo, hi = self.n, self.n + len(e_inc)
        if self.fmt == "calochallenge":
            self._e.resize(hi, axis=0)
            self._s.resize(hi, axis=0)
            self._e[lo:hi, 0] = e_inc
            self._s[lo:hi] = showers
        else:
            self._e.resize(hi, axis=0)
            self._e[lo:hi, 0] = e_inc / 1000.0  # MeV -> GeV
            for i, ds in enumerate(self._layers):
                ds.resize(hi, axis=0)
                ds[lo:hi] = showers[:, self.geometry.layer_slice(i)].reshape(
                    hi - lo, *self.geometry.layers[i].shape)
            self._ovf.resize(hi, axis=0)
            self._ovf[lo:hi] = 0.0  # no overflow information: written as zeros
        self.n = hi

    def __exit__(self, exc_type, exc, tb) -> None:
        self._fh.close()
        self._ctx.__exit__(exc_type, exc, tb)


def write_showers(path: str | os.PathLike, showers: ShowerSet, *, fmt: str = "calochallenge",
                  dtype: np.dtype | str | None = None, compression: str | None = "gzip",
                  overwrite: bool = False, attrs: dict | None = None,
                  chunk_size: int = 10 * DEFAULT_CHUNK) -> Path:
    """Write a :class:`ShowerSet` as a CaloChallenge (default) or CaloGAN file, atomically.

    ``dtype`` defaults to the voxel dtype of ``showers``.
    """
    dtype = showers.showers.dtype if dtype is None else dtype
    with ShowerWriter(path, showers.geometry, fmt=fmt, dtype=dtype, compression=compression,
                      overwrite=overwrite, attrs=attrs) as w:
        for lo in range(0, len(showers), chunk_size):
            w.append(showers.e_inc[lo:lo + chunk_size], showers.showers[lo:lo + chunk_size])
    return Path(path)
