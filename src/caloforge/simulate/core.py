"""The simulator's entry points: :func:`simulate` (in memory) and :func:`simulate_to_file`.

Work is split into fixed-size chunks of showers; chunk ``i`` draws from its own generator seeded
with ``SeedSequence(seed, spawn_key=(1, i))`` and the incident energies come from
``SeedSequence(seed, spawn_key=(0,))``. The output therefore depends only on the seed and the
request, never on the number of worker processes (spawn-safe :mod:`multiprocessing`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge import energies as en
from caloforge.atomic import check_writable
from caloforge.data import ShowerSet, ShowerWriter
from caloforge.errors import ConfigError
from caloforge.geometry import DATASETS, Geometry
from caloforge.simulate.detectors import Detector, preset
from caloforge.simulate.em import em_components
from caloforge.simulate.hadronic import pion_components
from caloforge.simulate.voxelize import voxelize

#: Label stored in every file (HDF5 attribute ``generator``).
GENERATOR = "caloforge reference simulator (parametric, not Geant4)"
PARTICLES = ("photon", "electron", "positron", "pion")
#: The particle of each dataset's official files.
DEFAULT_PARTICLE = {"1-photons": "photon", "1-pions": "pion", "2": "electron", "3": "electron",
                    "calogan": "photon"}
#: Showers per random-number chunk (fixed: changing it changes the output of a seed).
SEED_CHUNK = {"3": 200}
_DEFAULT_SEED_CHUNK = 1000


def seed_chunk(dataset: str) -> int:
    """Showers per independently seeded chunk for ``dataset``."""
    return SEED_CHUNK.get(dataset, _DEFAULT_SEED_CHUNK)


def output_dtype(dataset: str) -> type:
    """Voxel dtype of the official files: float64 for dataset 1, float32 otherwise."""
    return np.float64 if dataset.startswith("1-") else np.float32


def simulate_showers(detector: Detector, e_inc: np.ndarray, particle: str,
                     rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
    """Voxel energies (N, n_voxels) in MeV for incident energies ``e_inc`` (MeV).

    The low-level entry point: any :class:`~caloforge.simulate.detectors.Detector` (e.g. a preset
    with changed parameters), one generator, no chunking.
    """
    e_inc = np.asarray(e_inc, dtype=float).reshape(-1)
    if particle not in PARTICLES:
        raise ConfigError(f"particle: expected one of {', '.join(PARTICLES)}, found {particle!r}")
    if len(e_inc) == 0:
        return np.zeros((0, detector.geometry.n_voxels), dtype=dtype)
    if particle == "pion":
        comps = pion_components(e_inc, detector, rng)
    else:
        comps = em_components(e_inc, particle, detector, rng)
    return voxelize(comps, detector, detector.geometry, rng, dtype)


@dataclass(frozen=True)
class Plan:
    """A resolved request: detector, particle, incident energies (MeV) and seed."""

    dataset: str
    detector: Detector
    particle: str
    e_inc: np.ndarray
    seed: int

    @property
    def geometry(self) -> Geometry:
        return self.detector.geometry

    def attrs(self) -> dict:
        """HDF5 attributes describing the request."""
        from caloforge import __version__

        return {"generator": GENERATOR, "simulator": "caloforge.simulate",
                "caloforge_version": __version__, "dataset": self.dataset,
                "particle": self.particle, "seed": int(self.seed),
                "detector": self.detector.name, "detector_notes": self.detector.notes,
                "n_showers": len(self.e_inc),
                "note": "Parametric showers (Grindhammer-Peters EM, Bock-type pions); "
                        "NOT Geant4 and NOT the official CaloChallenge data."}


def plan(dataset: str, n: int | None = None, *, seed: int = 0, particle: str | None = None,
         energies: np.ndarray | tuple[float, float] | None = None, full: bool = False,
         detector: Detector | None = None) -> Plan:
    """Validate a request and draw its incident energies (see :func:`simulate`)."""
    if dataset not in DATASETS:
        raise ConfigError(f"dataset: expected one of {', '.join(DATASETS)}, found {dataset!r}")
    particle = DEFAULT_PARTICLE[dataset] if particle is None else particle
    if particle not in PARTICLES:
        raise ConfigError(f"particle: expected one of {', '.join(PARTICLES)}, found {particle!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: expected an integer >= 0, found {seed!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
        raise ConfigError(f"n: expected a positive integer, found {n!r}")
    if full and n is not None and n != en.FULL_SIZE[dataset]:
        raise ConfigError(f"n: expected no n with full=True (the official size "
                          f"{en.FULL_SIZE[dataset]}), found {n}")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,)))
    is_list = energies is not None and not (isinstance(energies, tuple) and len(energies) == 2)
    if is_list:
        e = en.check_energies(np.asarray(energies))
        if n is not None and n != len(e):
            raise ConfigError(f"energies: expected {n} values (one per shower), found {len(e)}")
    else:
        if n is None and not full:
            raise ConfigError("n: expected a number of showers (or full=True), found none")
        n = en.FULL_SIZE[dataset] if n is None else int(n)
        if energies is None:
            e = en.official_energies(dataset, n, rng)
        else:
            e = en.range_energies(energies, n, rng, log=en.RANGES[dataset][2])
            en.check_energies(e)
    det = preset(dataset) if detector is None else detector
    if det.geometry_name != dataset:
        raise ConfigError(f"detector: expected a detector for geometry {dataset}, found one for "
                          f"{det.geometry_name}")
    return Plan(dataset, det, particle, e, int(seed))


def _chunk_job(args: tuple) -> np.ndarray:
    """Simulate chunk ``index`` of a plan (top level so that spawned workers can run it)."""
    detector, particle, e_chunk, seed, index, dtype = args
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    return simulate_showers(detector, e_chunk, particle, rng, dtype)


def iter_chunks(p: Plan, workers: int = 1, progress: bool = False
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (e_inc, showers) chunk by chunk, in order, from 1 or more worker processes."""
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise ConfigError(f"workers: expected a positive integer, found {workers!r}")
    size = seed_chunk(p.dataset)
    dtype = output_dtype(p.dataset)
    bounds = [(lo, min(lo + size, len(p.e_inc))) for lo in range(0, len(p.e_inc), size)]
    jobs = [(p.detector, p.particle, p.e_inc[lo:hi], p.seed, i, dtype)
            for i, (lo, hi) in enumerate(bounds)]
    bar = None
    if progress:
        from caloforge.progress import tqdm

        bar = tqdm(total=len(p.e_inc), unit="shower", desc=f"simulate {p.dataset}")
    try:
        if workers == 1 or len(jobs) <= 1:
            results: Iterator[np.ndarray] = map(_chunk_job, jobs)
            for (lo, hi), res in zip(bounds, results, strict=True):
                if bar is not None:
                    bar.update(hi - lo)
                yield p.e_inc[lo:hi], res
        else:
            p.detector.grid  # noqa: B018  (build once; pickled with the detector)
            ctx = multiprocessing.get_context("spawn")
            env = os.environ.get("OMP_NUM_THREADS")
            os.environ["OMP_NUM_THREADS"] = "1"
            try:
                with ctx.Pool(min(workers, len(jobs))) as pool:
                    # at most 2 chunks per worker in flight: memory stays bounded even when
                    # the consumer (e.g. the gzip writer) is slower than the workers
                    pending: deque = deque()
                    todo = iter(jobs)
                    for job in itertools.islice(todo, 2 * workers):
                        pending.append(pool.apply_async(_chunk_job, (job,)))
                    for lo, hi in bounds:
                        res = pending.popleft().get()
                        for job in itertools.islice(todo, 1):
                            pending.append(pool.apply_async(_chunk_job, (job,)))
                        if bar is not None:
                            bar.update(hi - lo)
                        yield p.e_inc[lo:hi], res
            finally:
                if env is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = env
    finally:
        if bar is not None:
            bar.close()


def simulate(dataset: str, n: int | None = None, *, seed: int = 0, particle: str | None = None,
             energies: np.ndarray | tuple[float, float] | None = None, full: bool = False,
             workers: int = 1, progress: bool = False,
             detector: Detector | None = None) -> ShowerSet:
    """Simulate ``n`` showers of ``dataset`` in memory.

    Args:
        dataset: One of :data:`caloforge.geometry.DATASETS`.
        n: Number of showers (``None`` with ``full=True``: the official file size).
        seed: Seed; the same seed gives the same showers whatever ``workers``.
        particle: photon, electron, positron or pion (default: the dataset's own).
        energies: Incident energies in MeV: an array (one per shower) or a ``(lo, hi)`` range
            (log-uniform; uniform for calogan). Default: the official mix (dataset 1 with
            ``n`` below the file size keeps the official per-energy proportions).
        full: Simulate the official file size.
        workers: Worker processes.
        progress: Show a progress bar.
        detector: A custom :class:`~caloforge.simulate.detectors.Detector` for ``dataset``'s
            geometry (default: the preset).

    Example:
        >>> s = simulate("1-photons", 100, seed=1)
        >>> s.showers.shape
        (100, 368)
    """
    p = plan(dataset, n, seed=seed, particle=particle, energies=energies, full=full,
             detector=detector)
    parts = [s for _, s in iter_chunks(p, workers, progress)]
    showers = np.concatenate(parts) if parts else np.zeros((0, p.geometry.n_voxels))
    return ShowerSet(p.e_inc.copy(), showers, p.geometry)


def simulate_to_file(path: str | os.PathLike, dataset: str, n: int | None = None, *,
                     seed: int = 0, particle: str | None = None,
                     energies: np.ndarray | tuple[float, float] | None = None,
                     full: bool = False, workers: int = 1, progress: bool = True,
                     overwrite: bool = False, chunk_size: int = 1000,
                     detector: Detector | None = None) -> Path:
    """Simulate into an HDF5 file (CaloChallenge layout; CaloGAN layout for ``calogan``).

    Written chunk by chunk (memory is bounded by ``chunk_size`` showers, at least one seed
    chunk, plus two chunks per worker) and atomically; an existing ``path`` is refused unless
    ``overwrite``. Arguments as :func:`simulate`. The file's attributes say that it is
    parametric, not Geant4.
    """
    check_writable(path, overwrite)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size: expected a positive integer, found {chunk_size!r}")
    p = plan(dataset, n, seed=seed, particle=particle, energies=energies, full=full,
             detector=detector)
    fmt = "calogan" if dataset == "calogan" else "calochallenge"
    buf_e: list[np.ndarray] = []
    buf_s: list[np.ndarray] = []
    with ShowerWriter(path, p.geometry, fmt=fmt, dtype=output_dtype(dataset), overwrite=overwrite,
                      attrs=p.attrs(), chunk_rows=min(chunk_size, 1000)) as writer:
        for e, s in iter_chunks(p, workers, progress):
            buf_e.append(e)
            buf_s.append(s)
            if sum(len(b) for b in buf_e) >= chunk_size:
                writer.append(np.concatenate(buf_e), np.concatenate(buf_s))
                buf_e, buf_s = [], []
        if buf_e:
            writer.append(np.concatenate(buf_e), np.concatenate(buf_s))
    return Path(path)
