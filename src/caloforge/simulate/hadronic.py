"""Pion showers: exponential start, minimum-ionising track, two-component Bock profile.

The model follows spec/SIMULATOR.md §2.6 (Bock et al., NIM 186 (1981) 533; the Tile fit quoted in
Kulchitsky & Vinogradov, hep-ex/9903019; per-compartment e/h as in hep-ex/9912028; the CMS GFlash
hadronic model for the lateral halo). Per event:

1. the first inelastic interaction at depth ``x_v ~ Exp(λ_π)`` in λ_I (λ_π = 1.18 λ_I);
2. before it, a minimum-ionising track loses its true dE/dx (stopping where the energy runs out)
   and is seen at the EM scale (true loss / e/mip), with a narrow lateral spread;
3. from ``x_v`` the remaining energy showers: a fraction f_em (beta-distributed around
   ``1 - (E/E0)^(k-1)``) with a gamma profile in X0 (slope b), the rest with a gamma profile in
   λ_I (slope d), both of shape ``a = a0 + a1 ln E`` (log-normal event spread);
4. hadronic energy counts ``1/(e/h)`` of the compartment it is deposited in (non-compensation);
5. laterally an EM core (~R_M) and a halo whose radius grows with depth since the start, both
   with event-by-event off-axis centres (π0 sub-showers, asymmetric halo).
"""

from __future__ import annotations

import numpy as np

from caloforge.simulate.detectors import Detector
from caloforge.simulate.em import Component, gamma_slices


def _beta(mean: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Beta variables of the given means and (at most) ``spread`` standard deviation."""
    sd = np.minimum(spread, 0.9 * np.sqrt(mean * (1 - mean)))
    if spread <= 0:
        return mean
    nu = mean * (1 - mean) / sd**2 - 1.0
    return rng.beta(mean * nu, (1 - mean) * nu)


def pion_components(e_mev: np.ndarray, detector: Detector, rng: np.random.Generator
                    ) -> list[Component]:
    """MIP-track, EM-core and hadronic-halo components of pion showers in ``detector``."""
    g, h = detector.grid, detector.hadron
    n = len(e_mev)
    x_int = rng.exponential(h.lambda_ratio, n)
    # true MIP energy loss accumulated along the axis (MeV) at the sub-slice edges
    loss = np.concatenate([[0.0], np.cumsum(g.mip_per_lambda * np.diff(g.lam_edges))])
    x_stop = np.where(e_mev < loss[-1], np.interp(e_mev, loss, g.lam_edges), np.inf)
    showers = (x_int < x_stop) & (x_int < g.lam_edges[-1])
    x_end = np.minimum(np.minimum(x_int, x_stop), g.lam_edges[-1])
    track_loss = np.interp(x_end, g.lam_edges, loss)
    e_sh = np.where(showers, np.maximum(e_mev - track_loss, 0.0), 0.0)

    # MIP track: overlap of [0, x_end] with each sub-slice, seen at the EM scale
    overlap = np.clip(x_end[:, None] - g.lam_edges[None, :-1], 0.0, np.diff(g.lam_edges)[None, :])
    e_mip = overlap * (g.mip_per_lambda / g.e_over_mip)[None, :]

    e_gev = np.maximum(e_sh, 1.0) / 1000.0
    fem_mean = np.clip(1.0 - (np.maximum(e_sh, 1.0) / h.fem_e0_mev) ** (h.fem_k - 1.0),
                       h.fem_min, h.fem_max)
    f_em = _beta(fem_mean, h.fem_spread, rng)
    shape = (h.bock_a0 + h.bock_a1 * np.log(e_gev)) * np.exp(h.shape_spread
                                                             * rng.standard_normal(n))
    shape = np.maximum(shape, 1.0)
    t_int = np.interp(np.minimum(x_int, g.lam_edges[-1]), g.lam_edges, g.x0_edges)
    em_frac = gamma_slices(g.x0_edges, t_int, shape, np.full(n, h.bock_b))
    had_frac = gamma_slices(g.lam_edges, x_int, shape, np.full(n, h.bock_d))
    e_em = (e_sh * f_em)[:, None] * em_frac
    e_had = (e_sh * (1 - f_em))[:, None] * had_frac / g.e_over_h[None, :]

    mid = 0.5 * (g.lam_edges[1:] + g.lam_edges[:-1])
    since = np.maximum(mid[None, :] - x_int[:, None], 0.0)
    halo = g.lambda_mm[None, :] * (h.halo0 + h.halo1 * since)
    halo = halo * np.exp(h.halo_spread * rng.standard_normal(n))[:, None]
    halo = np.minimum(halo, g.lambda_mm[None, :])
    r_em = np.ones((n, 1)) * (h.em_lateral * g.moliere_mm)[None, :]
    # off-axis centres: π0 sub-showers and the asymmetric halo (u0 + u1·depth, 2-D Gaussians)
    u = rng.standard_normal((2, 2, n, 1, 2))
    depth = np.minimum(since, 3.0)[:, :, None]
    em_shift = h.em_shift * (u[0, 0] + u[0, 1] * depth) * r_em[:, :, None]
    halo_shift = h.halo_shift * (u[1, 0] + u[1, 1] * depth) * halo[:, :, None]
    return [
        Component(e_mip, np.full((n, g.n), h.mip_radius_mm), g.c2_em),
        Component(e_em, r_em, g.c2_em, em_shift),
        Component(e_had, halo, g.c2_had, halo_shift),
    ]
