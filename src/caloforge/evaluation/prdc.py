"""Precision, recall, density and coverage (PRDC) of generated vs reference showers.

Definitions (Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
arXiv:2002.09797; the ``prdc`` package), with Euclidean distances ``D``, ``r_i`` the distance of
reference point ``i`` to its k-th nearest other reference point and ``f_j`` likewise for
generated point ``j`` (k = 5):

* precision = fraction of generated ``j`` with ``D(i, j) < r_i`` for some ``i``;
* recall    = fraction of reference ``i`` with ``D(i, j) < f_j`` for some ``j``;
* density   = mean over ``j`` of #{i : D(i, j) < r_i} / k;
* coverage  = fraction of reference ``i`` whose nearest generated point is closer than ``r_i``.

The CaloChallenge computes them on ``log10`` voxel energies (MeV, thresholded) with zero voxels
replaced by 0.1 MeV (spec/EVALUATION.md §4). Distances are computed block by block; at most
``max_samples`` showers of each sample are used (random subset), because the pairwise matrices
grow as N^2 (121,000^2 distances would need 117 GB).
"""

from __future__ import annotations

import numpy as np

from caloforge.data import ShowerSet
from caloforge.features import CHUNK_VALUES, apply_threshold

#: Default number of showers per sample used by :func:`shower_prdc`.
PRDC_MAX_SAMPLES = 10_000
#: Replacement of zero voxels (MeV) before taking log10.
ZERO_FILL_MEV = 0.1
#: Above this many bytes per sample in float64 (10,000 dataset-3 showers: 3.2 GB), the log
#: voxels are kept in float32: half the memory; distances then come from float32 products
#: (relative error ~1e-6 of the squared distance, far below the k-NN radii's spread).
FLOAT64_BYTES = 2**30


def _sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared row norms in float64, block by block (no (N, d) temporary)."""
    out = np.empty(len(x))
    step = max(1, 2**22 // max(x.shape[1], 1))
    for lo in range(0, len(x), step):
        blk = np.asarray(x[lo:lo + step], dtype=np.float64)
        out[lo:lo + step] = np.einsum("ij,ij->i", blk, blk)
    return out


def _distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d2 = _sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point of ``x`` to its k-th nearest other point (self excluded)."""
    sq = _sq_norms(x)
    step = max(1, 2**24 // max(len(x), 1))
    out = np.empty(len(x))
    for lo in range(0, len(x), step):
        d = _distances(x[lo:lo + step], x, sq)
        out[lo:lo + step] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return out


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` w.r.t. ``real`` (both (N, d));
    float32 inputs stay float32 (see :data:`FLOAT64_BYTES`), anything else is float64."""
    dtype = np.float32 if np.asarray(real).dtype == np.asarray(fake).dtype == np.float32 \
        else np.float64
    real = np.asarray(real, dtype=dtype)
    fake = np.asarray(fake, dtype=dtype)
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    fake_sq = _sq_norms(fake)
    inside_any = np.zeros(len(fake), dtype=bool)  # precision
    inside_count = np.zeros(len(fake))  # density
    recalled = np.zeros(len(real), dtype=bool)
    covered = np.zeros(len(real), dtype=bool)
    step = max(1, 2**24 // max(len(fake), 1))
    for lo in range(0, len(real), step):
        d = _distances(real[lo:lo + step], fake, fake_sq)
        inside = d < r_real[lo:lo + step, None]
        inside_any |= inside.any(0)
        inside_count += inside.sum(0)
        recalled[lo:lo + step] = (d < r_fake[None, :]).any(1)
        covered[lo:lo + step] = d.min(1) < r_real[lo:lo + step]
    return {"precision": float(inside_any.mean()), "recall": float(recalled.mean()),
            "density": float(inside_count.mean() / k), "coverage": float(covered.mean())}


def log_voxels(ss: ShowerSet, threshold: float, dtype: type = np.float64) -> np.ndarray:
    """log10 of thresholded voxel energies (MeV), zeros replaced by :data:`ZERO_FILL_MEV`."""
    out = np.empty((len(ss), ss.geometry.n_voxels), dtype=dtype)
    rows = max(1, CHUNK_VALUES // max(ss.geometry.n_voxels, 1))
    for lo in range(0, len(ss), rows):  # block by block, straight into the result
        x = apply_threshold(ss.showers[lo:lo + rows], threshold)
        x[x <= 0] = ZERO_FILL_MEV
        np.log10(x, out=out[lo:lo + rows])
    return out


def shower_prdc(generated: ShowerSet, reference: ShowerSet, threshold: float, k: int = 5,
                max_samples: int = PRDC_MAX_SAMPLES, seed: int = 0) -> dict[str, float]:
    """PRDC on log voxel energies of (at most ``max_samples`` of) each sample."""
    rng = np.random.default_rng(seed)

    def pick(ss: ShowerSet) -> ShowerSet:
        if len(ss) <= max_samples:
            return ss
        return ss.subset(np.sort(rng.choice(len(ss), max_samples, replace=False)))

    n = min(max(len(generated), len(reference)), max_samples)
    dtype = np.float32 if n * reference.geometry.n_voxels * 8 > FLOAT64_BYTES else np.float64
    return prdc(log_voxels(pick(reference), threshold, dtype),
                log_voxels(pick(generated), threshold, dtype), k)
