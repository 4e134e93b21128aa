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

from caloforge.data import ShowerWriter, inspect
from caloforge.errors import ConfigError, DataError
from caloforge.geometry import DATASETS
from caloforge.progress import tqdm


def official_energies(dataset: str, n: int | None = None, seed: int = 0) -> np.ndarray:
    """The official incident energies (MeV) of ``dataset`` (one of :data:`DATASETS`), shuffled.

    Dataset 1: the 15 discrete energies with the official counts (121,000 photons, 120,800
    pions); ``n`` keeps the official proportions. Datasets 2/3: log-uniform in [1 GeV, 1 TeV];
    CaloGAN: uniform in [1, 100] GeV. ``n`` defaults to the official file size. The list itself
    lives in :mod:`caloforge.energies`, next to the geometries (one source of truth with the
    simulator).
    """
    from caloforge import energies as mix

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset: expected one of {', '.join(DATASETS)}, found {dataset!r}")
    if n is not None and n < 1:
        raise ConfigError(f"-n: expected a positive number of showers, found {n}")
    size = mix.FULL_SIZE[dataset] if n is None else n
    rng = np.random.default_rng(seed)
    return np.asarray(mix.official_energies(dataset, size, rng), dtype=np.float64)


def energies_from_file(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Incident energies (MeV) of a CaloChallenge or CaloGAN file, the first ``n`` if given."""
    info = inspect(path)
    key, unit = ("incident_energies", 1.0) if info.format == "calochallenge" else ("energy", 1e3)
    if info.n_showers == 0:
        raise DataError(f"{path}[{key}]: expected at least one incident energy, found 0 rows")
    if n is not None and n > info.n_showers:
        raise ConfigError(f"-n: expected at most {info.n_showers} showers (the energies in "
                          f"{path}), found {n}")
    stop = info.n_showers if n is None else n
    try:
        with h5py.File(path, "r") as fh:
            e = np.asarray(fh[key][:stop], dtype=np.float64).reshape(-1) * unit
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}[{key}]: expected readable energies, found {exc}") from None
    if not np.isfinite(e).all() or (e <= 0).any():
        i = int(np.flatnonzero(~np.isfinite(e) | (e <= 0))[0])
        raise DataError(f"{path}[{key}]: expected finite E_inc > 0, found {e[i] / unit} at "
                        f"row {i}")
    return e


def check_energy_range(e_inc: np.ndarray, model: torch.nn.Module, source: object,
                       checkpoint: object) -> None:
    """Refuse incident energies outside the range the model was trained on (its checkpoint
    records it; older checkpoints: the official range of the model's dataset), with a 1%
    margin: flows and autoencoders extrapolate badly, and silently."""
    from caloforge.energies import RANGES

    rng = getattr(model, "trained_e_inc", None)
    what = "range trained on by"
    if rng is None:
        if model.geometry.name not in RANGES:
            return
        rng, what = RANGES[model.geometry.name][:2], f"official {model.geometry.name} range; no "\
            "trained range recorded in"
    lo, hi = rng
    e_min, e_max = float(np.min(e_inc)), float(np.max(e_inc))
    if e_min < lo * 0.99 or e_max > hi * 1.01:
        raise ConfigError(f"{source}: expected incident energies within {lo:.6g}..{hi:.6g} MeV "
                          f"(the {what} {checkpoint}), found {e_min:.6g}..{e_max:.6g} MeV; "
                          f"refused (models do not extrapolate in energy)")


@dataclass
class GenerationResult:
    """What :func:`generate_to_file` did. Times in seconds; ``ms_per_shower`` covers sampling
    only (not file writing)."""

    path: Path
    n: int
    batch_size: int
    sample_seconds: float
    total_seconds: float
    redrawn: int = 0  # showers drawn again because they held NaN, inf or negative voxels

    @property
    def ms_per_shower(self) -> float:
        return 1e3 * self.sample_seconds / max(self.n, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: How often a shower with non-finite or negative voxels is drawn again before the model is
#: declared broken.
MAX_REDRAWS = 10


def _invalid_rows(s: np.ndarray) -> np.ndarray:
    """Indices of rows with a NaN, an infinity or a negative voxel."""
    return np.flatnonzero(~np.isfinite(s).all(1) | (s < 0).any(1))


def redraw_invalid(model: torch.nn.Module, e: np.ndarray, s: np.ndarray,
                   source: object = None, tries: int = MAX_REDRAWS) -> tuple[np.ndarray, int]:
    """Draw the rows of ``s`` that hold NaN, inf or negative voxels again (at most ``tries``
    times each); return the repaired showers and how many rows were re-drawn.

    Raises:
        DataError: rows are still invalid after ``tries`` draws; the message names the model
            (``source``: its checkpoint), not the output file.
    """
    bad = _invalid_rows(s)
    if not len(bad):
        return s, 0
    redrawn = len(bad)
    for _ in range(tries):
        with torch.inference_mode():
            fresh = model.sample(torch.as_tensor(e[bad], dtype=torch.float64))
        fresh = fresh.detach().to("cpu", torch.float32).numpy()
        s[bad] = fresh
        still = _invalid_rows(fresh)
        bad = bad[still]
        if not len(bad):
            return s, redrawn
    name = getattr(model, "name", type(model).__name__)
    raise DataError(f"{source or name}: expected model {name} to generate finite, non-negative "
                    f"voxel energies, found {len(bad)} showers still invalid after {tries} "
                    f"re-draws (e.g. at E_inc {e[bad[0]]:.6g} MeV); the model is broken "
                    f"(retrain it, e.g. with a lower lr or grad_clip)")


#: Showers per sampling call on a CPU: larger calls gain nothing there and lose cache
#: locality (CaloINN took 2.2x longer per shower at 10,000 than at 1,000 on 2 cores, and
#: 5x the memory; BENCHMARKS.md, "Sampling speed").
CPU_MICRO_BATCH = 1000


def micro_batch_size(device: torch.device, batch_size: int, micro_batch: int | None = None
                     ) -> int:
    """Showers per sampling call inside a batch of ``batch_size``: ``micro_batch`` when given,
    else :data:`CPU_MICRO_BATCH` on a CPU and the whole batch on a GPU."""
    if micro_batch is not None:
        if micro_batch < 1:
            raise ConfigError(f"--micro-batch: expected a positive integer, found {micro_batch}")
        return min(micro_batch, batch_size)
    return min(batch_size, CPU_MICRO_BATCH) if device.type == "cpu" else batch_size


#: ``--precision`` values: the dtype of the matrix multiplications while sampling.
PRECISIONS = ("float32", "bfloat16")


def precision_context(device: torch.device, precision: str = "float32"
                      ) -> contextlib.AbstractContextManager:
    """The context that samples at ``precision``: ``float32`` (default) changes nothing;
    ``bfloat16`` runs the linear and convolution layers in bfloat16 through
    ``torch.autocast`` (float32 accumulation; splines, pre- and postprocessing stay float32,
    see :class:`caloforge.flows.spline.RQSTransform`). On CPUs with AVX512-BF16 or AMX a
    bfloat16 matmul is ~3x faster (BENCHMARKS.md, "Precision"); the showers change within
    bfloat16's 8-bit mantissa, which the same section shows the classifiers cannot see."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: expected one of {', '.join(PRECISIONS)}, found "
                          f"{precision!r}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def sample_batches(model: torch.nn.Module, e_inc: np.ndarray, batch_size: int,
                   progress: bool = False, compile: bool = False,
                   stats: dict | None = None, source: object = None,
                   micro_batch: int | None = None, precision: str = "float32"):
    """Yield ``(e_inc chunk, showers chunk (numpy, MeV), sampling seconds)`` per batch.

    A batch is sampled in calls of :func:`micro_batch_size` showers (``micro_batch``; default
    1,000 on a CPU, the whole batch on a GPU), so the time per shower does not grow with
    ``batch_size``; ``batch_size`` sets how many showers are written at a time.

    Showers with NaN, inf or negative voxels are drawn again (:func:`redraw_invalid`); their
    number is added to ``stats["redrawn"]`` when ``stats`` is given.

    ``compile``: sample through ``model.compiled_sampler()`` (torch.compile of the model's
    one-pass parts, see :meth:`~caloforge.models.base.GeneratorModel.compiled_sampler`); every
    call is padded to the micro-batch size so that one compiled graph serves all (the first
    batch includes the compile time).

    ``precision``: ``float32`` or ``bfloat16`` matmuls (:func:`precision_context`); showers
    drawn again because they were invalid are drawn in float32.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, found {batch_size}")
    device = getattr(model, "device", torch.device("cpu"))
    precision_context(device, precision)  # checks the value before any work
    micro = micro_batch_size(device, batch_size, micro_batch)
    sampler = model.compiled_sampler() if compile else model.sample

    def call(e: np.ndarray) -> torch.Tensor:
        padded = e
        if compile and len(e) < micro:
            padded = np.concatenate([e, np.full(micro - len(e), e[-1])])
        return sampler(torch.as_tensor(padded, dtype=torch.float64))[:len(e)]

    bar = tqdm(total=len(e_inc), desc="generate", unit="shower", disable=not progress,
               leave=False)
    with bar:
        for lo in range(0, len(e_inc), batch_size):
            e = e_inc[lo:lo + batch_size]
            _sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode(), precision_context(device, precision):
                s = torch.cat([call(e[m:m + micro]).detach().to("cpu", torch.float32)
                               for m in range(0, len(e), micro)])
            s = s.numpy()
            s, redrawn = redraw_invalid(model, e, s, source)
            if stats is not None:
                stats["redrawn"] = stats.get("redrawn", 0) + redrawn
            _sync(device)
            dt = time.perf_counter() - t0
            yield e, s, dt
            bar.update(len(e))


def generate_to_file(model: torch.nn.Module, e_inc: np.ndarray, path: str | os.PathLike, *,
                     batch_size: int = 10_000, seed: int = 0, overwrite: bool = False,
                     progress: bool = True, attrs: dict | None = None,
                     compile: bool = False, micro_batch: int | None = None,
                     precision: str = "float32") -> GenerationResult:
    """Sample showers for ``e_inc`` (MeV) with ``model`` and write them to ``path``.

    The file is written chunk by chunk through :class:`~caloforge.data.ShowerWriter`
    (atomic: it only appears when every batch succeeded). The torch RNG is seeded with
    ``seed``, so the same seed, model and device give the same file. ``compile`` samples
    through ``torch.compile`` (see :func:`sample_batches`; worth it for large runs);
    ``micro_batch`` overrides the showers per sampling call (:func:`micro_batch_size`);
    ``precision`` sets the matmul dtype (:func:`precision_context`; recorded in the file).
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
             "precision": precision, **(attrs or {})}
    stats: dict = {}
    with ShowerWriter(path, model.geometry, overwrite=overwrite, attrs=attrs,
                      chunk_rows=min(batch_size, 1000)) as writer:
        for e, s, dt in sample_batches(model, e_inc, batch_size, progress, compile, stats,
                                       source=attrs.get("checkpoint"),
                                       micro_batch=micro_batch, precision=precision):
            sample_s += dt
            writer.append(e, s)
    return GenerationResult(Path(path), len(e_inc), batch_size, sample_s,
                            time.perf_counter() - t_start, stats.get("redrawn", 0))
