"""Intrinsic dimension of shower data: Levina–Bickel MLE with MacKay–Ghahramani averaging.

CaloMan chooses the latent size of its autoencoder from an estimate of the dimension of the
shower manifold (the seed talk's table: photons 20 / 23 / 55 on raw / preprocessed /
preprocessed + log data). For a point x_i with Euclidean distances T_1(x_i) <= ... <= T_k(x_i)
to its k nearest neighbours, the Levina–Bickel pointwise estimate is

    m_k(x_i) = [ 1/(k-1) * sum_{j=1}^{k-1} log(T_k(x_i) / T_j(x_i)) ]^{-1}

and, following MacKay & Ghahramani, the estimates are combined by averaging their *inverses*
(the harmonic mean of the m_k(x_i)), which removes most of the small-k bias of the plain mean:

    m_k = [ 1/n * sum_i m_k(x_i)^{-1} ]^{-1}.

Scanning k (default 5..20) and averaging m_k over k gives the reported estimate.

Zero distances (duplicate or all-zero showers) make log(T_k/T_j) infinite; both are removed
before the kNN search, which is done exactly with :class:`sklearn.neighbors.NearestNeighbors`.

References:
    E. Levina, P. Bickel, "Maximum likelihood estimation of intrinsic dimension", NIPS 2004.
    D. MacKay, Z. Ghahramani, "Comments on 'Maximum likelihood estimation of intrinsic
    dimension' by E. Levina and P. Bickel" (2005).
    J. Cresswell et al., "CaloMan: fast generation of calorimeter showers with density
    estimation on learned manifolds", arXiv:2211.15380.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caloforge.errors import ConfigError, DataError

#: Data spaces understood by :func:`transform_space`.
SPACES = ("raw", "pre", "pre-log")
#: CaloScore scale factor f of E_vox / (f E_inc) (arXiv:2106.05285).
CALOSCORE_F = 3.1
#: Logit regulariser alpha of the ``pre-log`` space.
LOGIT_ALPHA = 1e-6


@dataclass
class DimensionEstimate:
    """Result of :func:`estimate`.

    Attributes:
        dimension: Mean of the per-k MacKay–Ghahramani estimates over the scanned k.
        per_k: k -> MacKay–Ghahramani estimate m_k.
        n_used: Points used after removing all-zero and duplicate rows.
        n_zero: All-zero rows removed.
        n_duplicate: Duplicate rows removed (copies beyond the first).
        pointwise: Pointwise Levina–Bickel estimates m_k(x_i) at the largest k.
    """

    dimension: float
    per_k: dict[int, float]
    n_used: int
    n_zero: int = 0
    n_duplicate: int = 0
    pointwise: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)


def parse_k_range(text: str) -> tuple[int, int]:
    """Parse ``"5:20"`` (or ``"10"``) into an inclusive (k_min, k_max) with 2 <= k_min <= k_max."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        raise ConfigError(f"--k: expected K or KMIN:KMAX (integers), found {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] < 2 or parts[1] < parts[0]:
        raise ConfigError(f"--k: expected KMIN:KMAX with 2 <= KMIN <= KMAX, found {text!r}")
    return parts[0], parts[1]


def transform_space(showers: np.ndarray, e_inc: np.ndarray | None = None, space: str = "raw"
                    ) -> np.ndarray:
    """Map voxel energies (N, V) in MeV to the space the dimension is estimated in.

    * ``raw``: the voxel energies in MeV;
    * ``pre``: CaloScore preprocessing E_vox / (3.1 E_inc) (dimensionless);
    * ``pre-log``: ``pre`` followed by logit(alpha + (1 - 2 alpha) x), alpha = 1e-6.
    """
    if space not in SPACES:
        raise ConfigError(f"--space: expected one of {', '.join(SPACES)}, found {space!r}")
    x = np.asarray(showers, dtype=np.float64)
    if space == "raw":
        return x
    if e_inc is None:
        raise ConfigError(f"--space {space}: expected incident energies, found none")
    x = x / (CALOSCORE_F * np.asarray(e_inc, dtype=np.float64).reshape(-1, 1))
    if space == "pre-log":
        x = np.clip(LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * x, LOGIT_ALPHA, 1 - LOGIT_ALPHA)
        x = np.log(x) - np.log1p(-x)
    return x


def _clean(x: np.ndarray, zero_mask: np.ndarray | None) -> tuple[np.ndarray, int, int]:
    """Drop all-zero rows (by ``zero_mask``, else rows that are exactly 0) and duplicates."""
    zero = zero_mask if zero_mask is not None else ~np.any(x != 0, axis=1)
    x = x[~zero]
    n_zero = int(zero.sum())
    uniq = np.unique(x, axis=0) if len(x) else x
    return uniq, n_zero, len(x) - len(uniq)


def estimate(x: np.ndarray, k_min: int = 5, k_max: int = 20, *, n_jobs: int = 1,
             zero_mask: np.ndarray | None = None) -> DimensionEstimate:
    """Levina–Bickel / MacKay–Ghahramani intrinsic dimension of the rows of ``x``.

    Args:
        x: Points (N, D) in any units (the estimate is scale invariant).
        k_min, k_max: Inclusive neighbourhood-size scan, 2 <= k_min <= k_max.
        n_jobs: Parallel jobs of the kNN search.
        zero_mask: Rows to treat as empty showers (default: rows that are exactly zero).

    Returns:
        A :class:`DimensionEstimate`.

    Raises:
        DataError: fewer than ``k_max + 1`` distinct non-empty rows, or non-finite values.
    """
    from sklearn.neighbors import NearestNeighbors

    if k_min < 2 or k_max < k_min:
        raise ConfigError(f"--k: expected 2 <= KMIN <= KMAX, found {k_min}:{k_max}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"intrinsic-dim: expected points of shape (N, D), found {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("intrinsic-dim: expected finite values, found NaN or inf")
    pts, n_zero, n_dup = _clean(x, zero_mask)
    if len(pts) < k_max + 1:
        raise DataError(f"intrinsic-dim: expected at least {k_max + 1} distinct non-empty "
                        f"showers for k <= {k_max}, found {len(pts)}")
    nn = NearestNeighbors(n_neighbors=k_max + 1, algorithm="brute", n_jobs=n_jobs).fit(pts)
    dist, _ = nn.kneighbors(pts)
    dist = dist[:, 1:]  # drop the point itself (distinct rows: the self-match is at distance 0)
    # guard against round-off ties of distinct but nearly identical points
    tiny = np.finfo(np.float64).tiny
    logd = np.log(np.maximum(dist, tiny))
    csum = np.cumsum(logd, axis=1)  # csum[:, j-1] = sum_{i<=j} log T_i
    per_k: dict[int, float] = {}
    inv = np.zeros(len(pts))
    for k in range(k_min, k_max + 1):
        # 1/m_k(x_i) = 1/(k-1) sum_{j<k} log(T_k / T_j)
        inv = ((k - 1) * logd[:, k - 1] - csum[:, k - 2]) / (k - 1)
        per_k[k] = float(1.0 / np.mean(inv))
    with np.errstate(divide="ignore"):
        pointwise = 1.0 / inv
    return DimensionEstimate(dimension=float(np.mean(list(per_k.values()))), per_k=per_k,
                             n_used=len(pts), n_zero=n_zero, n_duplicate=n_dup,
                             pointwise=pointwise)


def estimate_showers(showers: np.ndarray, e_inc: np.ndarray, space: str = "raw",
                     k_min: int = 5, k_max: int = 20, n_jobs: int = 1) -> DimensionEstimate:
    """Intrinsic dimension of showers (N, V) in MeV in the given ``space`` (see
    :func:`transform_space`); empty showers are detected in MeV, before any transform."""
    zero = ~np.any(np.asarray(showers) > 0, axis=1)
    x = transform_space(showers, e_inc, space)
    return estimate(x, k_min, k_max, n_jobs=n_jobs, zero_mask=zero)


def synthetic_manifold(n: int, dim: int, ambient: int = 368, seed: int = 0) -> np.ndarray:
    """Points on a smooth curved ``dim``-dimensional manifold embedded in ``ambient`` dims.

    Latent z ~ N(0, I_dim) is lifted by ``[z, 0.5 sin(z W)]`` (W random) and rotated into
    ``ambient`` dimensions by a random orthonormal map; used to test :func:`estimate`.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, dim))
    w = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    lifted = np.concatenate([z, 0.5 * np.sin(z @ w)], axis=1)
    q, _ = np.linalg.qr(rng.standard_normal((ambient, lifted.shape[1])))
    return lifted @ q.T
