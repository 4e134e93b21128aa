"""From depth-resolved shower components to voxel energies.

Each component lays its energy down with the radial profile ``f(r) = 2 r R² / (r² + R²)²``
(cumulative ``F(r) = r² / (r² + R²)``, spec/SIMULATOR.md §2.3), which is integrated analytically:

* polar (CaloChallenge) layers: ``ΔF`` between the r edges, shared equally by the α slices
  (the profile is azimuthally symmetric);
* cartesian (CaloGAN) layers: the integral over each rectangular cell, from the closed form
  over a quadrant ``Q(X, Y) = [X/a atan(Y/a) + Y/b atan(X/b)] / (2π)`` with
  ``a = √(X² + R²)``, ``b = √(Y² + R²)``.

Energy outside the outermost bins is lost (lateral leakage). Every voxel's mean μ then receives
a Gamma fluctuation of the same mean and variance ``Σ_k c_k² μ_k`` (c in √GeV, μ_k the
component means): the per-voxel form of the sampling fluctuation of spec/SIMULATOR.md §2.4,
which also supplies the shower-to-shower lateral fluctuations. A per-event constant term and the
readout threshold come last.
"""

from __future__ import annotations

import numpy as np

from caloforge.geometry import Geometry, Layer
from caloforge.simulate.detectors import Detector
from caloforge.simulate.em import Component

#: MeV per GeV: variance of a deposit μ (MeV) is 1000 c² μ (MeV²) for c in √GeV.
_MEV_PER_GEV = 1000.0


def radial_cdf(r: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """F(r) = r² / (r² + R²), broadcasting ``radius[..., None]`` against edges ``r``."""
    r2 = np.asarray(r, float) ** 2
    return r2 / (r2 + radius[..., None] ** 2)


def polar_fractions(layer: Layer, radius: np.ndarray) -> np.ndarray:
    """Fraction of the profile in each r bin of ``layer``: shape ``radius.shape + (n_r,)``."""
    return np.diff(radial_cdf(np.asarray(layer.r_edges), radius), axis=-1)


def dipole_integral(r: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """I(r) = ∫_0^r 8 R² s² / (s² + R²)³ ds = (θ - sin 4θ / 4) / R with θ = atan(r/R).

    A profile displaced by d changes, to first order, by ``d cos(α - φ_d) · 4r/(r² + R²)``
    relative to its value; ``I`` is the radial integral of that term (per mm of displacement).
    """
    theta = np.arctan(np.asarray(r, float) / radius[..., None])
    return (theta - np.sin(4 * theta) / 4) / radius[..., None]


def _quadrant(x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Signed integral of the 2-D profile over [0, x] x [0, y].

    ``x`` (..., nx) and ``y`` (..., ny) broadcast against ``radius`` (...); result (..., ny, nx).
    """
    r2 = radius[..., None, None] ** 2
    x, y = x[..., None, :], y[..., :, None]
    a = np.sqrt(x**2 + r2)
    b = np.sqrt(y**2 + r2)
    return (x / a * np.arctan(y / a) + y / b * np.arctan(x / b)) / (2 * np.pi)


def cartesian_fractions(layer: Layer, radius: np.ndarray, shift: np.ndarray | None = None
                        ) -> np.ndarray:
    """Fraction of the profile in each cell: shape ``radius.shape + (n_phi, n_eta)``.

    ``shift`` (``radius.shape + (2,)``, mm) displaces the profile centre exactly.
    """
    x = (np.arange(layer.n_eta + 1) - layer.n_eta / 2) * layer.cell_eta
    y = (np.arange(layer.n_phi + 1) - layer.n_phi / 2) * layer.cell_phi
    if shift is not None:
        x = x - shift[..., 0:1]
        y = y - shift[..., 1:2]
    else:
        x = np.broadcast_to(x, (*radius.shape, len(x)))
        y = np.broadcast_to(y, (*radius.shape, len(y)))
    q = _quadrant(x, y, radius)
    return q[..., 1:, 1:] - q[..., :-1, 1:] - q[..., 1:, :-1] + q[..., :-1, :-1]


def _alpha_moments(n_alpha: int) -> tuple[np.ndarray, np.ndarray]:
    """∫cos α and ∫sin α over each of the n_alpha slices of [-π, π)."""
    edges = -np.pi + 2 * np.pi * np.arange(n_alpha + 1) / n_alpha
    return np.diff(np.sin(edges)), -np.diff(np.cos(edges))


def _gamma(mean: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma variables of the given means and variances (0 where the mean is 0)."""
    ok = (mean > 0) & (var > 0)
    shape = np.divide(mean * mean, var, out=np.zeros_like(mean), where=ok)
    scale = np.divide(var, mean, out=np.zeros_like(mean), where=ok)
    out = rng.standard_gamma(shape) * scale
    # no variance configured: the mean itself
    return np.where((mean > 0) & (var <= 0), mean, out)


def voxelize(components: list[Component], detector: Detector, geometry: Geometry,
             rng: np.random.Generator, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Voxel energies (N, n_voxels) in stored MeV from shower ``components``.

    Args:
        components: Depth-resolved energies and radii (see :class:`~caloforge.simulate.em.
            Component`), EM-scale deposited MeV.
        detector: Supplies the sub-slice → layer map, gains, constant terms and threshold.
        geometry: The readout binning (polar or cartesian layers).
        rng: Random generator (consumed in a fixed order: layer by layer, then the constant
            term).
        dtype: Output dtype.
    """
    grid = detector.grid
    n = components[0].energy.shape[0]
    out = np.zeros((n, geometry.n_voxels), dtype=dtype)
    z_const = rng.standard_normal(n)
    for pos, layer in enumerate(geometry.layers):
        idx = np.flatnonzero(grid.layer_pos == pos)
        gain = grid.gain[idx]
        shape = layer.shape
        mean = np.zeros((n, *shape)) if layer.cartesian else np.zeros((n, shape[1]))
        var = np.zeros_like(mean)
        dip = np.zeros((n, 2, shape[1]))  # first-order displacement terms (x, y) per r bin
        for comp in components:
            e = comp.energy[:, idx] * gain
            c2 = np.broadcast_to(comp.c2, comp.energy.shape)[:, idx]
            radius = comp.radius[:, idx]
            shift = None if comp.shift is None else comp.shift[:, idx]
            if layer.cartesian:
                frac = cartesian_fractions(layer, radius, shift)
                mean += np.einsum("ns,nsyx->nyx", e, frac)
                var += np.einsum("ns,nsyx->nyx", e * c2 * gain * _MEV_PER_GEV, frac)
            else:
                frac = polar_fractions(layer, radius)
                mean += np.einsum("ns,nsr->nr", e, frac)
                var += np.einsum("ns,nsr->nr", e * c2 * gain * _MEV_PER_GEV, frac)
                if shift is not None and shape[0] > 1:
                    # first order in d/R: keep |d| <= R/2 where the expansion holds
                    size = np.linalg.norm(shift, axis=-1)
                    lim = np.minimum(1.0, 0.5 * radius / np.maximum(size, 1e-12))
                    d_int = np.diff(dipole_integral(np.asarray(layer.r_edges), radius), axis=-1)
                    dip += np.einsum("ns,nsk,nsr->nkr", e * lim, shift, d_int) / (2 * np.pi)
        if not layer.cartesian:
            n_alpha = shape[0]
            mean = np.repeat(mean[:, None, :] / n_alpha, n_alpha, axis=1)
            var = np.repeat(var[:, None, :] / n_alpha, n_alpha, axis=1)
            if n_alpha > 1:
                cos_m, sin_m = _alpha_moments(n_alpha)
                ring = mean.sum(axis=1, keepdims=True)
                mean = np.maximum(mean + dip[:, 0, None, :] * cos_m[None, :, None]
                                  + dip[:, 1, None, :] * sin_m[None, :, None], 0.0)
                # clipping must not create energy: restore each ring's total
                mean *= np.divide(ring, mean.sum(axis=1, keepdims=True),
                                  out=np.zeros_like(ring), where=ring > 0)
        vox = _gamma(mean, var, rng).reshape(n, -1)
        vox *= np.maximum(1.0 + grid.constant[idx[0]] * z_const, 0.0)[:, None]
        vox[vox < max(detector.threshold, np.finfo(np.float32).tiny)] = 0.0
        out[:, geometry.layer_slice(pos)] = vox
    return out
