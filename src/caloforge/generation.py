"""Batched sampling of a trained generator into a shower file, with timing.

* :func:`official_energies`: the CaloChallenge / CaloGAN incident-energy mix of a dataset;
* :func:`energies_from_file`: the incident energies of a reference file (no voxels read);
* :func:`generate_to_file`: sample in batches and write a CaloChallenge file atomically,
  timing only the sampling (with CUDA synchronisation), so ``ms_per_shower`` is comparable
  with the CaloChallenge timing tables.

Energies are in MeV everywhere.

References:
    CaloChallenge 2022 dataset descriptions (calochallenge.github.io/homepage): dataset 1 is
    15 discrete energies 2^8..2^22 MeV; datasets 2 and 3 are log-uniform in 1 GeV..1 TeV.
    M. Paganini et al., "CaloGAN", arXiv:1705.02355 (uniform 1..100 GeV).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from caloforge.data import ShowerWriter, inspect
from caloforge.errors import ConfigError, DataError
from caloforge.geometry import DATASETS


def official_energies(dataset: str, n: int | None = None, seed: int = 0) -> np.ndarray:
    """The official incident energies (MeV) of ``dataset`` (one of :data:`DATASETS`), shuffled.

    Dataset 1: the 15 discrete energies with the official counts (121,000 photons, 120,800
    pions); ``n`` keeps the official proportions. Datasets 2/3: log-uniform in [1 GeV, 1 TeV];
    CaloGAN: uniform in [1, 100] GeV. ``n`` defaults to the official file size. The list itself
    lives in :mod:`caloforge.simulate.energies` (one source of truth with the simulator).
    """
    from caloforge.simulate import energies as sim

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset: expected one of {', '.join(DATASETS)}, found {dataset!r}")
    if n is not None and n < 1:
        raise ConfigError(f"-n: expected a positive number of showers, found {n}")
    size = sim.FULL_SIZE[dataset] if n is None else n
    rng = np.random.default_rng(seed)
    return np.asarray(sim.official_energies(dataset, size, rng), dtype=np.float64)


def energies_from_file(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Incident energies (MeV) of a CaloChallenge or CaloGAN file, the first ``n`` if given."""
    info = inspect(path)
    key, unit = ("incident_energies", 1.0) if info.format == "calochallenge" else ("energy", 1e3)
    stop = info.n_showers if n is None else min(n, info.n_showers)
    try:
        with h5py.File(path, "r") as fh:
            e = np.asarray(fh[key][:stop], dtype=np.float64).reshape(-1) * unit
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}[{key}]: expected readable energies, found {exc}") from None
    if not np.isfinite(e).all() or (e <= 0).any():
        raise DataError(f"{path}[{key}]: expected finite E_inc > 0, found invalid values")
    return e


@dataclass
class GenerationResult:
    """What :func:`generate_to_file` did. Times in seconds; ``ms_per_shower`` covers sampling
    only (not file writing)."""

    path: Path
    n: int
    batch_size: int
    sample_seconds: float
    total_seconds: float

    @property
    def ms_per_shower(self) -> float:
        return 1e3 * self.sample_seconds / max(self.n, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample_batches(model: torch.nn.Module, e_inc: np.ndarray, batch_size: int,
                   progress: bool = False, compile: bool = False):
    """Yield ``(e_inc chunk, showers chunk (numpy, MeV), sampling seconds)`` per batch.

    ``compile``: sample through ``model.compiled_sampler()`` (torch.compile of the model's
    one-pass parts, see :meth:`~caloforge.models.base.GeneratorModel.compiled_sampler`); every
    batch is padded to
    ``batch_size`` so that one compiled graph serves all (the first batch includes the
    compile time).
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, found {batch_size}")
    device = getattr(model, "device", torch.device("cpu"))
    sampler = model.compiled_sampler() if compile else model.sample
    bar = tqdm(total=len(e_inc), desc="generate", unit="shower", disable=not progress,
               leave=False)
    with bar:
        for lo in range(0, len(e_inc), batch_size):
            e = e_inc[lo:lo + batch_size]
            padded = e
            if compile and len(e) < batch_size:
                padded = np.concatenate([e, np.full(batch_size - len(e), e[-1])])
            _sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                s = sampler(torch.as_tensor(padded, dtype=torch.float64))[:len(e)]
            _sync(device)
            dt = time.perf_counter() - t0
            yield e, s.detach().to("cpu", torch.float32).numpy(), dt
            bar.update(len(e))


def generate_to_file(model: torch.nn.Module, e_inc: np.ndarray, path: str | os.PathLike, *,
                     batch_size: int = 10_000, seed: int = 0, overwrite: bool = False,
                     progress: bool = True, attrs: dict | None = None,
                     compile: bool = False) -> GenerationResult:
    """Sample showers for ``e_inc`` (MeV) with ``model`` and write them to ``path``.

    The file is written chunk by chunk through :class:`~caloforge.data.ShowerWriter`
    (atomic: it only appears when every batch succeeded). The torch RNG is seeded with
    ``seed``, so the same seed, model and device give the same file. ``compile`` samples
    through ``torch.compile`` (see :func:`sample_batches`; worth it for large runs).
    """
    e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    if len(e_inc) == 0:
        raise ConfigError("-n: expected at least one shower to generate, found 0")
    torch.manual_seed(seed)
    with contextlib.suppress(Exception):
        torch.cuda.manual_seed_all(seed)
    t_start = time.perf_counter()
    sample_s = 0.0
    attrs = {"generator": str(getattr(model, "name", type(model).__name__)), "seed": seed,
             **(attrs or {})}
    with ShowerWriter(path, model.geometry, overwrite=overwrite, attrs=attrs,
                      chunk_rows=min(batch_size, 1000)) as writer:
        for e, s, dt in sample_batches(model, e_inc, batch_size, progress, compile):
            sample_s += dt
            writer.append(e, s)
    return GenerationResult(Path(path), len(e_inc), batch_size, sample_s,
                            time.perf_counter() - t_start)
