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

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from caloforge.atomic import atomic_path
from caloforge.errors import CaloforgeError, DataError, GeometryError, where
from caloforge.geometry import Geometry

CALOGAN_KEYS = ("layer_0", "layer_1", "layer_2")
#: Showers per read/write chunk (rows); ~50 MB at 6480 float64 voxels.
DEFAULT_CHUNK = 1000


def chunk_rows(n_voxels: int, itemsize: int = 4, target_bytes: int = 64 * 2**20) -> int:
    """Rows per block so that one block of showers holds about ``target_bytes``.

    Example:
        >>> chunk_rows(40500, 4)  # dataset 3, float32
        414
    """
    return max(1, int(target_bytes) // max(1, int(n_voxels) * int(itemsize)))


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
             clip_negative: bool = False, fields: tuple[str, str] = ("incident_energies",
                                                                     "showers")) -> np.ndarray:
    """Check one chunk of values; return the showers (clipped at 0 when asked).

    The common case (all values valid) costs one pass over the chunk and allocates nothing
    (see :func:`_plainly_valid`); the offending row and voxel are only searched for on failure.

    ``fields`` names the energy and voxel datasets in messages (CaloGAN: ``energy`` and
    ``layer_i``).

    Raises:
        DataError: NaN/inf anywhere, E_inc <= 0, or a negative voxel (unless ``clip_negative``).
    """
    e_field, s_field = fields
    e_inc = np.asarray(e_inc)
    if e_inc.size:
        e_min, e_max = e_inc.min(), e_inc.max()
        if not (np.isfinite(e_min) and np.isfinite(e_max) and e_min > 0):
            bad = ~np.isfinite(e_inc)
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"{where(path, e_field)}: expected finite energies, "
                                f"found {e_inc.flat[i]} at row {offset + i}")
            i = int(np.argmax(e_inc.reshape(-1) <= 0))
            raise DataError(f"{where(path, e_field)}: expected E_inc > 0, "
                            f"found {e_inc.flat[i]} at row {offset + i}")
    if not showers.size or _plainly_valid(showers):
        return showers
    lo, hi = showers.min(), showers.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        r, c = np.argwhere(~np.isfinite(showers))[0]
        raise DataError(f"{where(path, s_field)}: expected finite voxel energies, found "
                        f"{showers[r, c]} at row {offset + r}, voxel {c}")
    if lo < 0:
        if clip_negative:
            return np.maximum(showers, 0, dtype=showers.dtype)
        r, c = np.argwhere(showers < 0)[0]
        raise DataError(f"{where(path, s_field)}: expected voxel energies >= 0, found "
                        f"{showers[r, c]} at row {offset + r}, voxel {c} "
                        f"(use --clip-negative to set them to 0)")
    return showers


#: Largest finite non-negative float32 / float64 as an unsigned integer bit pattern.
_MAX_FINITE_BITS = {4: (np.uint32, 0x7F7FFFFF), 8: (np.uint64, 0x7FEFFFFFFFFFFFFF)}


def _plainly_valid(showers: np.ndarray) -> bool:
    """True if every value is finite and >= 0, in one integer ``max`` pass.

    Read as unsigned integers, IEEE floats that are finite and non-negative are exactly the
    bit patterns <= that of the largest finite float: a set sign bit (negative values, -0.0)
    and an all-ones exponent (inf, NaN) both compare larger. False means "check properly"
    (-0.0 is valid but lands here).
    """
    kind = _MAX_FINITE_BITS.get(showers.dtype.itemsize) if showers.dtype.kind == "f" else None
    if kind is None:
        lo, hi = showers.min(), showers.max()
        return bool(np.isfinite(lo) and np.isfinite(hi) and lo >= 0)
    return bool(showers.view(kind[0]).max() <= kind[1])


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
    compression: str | None = None


@contextlib.contextmanager
def _damaged(path: object, what: str) -> Iterator[None]:
    """Turn any low-level failure of h5py on a damaged file into one :class:`DataError`.

    h5py raises OSError, KeyError, ValueError, RuntimeError, TypeError, ... depending on which
    byte is broken, so everything that is not already a :class:`CaloforgeError` is caught.
    """
    try:
        yield
    except CaloforgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: expected {what}, found a damaged or truncated file "
                        f"({msg})") from None


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: expected a shower file, found no such file")
    if path.is_dir():
        raise DataError(f"{path}: expected an HDF5 file, found a directory")
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises several types for bad files
        size = path.stat().st_size
        if size < 8 or not h5py.is_hdf5(path):
            raise DataError(f"{path}: expected an HDF5 file, found no HDF5 signature "
                            f"({size} bytes)") from None
        msg = " ".join(str(exc).split()) or type(exc).__name__
        cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", msg)
        if cut:  # an interrupted copy or download
            raise DataError(f"{path}: expected {cut.group(2)} bytes (the size recorded in the "
                            f"file), found {cut.group(1)} bytes (a truncated file)") from None
        raise DataError(f"{path}: expected an HDF5 file, found unreadable data ({msg})") \
            from None


def inspect(path: str | os.PathLike, geometry: Geometry | str | None = None) -> FileInfo:
    """Format, size and geometry of a shower file; checks keys and shapes."""
    path = Path(path)
    with _open(path) as fh:
        return _inspect(fh, path, geometry)


def _resolve_geometry(geometry: Geometry | str | None) -> Geometry | None:
    return Geometry.resolve(geometry)


def _check_dataset(fh: h5py.File, path: Path, key: str) -> h5py.Dataset:
    ds = fh[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{where(path, key)}: expected a dataset, found a group")
    if ds.dtype.kind not in "fiu":
        raise DataError(f"{where(path, key)}: expected a numeric (float) dataset, found dtype "
                        f"{ds.dtype}")
    return ds


def _inspect(fh: h5py.File, path: Path, geometry: Geometry | str | None) -> FileInfo:
    geometry = _resolve_geometry(geometry)
    with _damaged(path, "a readable HDF5 shower file"):
        keys = set(fh.keys())
        if "showers" in keys or "incident_energies" in keys:
            for key in ("incident_energies", "showers"):
                if key not in keys:
                    raise DataError(f"{where(path, key)}: expected key {key!r} "
                                    f"(CaloChallenge layout), found keys {sorted(keys)}")
            e = _check_dataset(fh, path, "incident_energies")
            s = _check_dataset(fh, path, "showers")
            if s.ndim != 2:
                raise DataError(f"{where(path, 'showers')}: expected shape (N, n_voxels), "
                                f"found {s.shape}")
            if e.shape not in ((s.shape[0], 1), (s.shape[0],)):
                raise DataError(f"{where(path, 'incident_energies')}: expected shape "
                                f"({s.shape[0]}, 1) to match showers, found {e.shape}")
            n, n_vox, fmt, dtype = s.shape[0], s.shape[1], "calochallenge", s.dtype
            compression = s.compression
        elif any(k in keys for k in CALOGAN_KEYS) or "energy" in keys:
            for key in ("energy", *CALOGAN_KEYS):
                if key not in keys:
                    raise DataError(f"{where(path, key)}: expected key {key!r} (CaloGAN layout), "
                                    f"found keys {sorted(keys)}")
            if geometry is None:
                geometry = Geometry.preset("calogan")
            e = _check_dataset(fh, path, "energy")
            n = e.shape[0] if e.ndim else 0
            if e.shape not in ((n, 1), (n,)):
                raise DataError(f"{where(path, 'energy')}: expected shape (N, 1), found "
                                f"{e.shape}")
            for i, key in enumerate(CALOGAN_KEYS):
                ds = _check_dataset(fh, path, key)
                want = (geometry.layers[i].shape if i < geometry.n_layers
                        and geometry.layers[i].cartesian else None)
                if ds.ndim != 3 or ds.shape[0] != n or (want and ds.shape[1:] != want):
                    rows_cols = f"{want[0]}, {want[1]}" if want else "rows, cols"
                    raise DataError(f"{where(path, key)}: expected shape ({n}, {rows_cols}), "
                                    f"found {ds.shape}")
            n_vox = sum(int(np.prod(fh[k].shape[1:])) for k in CALOGAN_KEYS)
            fmt, dtype = "calogan", fh["layer_0"].dtype
            compression = fh["layer_0"].compression
        else:
            raise DataError(f"{path}: expected keys 'incident_energies' and 'showers' "
                            f"(CaloChallenge) or 'energy', 'layer_0..2' (CaloGAN), "
                            f"found {sorted(keys) or 'no keys'}")
    if geometry is None:
        geometry = Geometry.for_voxels(n_vox, path)
    if geometry.n_voxels != n_vox:
        raise GeometryError(f"{where(path, 'showers')}: expected {geometry.n_voxels} voxels for "
                            f"geometry {geometry.name}, found {n_vox}")
    dtype = np.dtype(dtype)
    native = np.dtype(f"{dtype.kind}{dtype.itemsize}")  # native byte order for numpy/torch
    return FileInfo(path, fmt, int(n), int(n_vox), native, geometry, compression)


#: Rows are read and validated in blocks of about this many bytes, so that validation runs
#: on data that is still in the CPU cache.
_BLOCK_BYTES = 2**22


def _block_rows(ds: h5py.Dataset, row_bytes: int) -> int:
    """Rows per read block: ~4 MB, a multiple of the HDF5 chunk height (no chunk is read or
    decompressed twice)."""
    target = max(1, _BLOCK_BYTES // max(row_bytes, 1))
    chunk = ds.chunks[0] if ds.chunks else 1
    return max(chunk, target // chunk * chunk)


def _read_rows(fh: h5py.File, info: FileInfo, start: int, stop: int,
               out: np.ndarray | None = None, clip_negative: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Validated rows ``start:stop`` as (E_inc (n,) float64 MeV, showers (n, n_voxels)).

    The showers are read straight into ``out`` (a C-contiguous (n, n_voxels) array, allocated
    when None) block by block, each block validated right after it is read.
    """
    n = stop - start
    if out is None:
        out = np.empty((n, info.n_voxels), dtype=info.dtype)
    with _damaged(info.path, f"readable rows {start}..{stop}"):
        if info.format == "calochallenge":
            e = np.asarray(fh["incident_energies"][start:stop], dtype=np.float64).reshape(-1)
            validate(e, out[:0], info.path, start)
            ds = fh["showers"]
            step = _block_rows(ds, info.n_voxels * info.dtype.itemsize)
            fspace = ds.id.get_space()
            lo = start
            while lo < stop:
                hi = min(stop, (lo // step + 1) * step)
                block = out[lo - start:hi - start]
                # h5py's low-level read: a third of read_direct's per-call cost
                fspace.select_hyperslab((lo, 0), block.shape)
                ds.id.read(h5py.h5s.create_simple(block.shape), fspace, block)
                checked = validate(e[lo - start:hi - start], block, info.path, lo,
                                   clip_negative)
                if checked is not block:
                    block[...] = checked
                lo = hi
        else:
            e = np.asarray(fh["energy"][start:stop], dtype=np.float64).reshape(-1)
            validate(e, out[:0], info.path, start, fields=("energy", "showers"))  # GeV
            e = e * 1000.0
            for i, k in enumerate(CALOGAN_KEYS):
                layer = out[:, info.geometry.layer_slice(i)]
                layer[...] = fh[k][start:stop].reshape(n, -1)
                # messages name the file's own dataset, and the voxel index within the layer
                checked = validate(e[:0], layer, info.path, start, clip_negative,
                                   fields=("energy", k))
                if checked is not layer:
                    layer[...] = checked
    return e, out


def _check_range(start: int, stop: int | None, n: int, path: object) -> int:
    if start < 0:
        raise DataError(f"{path}[start]: expected a row index >= 0, found {start}")
    if stop is not None and stop < 0:
        raise DataError(f"{path}[stop]: expected a row index >= 0, found {stop}")
    return n if stop is None else min(stop, n)


def iter_showers(path: str | os.PathLike, batch_size: int = DEFAULT_CHUNK,
                 geometry: Geometry | str | None = None, start: int = 0,
                 stop: int | None = None, clip_negative: bool = False) -> Iterator[ShowerSet]:
    """Yield validated :class:`ShowerSet` chunks of ``batch_size`` showers.

    Memory is bounded by one chunk whatever the file size (see :func:`chunk_rows` for a
    ``batch_size`` of a given number of bytes).

    Example:
        >>> for chunk in iter_showers("dataset_3_1.hdf5", 500):  # doctest: +SKIP
        ...     total += chunk.showers.sum()
    """
    if batch_size < 1:
        raise DataError(f"batch_size: expected a positive integer, found {batch_size}")
    with _open(path) as fh:
        info = _inspect(fh, Path(path), geometry)
        stop = _check_range(start, stop, info.n_showers, info.path)
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            e, s = _read_rows(fh, info, lo, hi, clip_negative=clip_negative)
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
    if chunk_size < 1:
        raise DataError(f"chunk_size: expected a positive integer, found {chunk_size}")
    with _open(path) as fh:
        info = _inspect(fh, Path(path), geometry)
        stop = _check_range(start, stop, info.n_showers, info.path)
        n = max(stop - start, 0)
        e_all = np.empty(n, dtype=np.float64)
        s_all = np.empty((n, info.n_voxels), dtype=info.dtype)
        if info.format == "calochallenge" and fh["showers"].chunks:
            c = fh["showers"].chunks[0]  # whole HDF5 chunks per read: none decompressed twice
            chunk_size = -(-chunk_size // c) * c
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            e, _ = _read_rows(fh, info, lo, hi, s_all[lo - start:hi - start], clip_negative)
            e_all[lo - start:hi - start] = e
    return ShowerSet(e_all, s_all, info.geometry)


def read_subsample(path: str | os.PathLike, n: int, seed: int = 0,
                   geometry: Geometry | str | None = None, clip_negative: bool = False,
                   chunk_size: int = DEFAULT_CHUNK) -> ShowerSet:
    """``n`` showers of a file drawn at random without replacement (order kept), read chunk by
    chunk: memory holds the ``n`` chosen showers and one chunk, whatever the file size.

    The rows are those :func:`subsample` would pick from the whole file with the same ``seed``;
    a file of at most ``n`` showers is read whole.
    """
    info = inspect(path, geometry)
    if info.n_showers <= n:
        return read_showers(path, info.geometry, clip_negative=clip_negative)
    if n < 1:
        raise DataError(f"{path}[showers]: expected a subsample size >= 1, found {n}")
    idx = np.sort(np.random.default_rng(seed).choice(info.n_showers, n, replace=False))
    e_all = np.empty(n, dtype=np.float64)
    s_all = np.empty((n, info.n_voxels), dtype=info.dtype)
    done = 0
    for lo, chunk in zip(range(0, info.n_showers, chunk_size),
                         iter_showers(path, chunk_size, info.geometry,
                                      clip_negative=clip_negative), strict=True):
        take = idx[(idx >= lo) & (idx < lo + len(chunk))] - lo
        e_all[done:done + len(take)] = chunk.e_inc[take]
        s_all[done:done + len(take)] = chunk.showers[take]
        done += len(take)
    return ShowerSet(e_all, s_all, info.geometry)


# --------------------------------------------------------------------------------------------
# writing


class ShowerWriter:
    """Write showers chunk by chunk into a new file, atomically.

    The file appears at ``path`` only when the ``with`` block ends without an exception; on an
    exception neither the file nor its temporary sibling is left behind. Incident energies are
    stored as float64 (MeV for CaloChallenge, GeV for CaloGAN), voxels in ``dtype``.

    With ``n_rows`` (the number of showers that will be appended, when known) the datasets get
    their final size at once and the file is refused at the end unless exactly ``n_rows``
    showers were appended; without it the datasets grow with every :meth:`append`.

    Example:
        >>> with ShowerWriter("out.h5", geometry) as w:  # doctest: +SKIP
        ...     for chunk in chunks:
        ...         w.append(chunk.e_inc, chunk.showers)
    """

    def __init__(self, path: str | os.PathLike, geometry: Geometry, *, fmt: str = "calochallenge",
                 dtype: np.dtype | str = np.float32, compression: str | None = "gzip",
                 overwrite: bool = False, attrs: dict | None = None,
                 chunk_rows: int = DEFAULT_CHUNK, n_rows: int | None = None) -> None:
        if n_rows is not None and n_rows < 0:
            raise DataError(f"{path}[n_rows]: expected a count >= 0, found {n_rows}")
        if fmt not in ("calochallenge", "calogan"):
            raise DataError(f"format: expected 'calochallenge' or 'calogan', found {fmt!r}")
        if fmt == "calogan" and geometry.name != "calogan":
            raise GeometryError(f"{path}: expected the calogan geometry for a CaloGAN file, "
                                f"found {geometry.name}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise DataError(f"{path}[showers]: expected a float dtype, found {dtype}")
        if compression not in (None, "gzip", "lzf"):
            raise DataError(f"{path}[compression]: expected 'gzip', 'lzf' or None, found "
                            f"{compression!r}")
        self.path, self.geometry, self.fmt = Path(path), geometry, fmt
        self.dtype, self.compression = dtype, compression
        self.overwrite, self.attrs, self.chunk_rows = overwrite, attrs or {}, chunk_rows
        self.n_rows = n_rows
        self.n = 0

    def __enter__(self) -> ShowerWriter:
        self._ctx = atomic_path(self.path, self.overwrite)
        tmp = self._ctx.__enter__()
        self._tmp = Path(tmp)
        self._fh = None
        try:
            self._fh = h5py.File(tmp, "w")
            self._create()
        except BaseException as exc:
            if self._fh is not None:
                self._fh.close()
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, OSError):
                raise DataError(f"{self.path}: expected a writable output file, found "
                                f"{' '.join(str(exc).split())}") from None
            raise
        return self

    def _dataset(self, name: str, row_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int | None = None) -> h5py.Dataset:
        """A chunked dataset of rows of ``row_shape`` (``chunk`` rows per HDF5 chunk, or
        h5py's guess): final-size when ``n_rows`` is known, else resizable.

        (Contiguous layout is not used: HDF5 writes partial row blocks into a contiguous
        dataset several times slower than into chunks.)"""
        n0 = self.n_rows or 0
        kw: dict = {"dtype": dtype, "compression": self.compression}
        if n0 == 0:
            kw["maxshape"] = (None, *row_shape)
        rows = min(chunk, n0) if n0 and chunk else chunk
        kw["chunks"] = (rows, *row_shape) if rows else True
        return self._fh.create_dataset(name, (n0, *row_shape), **kw)

    def _create(self) -> None:
        for k, v in self.attrs.items():
            self._fh.attrs[k] = v
        rows = max(int(self.chunk_rows), 1)
        if self.fmt == "calochallenge":
            n_vox = self.geometry.n_voxels
            # energies are always float64 so that any float64 E_inc round-trips bit-exactly
            self._e = self._dataset("incident_energies", (1,), np.dtype(np.float64), rows)
            # ~4 MiB chunks: large enough for fast gzip, small enough for partial reads
            chunk = max(1, min(rows, 2**22 // (n_vox * self.dtype.itemsize) + 1))
            self._s = self._dataset("showers", (n_vox,), self.dtype, chunk)
            self._datasets = [self._e, self._s]
        else:
            self._e = self._dataset("energy", (1,), np.dtype(np.float64))
            self._layers = [self._dataset(f"layer_{i}", lyr.shape, self.dtype)
                            for i, lyr in enumerate(self.geometry.layers)]
            self._ovf = self._dataset("overflow", (3,), self.dtype)
            self._datasets = [self._e, *self._layers, self._ovf]

    def append(self, e_inc: np.ndarray, showers: np.ndarray) -> None:
        """Append a chunk: ``e_inc`` (n,) MeV and ``showers`` (n, n_voxels) MeV (validated)."""
        e_inc = np.asarray(e_inc).reshape(-1)
        showers = np.asarray(showers)
        if showers.shape != (len(e_inc), self.geometry.n_voxels):
            raise DataError(f"{where(self.path, 'showers')}: expected shape ({len(e_inc)}, "
                            f"{self.geometry.n_voxels}), found {showers.shape}")
        validate(e_inc, showers, self.path, self.n)
        lo, hi = self.n, self.n + len(e_inc)
        if hi == lo:
            return
        if self.n_rows:
            if hi > self.n_rows:
                raise DataError(f"{where(self.path, 'showers')}: expected {self.n_rows} showers "
                                f"in all (n_rows), found {hi}")
        else:
            for ds in self._datasets:
                ds.resize(hi, axis=0)
        self._check_space(lo, hi)
        with self._write_errors(f"rows {lo}..{hi}"):
            if self.fmt == "calochallenge":
                self._e[lo:hi, 0] = e_inc
                self._s[lo:hi] = showers
            else:
                self._e[lo:hi, 0] = e_inc / 1000.0  # MeV -> GeV
                for i, ds in enumerate(self._layers):
                    ds[lo:hi] = showers[:, self.geometry.layer_slice(i)].reshape(
                        hi - lo, *self.geometry.layers[i].shape)
                self._ovf[lo:hi] = 0.0  # no overflow information: written as zeros
        self.n = hi

    def _check_space(self, lo: int, hi: int) -> None:
        """Refuse to write rows ``lo..hi`` when the HDF5 chunks they add (counted
        uncompressed, + 1 MiB of metadata) would pass the file-size limit or fill the disk,
        *before* HDF5 starts: HDF5 cannot recover from a failed write (the file can then not
        even be closed safely)."""
        what = f"rows {lo}..{hi}"

        def upper(rows: int) -> int:  # file bytes holding ``rows`` rows, at most
            total = 2**20  # HDF5 metadata
            for ds in self._datasets:
                c = ds.chunks[0] if ds.chunks else 1
                chunk_bytes = int(np.prod(ds.chunks or ds.shape[1:] or (1,))) * ds.dtype.itemsize
                total += -(-rows // c) * chunk_bytes
            return total

        need, size = upper(hi) - upper(lo) + 2**20, upper(lo)
        try:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            unlimited = resource.RLIM_INFINITY
        except (ImportError, OSError, ValueError):  # not on this platform
            limit = unlimited = -1
        if limit not in (-1, unlimited) and upper(hi) > limit:
            raise DataError(f"{where(self.path, 'showers')}: expected room to write {what} "
                            f"(~{need} bytes after {size}), found a file size limit of {limit} "
                            f"bytes; nothing was written")
        st = os.statvfs(self._tmp.parent)
        free = st.f_bavail * st.f_frsize
        if need > free:
            raise DataError(f"{where(self.path, 'showers')}: expected room to write {what} "
                            f"(~{need} bytes), found {free} bytes free on "
                            f"{self._tmp.parent} (disk full); nothing was written")

    @contextlib.contextmanager
    def _write_errors(self, what: str) -> Iterator[None]:
        """A failed write (disk full, file-size limit, I/O error) -> one-line DataError."""
        try:
            yield
        except OSError as exc:
            errno = getattr(exc, "errno", None) or next(
                (int(m) for m in re.findall(r"errno = (\d+)", str(exc))), None)
            found = os.strerror(errno) if errno else " ".join(str(exc).split())[:120]
            raise DataError(f"{where(self.path, 'showers')}: expected to write {what}, found "
                            f"'{found}' (disk full or file size limit?); nothing was "
                            f"written") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # already failing: a failed flush must not hide why
            with contextlib.suppress(Exception):
                self._fh.close()
            self._ctx.__exit__(exc_type, exc, tb)
            return
        try:
            with self._write_errors(f"all {self.n} rows (closing the file)"):
                self._fh.close()
            if exc_type is None and self.n_rows is not None and self.n != self.n_rows:
                raise DataError(f"{where(self.path, 'showers')}: expected {self.n_rows} showers "
                                f"(n_rows), found {self.n} appended")
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._ctx.__exit__(exc_type, exc, tb)


def write_showers(path: str | os.PathLike, showers: ShowerSet, *, fmt: str = "calochallenge",
                  dtype: np.dtype | str | None = None, compression: str | None = "gzip",
                  overwrite: bool = False, attrs: dict | None = None,
                  chunk_size: int = 10 * DEFAULT_CHUNK) -> Path:
    """Write a :class:`ShowerSet` as a CaloChallenge (default) or CaloGAN file, atomically.

    ``dtype`` defaults to the voxel dtype of ``showers``. CaloGAN files store E_inc in GeV, so
    there E_inc round-trips to within one unit in the last place (voxels bit-exactly).

    Example:
        >>> write_showers("gen.h5", ShowerSet(e, x, Geometry.preset("2")))  # doctest: +SKIP
    """
    dtype = showers.showers.dtype if dtype is None else dtype
    if np.dtype(dtype).kind != "f":
        dtype = np.float32 if np.dtype(dtype).itemsize <= 4 else np.float64
    with ShowerWriter(path, showers.geometry, fmt=fmt, dtype=dtype, compression=compression,
                      overwrite=overwrite, attrs=attrs, n_rows=len(showers)) as w:
        for lo in range(0, len(showers), chunk_size):
            w.append(showers.e_inc[lo:lo + chunk_size], showers.showers[lo:lo + chunk_size])
    return Path(path)
