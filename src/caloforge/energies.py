"""Incident-energy mixes of the official datasets, and user lists or ranges (MeV).

They live next to the geometries (:mod:`caloforge.geometry`) because they describe the datasets,
not a simulator: generation (:mod:`caloforge.generation`) and the reference simulator
(:mod:`caloforge.simulate`) both read them from here.

* Dataset 1: the 15 energies 2^8 ... 2^22 MeV with the per-energy counts of the official files
  (CaloChallenge/homepage ``Dataset_creation.ipynb``; spec/EVALUATION.md §1): 121,000 photons,
  120,800 pions per file. Fewer (or more) showers keep the official proportions: counts by
  largest remainder, so every energy appears, then shuffled.
* Datasets 2 and 3: log-uniform in 1 GeV - 1 TeV (100,000 and 50,000 showers per file).
* CaloGAN: uniform in 1 - 100 GeV (100,000 showers per file).
"""

from __future__ import annotations

import math

import numpy as np

from caloforge.errors import ConfigError

#: Dataset-1 incident energies, MeV.
DS1_ENERGIES = 2.0 ** np.arange(8, 23)
_DS1_COMMON = [10_000] * 10
DS1_COUNTS = {
    "1-photons": np.array(_DS1_COMMON + [10_000, 5_000, 3_000, 2_000, 1_000]),
    "1-pions": np.array(_DS1_COMMON + [9_800, 5_000, 3_000, 2_000, 1_000]),
}
#: Showers per official file.
FULL_SIZE = {"1-photons": 121_000, "1-pions": 120_800, "2": 100_000, "3": 50_000,
             "calogan": 100_000}
#: Default continuous ranges (MeV) and whether they are log-uniform.
RANGES = {"2": (1e3, 1e6, True), "3": (1e3, 1e6, True), "calogan": (1e3, 1e5, False),
          "1-photons": (256.0, 4194304.0, True), "1-pions": (256.0, 4194304.0, True)}


def stratified_counts(weights: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` proportional to ``weights`` (largest remainder)."""
    p = np.asarray(weights, float) / np.sum(weights)
    raw = p * n
    counts = np.floor(raw).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def official_energies(dataset: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` incident energies (MeV) following the dataset's official mix, shuffled."""
    if dataset in DS1_COUNTS:
        e = np.repeat(DS1_ENERGIES, stratified_counts(DS1_COUNTS[dataset], n))
        return rng.permutation(e)
    lo, hi, log = RANGES[dataset]
    return range_energies((lo, hi), n, rng, log)


def range_energies(bounds: tuple[float, float], n: int, rng: np.random.Generator,
                   log: bool = True) -> np.ndarray:
    """``n`` energies (MeV) in ``bounds``: log-uniform (``log``) or uniform."""
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ConfigError(f"energies: expected a range 0 < lo <= hi in MeV, found ({lo}, {hi})")
    u = rng.random(n)
    if log:
        return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    return lo + u * (hi - lo)


def check_energies(e: np.ndarray) -> np.ndarray:
    """Validate a user list of incident energies (finite, > 0 MeV); returns float64 (N,)."""
    e = np.asarray(e, dtype=float).reshape(-1)
    bad = ~np.isfinite(e) | (e <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"energies: expected finite values > 0 MeV, found {e[i]} at index {i}")
    if e.max(initial=0) > 1e8:
        raise ConfigError(f"energies: expected values <= 1e8 MeV (100 TeV), found {e.max()}")
    return e
