"""Separation power of two histograms (triangular discrimination).

With ``p_i``, ``q_i`` the fractions of each sample in bin ``i`` (counts normalised to the
entries inside the binning, i.e. ``density x bin width`` of a ``density=True`` histogram):

    S = 1/2 * sum_i (p_i - q_i)^2 / (p_i + q_i + 1e-16),   0 <= S <= 1,

0 for identical histograms, 1 for disjoint ones.

Reference: eq. (15) of arXiv:2009.03796; CaloChallenge ``evaluate.py`` (spec/EVALUATION.md §4).
"""

from __future__ import annotations

import numpy as np

from caloforge.errors import DataError

#: Regulator of empty bins, as in the official code.
EPS = 1e-16


def normalise(counts: np.ndarray) -> np.ndarray:
    """Counts divided by their sum (all zeros stay zeros)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def separation_power(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Separation power of two histograms with the same bins (normalises both).

    Args:
        p_counts, q_counts: Bin counts (or densities times bin widths) of equal length.

    Example:
        >>> separation_power([1, 0], [0, 1])
        1.0
        >>> separation_power([2, 2], [1, 1])
        0.0
    """
    p, q = np.asarray(p_counts), np.asarray(q_counts)
    if p.shape != q.shape:
        raise DataError(f"separation_power: expected histograms with the same bins, found "
                        f"shapes {p.shape} and {q.shape}")
    p, q = normalise(p), normalise(q)
    return float(0.5 * np.sum((p - q) ** 2 / (p + q + EPS)))
