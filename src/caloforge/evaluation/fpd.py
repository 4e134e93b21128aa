"""Fréchet and kernel physics distances (FPD, KPD) between two feature samples.

Both follow ``jetnet.evaluation`` (arXiv:2211.10295) as used by the CaloChallenge evaluation
(spec/MODELS.md "jetnet FPD/KPD", spec/EVALUATION.md §4), re-implemented with numpy/scipy:

1. every feature is divided by max|feature| of the *real* (reference) sample (0 -> 1);
2. **FPD**: for 10 batch sizes ``N`` evenly spaced in ``1/N`` between ``min_samples`` and
   ``max_samples``, the mean over 20 batches (drawn with replacement, one
   ``numpy.random.default_rng(seed)`` stream) of the Fréchet distance
   ``|mu_1 - mu_2|^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^(1/2))``; a linear fit in ``1/N`` with
   non-negative parameters gives the value at ``N -> inf`` (intercept) and its error;
3. **KPD**: the unbiased MMD^2 with the polynomial kernel ``k(x, y) = (x.y / d + 1)^4`` on
   ``num_batches`` batches (batch ``i`` drawn with ``default_rng(seed + 1000 i)``); value = median,
   error = half the 16.275-83.725 % inter-quantile range.

The CaloChallenge settings are ``min_samples=10_000`` (FPD) and ``batch_size=10_000`` (KPD); the
results are usually quoted x 10^3. Kernel sums are accumulated block by block, so a 10,000 batch
needs ~40 MB instead of 2.4 GB.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import linalg
from scipy.optimize import curve_fit
from scipy.stats import iqr

#: CaloChallenge settings (evaluate.py): smallest FPD batch, KPD batch size.
CALO_MIN_SAMPLES = 10_000
CALO_KPD_BATCH = 10_000


def feature_scale(max_abs: np.ndarray) -> np.ndarray:
    """The divisors of the normalisation: max|x| of the real sample per feature, 1 where a
    feature is all 0."""
    scale = np.array(max_abs, dtype=np.float64)
    scale[scale == 0] = 1.0
    return scale


def normalise_features(real: np.ndarray, gen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples divided by max|x| of ``real`` per feature (features that are all 0 kept)."""
    real, gen = np.asarray(real, dtype=np.float64), np.asarray(gen, dtype=np.float64)
    maxes = feature_scale(np.max(np.abs(real), axis=0))
    return real / maxes, gen / maxes


class StoredRows:
    """A feature sample kept elsewhere (e.g. a scratch file), for :func:`fpd` and :func:`kpd`:
    ``rows[idx]`` is ``take(idx) / scale``, the same values as ``(x / scale)[idx]`` of the
    sample in memory, so only the drawn batches are ever in memory.

    Args:
        take: Rows by index (repeats allowed) -> (len(idx), d) float64.
        n: Number of rows.
        scale: Per-feature divisors (:func:`feature_scale` of the real sample's max|x|).
    """

    def __init__(self, take: Callable[[np.ndarray], np.ndarray], n: int,
                 scale: np.ndarray) -> None:
        self.take, self.n, self.scale = take, int(n), np.asarray(scale, dtype=np.float64)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.take(np.asarray(idx)), dtype=np.float64) / self.scale


Sample = np.ndarray | StoredRows


def _normalised(real: Sample, gen: Sample, normalise: bool) -> tuple[Sample, Sample]:
    """Arrays normalised (or not) in memory; :class:`StoredRows` are normalised already."""
    if isinstance(real, StoredRows) or isinstance(gen, StoredRows):
        if not (isinstance(real, StoredRows) and isinstance(gen, StoredRows)):
            raise TypeError("fpd/kpd: expected two arrays or two StoredRows")
        return real, gen
    if normalise:
        return normalise_features(real, gen)
    return np.asarray(real, np.float64), np.asarray(gen, np.float64)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians (means ``mu``, covariances ``cov``)."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
        offset = np.eye(len(cov1)) * eps
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def fpd(real: Sample, gen: Sample, min_samples: int = 20_000,
        max_samples: int = 50_000, num_batches: int = 20, num_points: int = 10,
        normalise: bool = True, seed: int = 42) -> tuple[float, float]:
    """FPD value (extrapolated to infinite N) and its fit error; inputs (N, d) arrays or
    :class:`StoredRows` (normalised by their own scale, ``normalise`` ignored)."""
    x, y = _normalised(real, gen, normalise)
    sizes = (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype(np.int32)
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        vals = []
        for _ in range(num_batches):
            a = x[rng.choice(len(x), size=size)]
            b = y[rng.choice(len(y), size=size)]
            vals.append(frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                         b.mean(0), np.cov(b, rowvar=False)))
        means.append(np.mean(vals))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # covariance warnings when the fit is exact
        params, cov = curve_fit(lambda t, c, m: c + m * t, 1.0 / sizes, means,
                                bounds=([0, 0], [np.inf, np.inf]))
    return float(params[0]), float(np.sqrt(np.diag(cov)[0]))


def _kernel_sum(a: np.ndarray, b: np.ndarray | None = None, block: int = 1000) -> float:
    """Sum over all pairs of the polynomial kernel (a.b / d + 1)^4, block by block.

    With ``b`` None the sum is over ``a`` x ``a`` and uses the symmetry (upper blocks only).
    """
    d = a.shape[1]
    total = 0.0
    for lo in range(0, len(a), block):
        hi = min(lo + block, len(a))
        k = a[lo:hi] @ (a[lo:] if b is None else b).T
        k /= d
        k += 1.0
        k *= k  # two in-place squares: much faster than k**4
        k *= k
        if b is None:  # diagonal block once, the blocks right of it twice
            total += float(np.sum(k[:, :hi - lo])) + 2.0 * float(np.sum(k[:, hi - lo:]))
        else:
            total += float(np.sum(k))
    return total


def mmd_poly_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate with the kernel (x.y / d + 1)^4."""
    m, n, d = len(x), len(y), x.shape[1]
    diag_x = float(np.sum((np.sum(x * x, 1) / d + 1.0) ** 4))
    diag_y = float(np.sum((np.sum(y * y, 1) / d + 1.0) ** 4))
    return ((_kernel_sum(x) - diag_x) / (m * (m - 1))
            + (_kernel_sum(y) - diag_y) / (n * (n - 1))
            - 2.0 * _kernel_sum(x, y) / (m * n))


def kpd(real: Sample, gen: Sample, num_batches: int = 10, batch_size: int = 5_000,
        normalise: bool = True, seed: int = 42) -> tuple[float, float]:
    """KPD median over batches and half its 16-84 % inter-quantile range; inputs (N, d)
    arrays or :class:`StoredRows` (normalised by their own scale, ``normalise`` ignored)."""
    x, y = _normalised(real, gen, normalise)
    vals = []
    for i in range(num_batches):
        rng = np.random.default_rng(seed + i * 1000)
        a = x[rng.choice(len(x), size=batch_size)]
        b = y[rng.choice(len(y), size=batch_size)]
        vals.append(mmd_poly_unbiased(a, b))
    return float(np.median(vals)), float(iqr(vals, rng=(16.275, 83.725)) / 2.0)
