"""Streamed training data: shuffled chunks of one or more shower files in bounded memory.

A :class:`ShowerSource` hands out the showers of a training (or validation) set as
:class:`~caloforge.data.ShowerSet` batches, epoch by epoch, without holding the set in memory:

* :class:`InMemorySource` wraps a :class:`~caloforge.data.ShowerSet` (tests, small sets);
* :class:`FileSource` reads CaloChallenge / CaloGAN files (one or several, the same
  geometry). Its unit of reading is a *chunk*: a row range that is a whole number of HDF5
  chunks (about :data:`UNIT_BYTES`), so no HDF5 chunk is decompressed twice. Every epoch the
  chunks come in a fresh random order (seeded by ``(seed, epoch)``, so a resumed run sees the
  same order), a background thread reads, decompresses and validates them and mixes their rows
  in a bounded shuffle buffer (:data:`BUFFER_BYTES`), and training receives batches from a
  bounded queue. Under ``torchrun`` rank ``r`` of ``W`` reads only the chunks ``r, r+W, ...`` of
  the epoch's order (disjoint), and every rank gets the same number of batches.

:class:`TensorBatches` turns a source into what :func:`caloforge.training.fit` consumes: a
model's per-batch preprocessing (``ShowerSet -> tuple of tensors``) applied in a background
thread, or in the training thread when training already uses every core.
:class:`Moments` accumulates feature means and standard deviations over one streaming pass
(the standardisers of the models), merged over ranks under ``torchrun``.

Memory: about ``BUFFER_BYTES`` (the buffer) + one read unit + ``PREFETCH`` batches, whatever
the file size. Energies in MeV.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import h5py
import numpy as np
import torch
from torch import Tensor

from caloforge.data import FileInfo, ShowerSet, _inspect, _open, _read_rows
from caloforge.errors import ConfigError, DataError, GeometryError
from caloforge.geometry import Geometry

#: Target bytes of one read unit (a whole number of HDF5 chunks).
UNIT_BYTES = 4 * 2**20
#: Default bytes of the shuffle buffer (showers in their file dtype).
BUFFER_BYTES = 256 * 2**20
#: Ready batches kept ahead of the training loop.
PREFETCH = 4
#: batches the preprocessing thread of :class:`TensorBatches` works ahead
TB_PREFETCH = 2

__all__ = ["BUFFER_BYTES", "FileSource", "InMemorySource", "Moments", "Rows", "ShowerSource",
           "TensorBatches", "as_source", "as_val_source", "collect_rows", "e_inc_range", "head",
           "monitor_val", "stats_chunks"]


@runtime_checkable
class ShowerSource(Protocol):
    """Showers handed out in shuffled batches, epoch by epoch, in bounded memory.

    Attributes:
        geometry: The geometry of every shower.
    """

    geometry: Geometry

    def __len__(self) -> int:
        """Number of showers."""

    def steps(self, batch_size: int, world: int = 1) -> int:
        """Batches per epoch on every rank (the same on all ranks)."""

    def batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1,
                shuffle: bool = True) -> Iterator[ShowerSet]:
        """This rank's batches of ``epoch`` (about ``batch_size // world`` showers each)."""

    def chunks(self, rank: int = 0, world: int = 1) -> Iterator[ShowerSet]:
        """One pass in file order over this rank's disjoint share (for statistics)."""


#: glibc's mallopt parameter number of M_MMAP_THRESHOLD (malloc.h)
_M_MMAP_THRESHOLD = -3


def bounded_heap(threshold: int = 1 << 20) -> bool:
    """Serve every allocation of ``threshold`` bytes or more from its own memory map (glibc
    only; elsewhere a no-op returning False).

    By default glibc raises its mmap threshold to the size of the last large block freed, after
    which shower batches and read units (MBs each, from several threads) come from the heaps,
    which fragment: a streamed dataset-3 training crept from 0.39 to 0.67 GB in the first
    minutes and peaked higher the longer it ran (1.3 GiB at 10k showers, 2.0 GiB at 40k).
    A fixed threshold returns each such block to the system when it is freed (measured: flat
    at 0.30-0.33 GB); ``caloforge train --low-memory`` calls this when it streams. The cost:
    every such allocation (training activations too) is a fresh map, and a streamed dataset-2
    CaloMan epoch ran 3-4x slower with it, so it is not the default. Affects the whole
    process; returns whether it was applied."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 0x5EED])


class InMemorySource:
    """A :class:`ShowerSource` over a :class:`ShowerSet` already in memory."""

    def __init__(self, data: ShowerSet, seed: int = 0) -> None:
        self.data, self.geometry, self.seed = data, data.geometry, int(seed)

    def __len__(self) -> int:
        return len(self.data)

    def steps(self, batch_size: int, world: int = 1) -> int:
        b = max(1, batch_size // world)
        return max(1, -(-(len(self) // world) // b))

    def batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1,
                shuffle: bool = True) -> Iterator[ShowerSet]:
        n = len(self)
        idx = _rng(self.seed, epoch).permutation(n) if shuffle else np.arange(n)
        idx = idx[rank::world][: n // world]  # equal shares on every rank
        b = max(1, batch_size // world)
        for k in range(self.steps(batch_size, world)):
            part = np.sort(idx[k * b:(k + 1) * b])
            if len(part):
                yield self.data.subset(part)

    def chunks(self, rank: int = 0, world: int = 1) -> Iterator[ShowerSet]:
        n = len(self)
        lo, hi = rank * n // world, (rank + 1) * n // world
        for a in range(lo, hi, 10_000):
            yield self.data.subset(slice(a, min(a + 10_000, hi)))

    def head(self, n: int) -> ShowerSet:
        """The first ``n`` showers."""
        return self.data.subset(slice(0, n))


@dataclass(frozen=True)
class _Unit:
    """Rows ``start:stop`` of file ``file`` (an index into :attr:`FileSource.infos`)."""

    file: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def _unit_rows(path: Path, info: FileInfo, unit_bytes: int = UNIT_BYTES) -> int:
    """Rows per read unit: a whole number of HDF5 chunks of about ``unit_bytes``."""
    row_bytes = info.n_voxels * info.dtype.itemsize
    chunk = 1
    if info.format == "calochallenge":
        with _open(path) as fh:
            c = fh["showers"].chunks
            chunk = c[0] if c else 1
    per = max(1, round(unit_bytes / max(1, chunk * row_bytes)))
    return chunk * per


class FileSource:
    """Shuffled chunks of one or more shower files (see the module docstring).

    Args:
        paths: One file or several, all on the same geometry.
        geometry: Expected geometry (a preset name, an XML path or a Geometry); inferred from
            the first file when None.
        seed: Seed of the chunk order and the shuffle buffer (epoch ``e`` uses ``(seed, e)``).
        buffer_bytes: Size of the shuffle buffer in bytes (at least one read unit and two
            batches are always held).
        clip_negative: Set negative voxels to 0 instead of failing.
        unit_bytes: Target bytes of one read unit (whole HDF5 chunks; smaller units shuffle
            better, larger ones read faster).
        units: Restrict to these read units (used by :meth:`split`).

    Raises:
        DataError / GeometryError: a missing or damaged file, a file list that mixes geometries
            (one line naming the file, expected and found).
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 geometry: Geometry | str | None = None, *, seed: int = 0,
                 buffer_bytes: int = BUFFER_BYTES, clip_negative: bool = False,
                 unit_bytes: int = UNIT_BYTES, units: list[_Unit] | None = None) -> None:
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DataError("--data: expected at least one shower file, found none")
        self.infos: list[FileInfo] = []
        for p in self.paths:
            with _open(p) as fh:
                info = _inspect(fh, p, geometry)
            if self.infos:
                first = self.infos[0]
                if info.n_voxels != first.n_voxels or info.geometry.name != first.geometry.name:
                    raise GeometryError(
                        f"{p}[showers]: expected {first.n_voxels} voxels (geometry "
                        f"{first.geometry.name}, like {first.path}), found {info.n_voxels} "
                        f"(geometry {info.geometry.name})")
            self.infos.append(info)
            geometry = geometry if geometry is not None else info.geometry
        self.geometry = self.infos[0].geometry
        self.seed, self.clip_negative = int(seed), bool(clip_negative)
        self.buffer_bytes = int(buffer_bytes)
        if units is None:
            units = []
            for i, (p, info) in enumerate(zip(self.paths, self.infos, strict=True)):
                step = _unit_rows(p, info, unit_bytes)
                units += [_Unit(i, lo, min(lo + step, info.n_showers))
                          for lo in range(0, info.n_showers, step)]
        self.units = units
        self._n = sum(u.rows for u in units)

    # -- sizes --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def row_bytes(self) -> int:
        """Bytes of one shower as read (file dtype)."""
        return self.geometry.n_voxels * max(i.dtype.itemsize for i in self.infos)

    def _min_rank_rows(self, world: int) -> int:
        """Fewest rows any rank can receive in an epoch (its share of the smallest units)."""
        k = len(self.units) // world
        return int(sum(sorted(u.rows for u in self.units)[:k]))

    def steps(self, batch_size: int, world: int = 1) -> int:
        if world > len(self.units):
            raise ConfigError(f"{self.paths[0]}: expected at least {world} read chunks for "
                              f"{world} ranks, found {len(self.units)}")
        b = max(1, batch_size // world)
        rows = self._n if world == 1 else self._min_rank_rows(world)
        return max(1, -(-rows // b))

    # -- splitting ----------------------------------------------------------------------------
    def split(self, fraction: float, seed: int = 0) -> tuple[FileSource, FileSource]:
        """``(train, val)``: a seeded random set of whole read chunks (row ranges chosen by
        shower index, nothing read) holding ``fraction`` of the showers goes to ``val``."""
        if not 0 < fraction < 1:
            raise ConfigError(f"--val-fraction: expected a fraction in (0, 1), found {fraction}")
        order = np.random.default_rng(seed).permutation(len(self.units))
        target, got, val_ids = fraction * self._n, 0, set()
        for i in order:
            if got >= target or len(val_ids) >= len(self.units) - 1:
                break
            val_ids.add(int(i))
            got += self.units[i].rows
        train = [u for i, u in enumerate(self.units) if i not in val_ids]
        val = [u for i, u in enumerate(self.units) if i in val_ids]
        return self._with(train), self._with(val)

    def _with(self, units: list[_Unit]) -> FileSource:
        return FileSource(self.paths, self.geometry, seed=self.seed,
                          buffer_bytes=self.buffer_bytes, clip_negative=self.clip_negative,
                          units=units)

    # -- reading ------------------------------------------------------------------------------
    def _read_units(self, units: Sequence[_Unit]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(E_inc, showers) of each unit in order; files are kept open while in use."""
        handles: dict[int, h5py.File] = {}
        try:
            for u in units:
                fh = handles.get(u.file)
                if fh is None:
                    fh = handles[u.file] = _open(self.paths[u.file])
                yield _read_rows(fh, self.infos[u.file], u.start, u.stop,
                                 clip_negative=self.clip_negative)
        finally:
            for fh in handles.values():
                fh.close()

    def chunks(self, rank: int = 0, world: int = 1) -> Iterator[ShowerSet]:
        for e, s in self._read_units(self.units[rank::world]):
            yield ShowerSet(e, s, self.geometry)

    def head(self, n: int) -> ShowerSet:
        """The first ``n`` showers of the source (in unit order) in memory."""
        es, ss, got = [], [], 0
        for e, s in self._read_units(self.units):
            es.append(e[: n - got])
            ss.append(s[: n - got])
            got += len(es[-1])
            if got >= n:
                break
        return ShowerSet(np.concatenate(es), np.concatenate(ss), self.geometry)

    def batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1,
                shuffle: bool = True) -> Iterator[ShowerSet]:
        """This rank's shuffled batches of ``epoch``, read by a background thread."""
        return _background(lambda: self._batches(epoch, batch_size, rank, world, shuffle))

    def _batches(self, epoch: int, batch_size: int, rank: int, world: int, shuffle: bool
                 ) -> Iterator[ShowerSet]:
        """The shuffle buffer: ``cap`` rows; when full, a batch is drawn from random slots and
        the next rows read take their places, so every row is copied once in and once out."""
        rng = _rng(self.seed, epoch)
        order = rng.permutation(len(self.units)) if shuffle else np.arange(len(self.units))
        mine = [self.units[i] for i in order[rank::world]]
        b = max(1, batch_size // world)
        n_steps = self.steps(batch_size, world)
        cap = max(self.buffer_bytes // max(1, self.row_bytes), 2 * b)
        geo = self.geometry
        if not shuffle:  # file order, no buffer
            emitted = 0
            rest_e: list[np.ndarray] = []
            rest_s: list[np.ndarray] = []
            for e, s in self._read_units(mine):
                rest_e.append(e)
                rest_s.append(s)
                if sum(len(x) for x in rest_e) < b:
                    continue
                e_all, s_all = np.concatenate(rest_e), np.concatenate(rest_s)
                n_full = len(e_all) // b * b
                for lo in range(0, n_full, b):
                    if emitted >= n_steps:
                        return
                    emitted += 1
                    yield ShowerSet(e_all[lo:lo + b], s_all[lo:lo + b], geo)
                rest_e, rest_s = [e_all[n_full:]], [s_all[n_full:]]
            if rest_e and len(rest_e[0]) and emitted < n_steps:
                yield ShowerSet(rest_e[0], rest_s[0], geo)
            return
        buf_e = np.empty(cap)
        buf_s = np.empty((cap, geo.n_voxels), dtype=self.infos[0].dtype)
        filled = emitted = 0
        for e, s in self._read_units(mine):
            pos = 0
            while pos < len(e):
                if filled < cap:  # free space: copy rows in
                    k = min(cap - filled, len(e) - pos)
                    buf_e[filled:filled + k], buf_s[filled:filled + k] = (e[pos:pos + k],
                                                                          s[pos:pos + k])
                    filled, pos = filled + k, pos + k
                    continue
                idx = rng.choice(cap, b, replace=False)  # full: a batch from random slots
                yield ShowerSet(buf_e[idx], buf_s[idx], geo)
                emitted += 1
                if emitted >= n_steps:
                    return
                k = min(b, len(e) - pos)  # the next rows take the freed slots
                buf_e[idx[:k]], buf_s[idx[:k]] = e[pos:pos + k], s[pos:pos + k]
                pos += k
                if k < b:  # fewer rows than slots: move tail rows into the other holes
                    holes = idx[k:]
                    top = filled - len(holes)
                    movers = np.setdiff1d(np.arange(top, filled), holes)
                    targets = np.setdiff1d(holes, np.arange(top, filled))
                    buf_e[targets], buf_s[targets] = buf_e[movers], buf_s[movers]
                    filled = top
        perm = rng.permutation(filled)  # the last rows, shuffled
        for lo in range(0, filled, b):
            if emitted >= n_steps:
                return
            sel = perm[lo:lo + b]
            emitted += 1
            yield ShowerSet(buf_e[sel], buf_s[sel], geo)


class _Background:
    """The iterator ``make()`` run in a daemon thread, ``prefetch`` items ahead; the thread
    starts at construction, so an iterator made early works ahead before its first ``next``.

    Exceptions of the producer are re-raised in the consumer; :meth:`close` (also called
    when the consumer stops early or the object is collected) stops the producer.
    """

    _DONE = object()

    def __init__(self, make: Callable[[], Iterator], prefetch: int = PREFETCH) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._work, args=(make,),
                                        name="caloforge-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, make: Callable[[], Iterator]) -> None:
        try:
            for item in make():
                if not self._put((None, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put((exc, None))
            return
        self._put((None, self._DONE))

    def __iter__(self) -> _Background:
        return self

    def __next__(self) -> object:
        if self._finished:
            raise StopIteration
        exc, item = self._q.get()
        if exc is not None:
            self.close()
            raise exc
        if item is self._DONE:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer thread and wait for it (at most 5 s)."""
        self._finished = True
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __del__(self) -> None:
        self._stop.set()


def _background(make: Callable[[], Iterator], prefetch: int = PREFETCH) -> _Background:
    """``make()`` run in a daemon thread, ``prefetch`` items ahead (see :class:`_Background`)."""
    return _Background(make, prefetch)


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Inline:
    """``fn(k, batch)`` applied in the consumer's thread to the ``k``-th batch of ``it`` (a
    source's batches, read by its own background thread)."""

    def __init__(self, it: Iterator[ShowerSet],
                 fn: Callable[[int, ShowerSet], tuple[Tensor, ...]]) -> None:
        self._it, self._fn, self._k = it, fn, 0

    def __iter__(self) -> _Inline:
        return self

    def __next__(self) -> tuple[Tensor, ...]:
        out = self._fn(self._k, next(self._it))
        self._k += 1
        return out

    def close(self) -> None:
        """Stop the source's reader."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class TensorBatches:
    """What :func:`caloforge.training.fit` consumes from a source: ``fn(batch, generator)``
    (a model's per-batch preprocessing, ``ShowerSet -> tuple of tensors``) applied to every
    batch. ``generator`` is a CPU ``torch.Generator`` seeded by ``(seed, epoch, batch
    index)`` for preprocessing noise, so batches are reproducible and the same wherever
    ``fn`` runs.

    Where ``fn`` runs (``inline``): ``False``, in a background thread that works
    :data:`TB_PREFETCH` batches ahead; ``True``, in the training thread, on batches that the
    source's own reader thread has ready. ``None`` (default) chooses at each epoch: inline
    when torch's intra-op threads cover every core of the process, because then a second
    thread of tensor work can only take cores from the training step's OpenMP team (measured
    on 2 cores, dataset-2 CaloMan autoencoder with the fused float32 inputs: background 75 %,
    inline 85 % of the in-memory throughput at 2 threads; at 1 thread background 98 %,
    inline 79 %).

    Shuffled epochs are read ahead: asking for epoch ``e`` also starts epoch ``e + 1`` in its
    own thread, so the next epoch's shuffle buffer fills while this one trains instead of
    stalling the first step (one extra buffer in memory; :meth:`close` drops it)."""

    def __init__(self, source: ShowerSource, fn: Callable[[ShowerSet, torch.Generator],
                                                          tuple[Tensor, ...]],
                 seed: int = 0, inline: bool | None = None) -> None:
        self.source, self.fn, self.seed, self.inline = source, fn, int(seed), inline
        self._ahead: tuple[tuple, _Background | _Inline] | None = None

    def __len__(self) -> int:
        return len(self.source)

    def steps(self, batch_size: int, world: int = 1) -> int:
        return self.source.steps(batch_size, world)

    def _start(self, epoch: int, batch_size: int, rank: int, world: int, shuffle: bool
               ) -> _Background | _Inline:
        def apply(k: int, chunk: ShowerSet) -> tuple[Tensor, ...]:
            gen = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + epoch * 65_537 + k * 8191 + rank) & 0x7FFFFFFF)
            return self.fn(chunk, gen)

        inline = self.inline
        if inline is None:
            inline = torch.get_num_threads() >= _cores()
        if inline:
            return _Inline(self.source.batches(epoch, batch_size, rank, world, shuffle), apply)

        def make() -> Iterator[tuple[Tensor, ...]]:
            it = self.source.batches(epoch, batch_size, rank, world, shuffle)
            try:
                for k, chunk in enumerate(it):
                    yield apply(k, chunk)
            finally:
                it.close()

        return _background(make, prefetch=TB_PREFETCH)

    def batches(self, epoch: int, batch_size: int, rank: int = 0, world: int = 1,
                shuffle: bool = True, read_ahead: bool = True
                ) -> Iterator[tuple[Tensor, ...]]:
        """Epoch ``epoch``'s preprocessed batches; with ``shuffle`` and ``read_ahead`` the
        next epoch starts reading now."""
        key = (epoch, batch_size, rank, world, shuffle)
        current = None
        if self._ahead is not None:
            ahead_key, ahead = self._ahead
            self._ahead = None
            if ahead_key == key:
                current = ahead
            else:
                ahead.close()
        if current is None:
            current = self._start(*key)
        if shuffle and read_ahead:  # training epochs: start the next one now
            nxt = (epoch + 1, batch_size, rank, world, shuffle)
            self._ahead = (nxt, self._start(*nxt))
        return current

    def close(self) -> None:
        """Stop the epoch read ahead, if any."""
        if self._ahead is not None:
            self._ahead[1].close()
            self._ahead = None


class Moments:
    """Mean and standard deviation of features accumulated chunk by chunk (float64, Chan's
    parallel update), merged over ``torchrun`` ranks with :meth:`all_reduce`.

    Example:
        >>> m = Moments()
        >>> for part in torch.randn(1000, 3).split(100):
        ...     m.update(part)
        >>> m.mean.shape
        torch.Size([3])
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, x: Tensor) -> Moments:
        """Add the rows of ``x`` (n, D)."""
        x = torch.as_tensor(x).detach().to("cpu", torch.float64).reshape(len(x), -1)
        if len(x) == 0:
            return self
        mean, m2 = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        return self._merge(len(x), mean, m2)

    def _merge(self, n: int, mean: Tensor, m2: Tensor) -> Moments:
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return self
        tot = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / tot)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * n / tot)
        self.n = tot
        return self

    def all_reduce(self) -> Moments:
        """Merge the moments of every rank (a no-op outside ``torchrun``)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.n, self.mean, self.m2))
        merged = Moments()
        for n, mean, m2 in parts:
            if n:
                merged._merge(n, mean, m2)
        self.n, self.mean, self.m2 = merged.n, merged.mean, merged.m2
        return self

    @property
    def std(self) -> Tensor:
        """Unbiased standard deviation (as ``torch.std``)."""
        if self.m2 is None:
            raise DataError("statistics: expected at least one shower, found none")
        return (self.m2 / max(self.n - 1, 1)).sqrt()


def as_source(data: object, geometry: Geometry | str | None = None, seed: int = 0
              ) -> ShowerSource | None:
    """A :class:`ShowerSource` for a file path, a list of paths or a source; None for a
    :class:`ShowerSet` or None (the in-memory path of the models)."""
    if data is None or isinstance(data, ShowerSet):
        return None
    if isinstance(data, ShowerSource):
        return data
    if isinstance(data, str | os.PathLike) or (
            isinstance(data, list | tuple) and all(isinstance(p, str | os.PathLike)
                                                   for p in data)):
        return FileSource(data, geometry, seed=seed)
    raise ConfigError(f"train: expected a ShowerSet, a file path, a list of paths or a "
                      f"ShowerSource, found {type(data).__name__}")


def head(source: ShowerSource | ShowerSet | None, n: int) -> ShowerSet | None:
    """The first ``n`` showers of a source (or a ShowerSet) in memory; None for None."""
    if source is None or isinstance(source, ShowerSet):
        return source
    return source.head(min(n, len(source)))  # type: ignore[attr-defined]


def as_val_source(val: object, geometry: Geometry | str | None = None, seed: int = 0
                  ) -> ShowerSource | None:
    """Validation data for a streamed training: a source for a path/list/source, an
    :class:`InMemorySource` for a :class:`ShowerSet`; None for None or an empty set."""
    if val is None or (isinstance(val, ShowerSet) and len(val) == 0):
        return None
    if isinstance(val, ShowerSet):
        return InMemorySource(val, seed)
    return as_source(val, geometry, seed)


def monitor_val(monitor: str, n: int, val: object) -> ShowerSet | None:
    """The in-memory validation showers a ``monitor: histogram`` or ``classifier`` score needs:
    the first ``n`` of a streamed validation source (nothing is loaded for ``monitor: loss``)."""
    if monitor == "loss" or val is None or isinstance(val, ShowerSet):
        return val  # type: ignore[return-value]
    return head(val, n)  # type: ignore[arg-type]


def gather_rows(t: Tensor) -> Tensor:
    """The rows of ``t`` from every ``torchrun`` rank, concatenated in rank order (``t``
    itself outside ``torchrun``); for small per-shower tensors (latents, layer energies)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, t.cpu())
    return torch.cat(parts)


class Rows:
    """Per-shower rows (a few numbers each: layer energies, latents) gathered over a streaming
    pass into one tensor allocated for ``capacity`` rows up front (grown by doubling if more
    come), instead of a list of one small tensor per read unit joined by ``torch.cat``: on
    dataset 3 a read unit holds ~25 showers, so a 100k-shower pass left ~4,000 small
    long-lived blocks among the freed temporaries, and the copy of ``cat`` doubled the peak."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.n = max(1, int(capacity)), 0
        self._buf: Tensor | None = None

    def add(self, t: Tensor) -> None:
        """Append the rows of ``t`` (2-D; every call the same width and dtype)."""
        if self._buf is None:
            self._buf = torch.empty((max(self.capacity, len(t)), t.shape[1]), dtype=t.dtype)
        if self.n + len(t) > len(self._buf):
            grown = torch.empty((max(2 * len(self._buf), self.n + len(t)), t.shape[1]),
                                dtype=self._buf.dtype)
            grown[:self.n] = self._buf[:self.n]
            self._buf = grown
        self._buf[self.n:self.n + len(t)] = t
        self.n += len(t)

    def tensor(self) -> Tensor:
        """The rows added so far (a view of the buffer)."""
        return self._buf[:self.n] if self._buf is not None else torch.empty(0, 0)


def collect_rows(parts: Iterable[Tensor], capacity: int) -> Tensor:
    """``torch.cat(list(parts))`` through one :class:`Rows` of ``capacity`` rows."""
    rows = Rows(capacity)
    for t in parts:
        rows.add(t)
    return rows.tensor()


def stats_chunks(source: ShowerSource) -> Iterator[ShowerSet]:
    """This rank's chunks for a one-pass statistics fit (initialises ``torchrun``'s process
    group first, so that :meth:`Moments.all_reduce` can merge the ranks' shares)."""
    from caloforge.training import _init_distributed, dist_info

    _init_distributed()
    rank, world = dist_info()
    yield from source.chunks(rank, world)


def e_inc_range(source: ShowerSource | ShowerSet) -> tuple[float, float]:
    """(min, max) incident energy in MeV, reading only the energies of a file source."""
    if isinstance(source, ShowerSet):
        return float(source.e_inc.min()), float(source.e_inc.max())
    if isinstance(source, InMemorySource):
        return e_inc_range(source.data)
    lo, hi = np.inf, -np.inf
    for i, (path, info) in enumerate(zip(source.paths, source.infos, strict=True)):
        key, unit = (("incident_energies", 1.0) if info.format == "calochallenge"
                     else ("energy", 1e3))
        with _open(path) as fh:
            e = np.asarray(fh[key][:], dtype=np.float64).reshape(-1) * unit
        rows = np.concatenate([np.arange(u.start, u.stop) for u in source.units
                               if u.file == i] or [np.zeros(0, int)])
        if len(rows):
            lo, hi = min(lo, float(e[rows].min())), max(hi, float(e[rows].max()))
    return lo, hi
