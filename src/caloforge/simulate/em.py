"""Electromagnetic showers: Grindhammer-Peters longitudinal and radial parameterisation.

Implements, vectorised over events, the sampling-calorimeter version of

    G. Grindhammer, S. Peters, "The parameterized simulation of electromagnetic showers in
    homogeneous and sampling calorimeters", hep-ex/0001020,

as summarised in ``spec/SIMULATOR.md`` §2: correlated log-normal fluctuations of the depth of
the maximum T and the shape α of a gamma profile ``f(t) = (βt)^(α-1) β e^(-βt) / Γ(α)``,
depth-dependent core + tail radial profiles ``f(r) = 2 r R² / (r² + R²)²`` in Molière radii,
Geant4's clamps (σ <= 0.5, T >= 1, α >= 1.1), and an exponential photon conversion depth
(mean 9/7 X0, GFlash). Energies inside logarithms are in GeV, depths in X0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from caloforge.simulate.detectors import Detector
from caloforge.simulate.materials import Medium

#: Geant4 clamps of the individual-shower parameters.
SIGMA_MAX = 0.5
T_MIN = 1.0
ALPHA_MIN = 1.1
#: Lower limit of the profile slope β = (α-1)/T per X0 (ours): the log-normal tails at low
#: energy otherwise produce α -> 1 showers with unphysical mean depths of 20+ X0.
BETA_MIN = 0.25
#: Centre-of-gravity fluctuation: the profile centre moves by u0 + u1·τ with u0, u1 2-D
#: Gaussian vectors of standard deviation LATERAL_JITTER · R_M / sqrt(E/GeV) per component
#: (ours, unverified; mimics the finite number of spots, N_S ~ 100/GeV).
LATERAL_JITTER = 0.15


@dataclass(frozen=True)
class Component:
    """Energy laid down in the detector's depth sub-slices with one radial profile.

    Attributes:
        energy: EM-scale deposited energy per event and sub-slice, MeV, shape (N, S).
        radius: Median radius R of ``F(r) = r² / (r² + R²)`` per event and sub-slice, mm, (N, S).
        c2: Variance coefficient (c² in GeV) of the per-voxel fluctuation, shape (S,) or (N, S).
        shift: Optional displacement (x, y) of the profile centre from the axis, mm, (N, S, 2)
            (shower-to-shower fluctuation of the lateral centre of gravity).
    """

    energy: np.ndarray
    radius: np.ndarray
    c2: np.ndarray
    shift: np.ndarray | None = None


@dataclass(frozen=True)
class ProfileMoments:
    """Means, widths and correlation of (ln T, ln α) for sampling media (hep-ex/0001020)."""

    mean_ln_t: np.ndarray
    sigma_ln_t: np.ndarray
    mean_ln_alpha: np.ndarray
    sigma_ln_alpha: np.ndarray
    rho: np.ndarray


def profile_moments(e_mev: np.ndarray, medium: Medium) -> ProfileMoments:
    """Individual-shower moments of (ln T, ln α) in a sampling medium, with Geant4's floors.

    Args:
        e_mev: Shower energies, MeV.
        medium: The sampling medium (Z_eff, E_c, F_s, e/mip).
    """
    ln_y = np.log(np.maximum(np.asarray(e_mev, float) / medium.critical_energy, 1.0 + 1e-9))
    fs, emip, z = medium.sampling_frequency, medium.e_over_mip, medium.z_eff
    t_hom = np.exp(np.log(np.maximum(ln_y - 0.812, 0.1)))
    a_hom = np.exp(np.log(np.maximum(0.81 + (0.458 + 2.26 / z) * ln_y, 0.1)))
    mean_ln_t = np.log(np.maximum(t_hom - 0.55 / fs - 0.69 * (1 - emip), 0.1))
    mean_ln_a = np.log(np.maximum(a_hom - 0.476 / fs, 0.1))

    def _sigma(a: float, b: float) -> np.ndarray:
        den = a + b * ln_y
        return np.where(den > 1.0 / SIGMA_MAX, 1.0 / np.maximum(den, 1e-9), SIGMA_MAX)

    return ProfileMoments(mean_ln_t, _sigma(-2.5, 1.25), mean_ln_a, _sigma(-0.82, 0.79),
                          np.clip(0.784 - 0.023 * ln_y, -1.0, 1.0))


def mean_profile(e_mev: np.ndarray, medium: Medium) -> tuple[np.ndarray, np.ndarray]:
    """Average-profile (T_sam, α_sam) of the sampling medium (not the individual-shower means)."""
    ln_y = np.log(np.maximum(np.asarray(e_mev, float) / medium.critical_energy, 1.0 + 1e-9))
    fs, emip, z = medium.sampling_frequency, medium.e_over_mip, medium.z_eff
    t = ln_y - 0.858 - 0.59 / fs - 0.53 * (1 - emip)
    a = 0.21 + (0.492 + 2.38 / z) * ln_y - 0.444 / fs
    return np.maximum(t, T_MIN), np.maximum(a, ALPHA_MIN)


def draw_profiles(e_mev: np.ndarray, medium: Medium, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw correlated individual-shower profiles.

    Returns:
        (T, α, α_mean): depth of the maximum (X0), shape, and exp⟨ln α⟩ (for the radial τ).
    """
    m = profile_moments(e_mev, medium)
    z1, z2 = rng.standard_normal((2, len(m.mean_ln_t)))
    cp, cm = np.sqrt((1 + m.rho) / 2), np.sqrt((1 - m.rho) / 2)
    t = np.exp(m.mean_ln_t + m.sigma_ln_t * (cp * z1 + cm * z2))
    a = np.exp(m.mean_ln_alpha + m.sigma_ln_alpha * (cp * z1 - cm * z2))
    t = np.maximum(t, T_MIN)
    a = np.maximum(a, np.maximum(ALPHA_MIN, 1.0 + BETA_MIN * t))
    return t, a, np.exp(m.mean_ln_alpha)


def gamma_slices(edges: np.ndarray, start: np.ndarray, shape: np.ndarray, rate: np.ndarray
                 ) -> np.ndarray:
    """Fractions of a gamma profile starting at ``start`` inside consecutive depth slices.

    Args:
        edges: Slice boundaries (S+1,), same unit as ``start`` and 1/``rate``.
        start, shape, rate: Per-event profile start, α and β, shape (N,).

    Returns:
        (N, S) fractions ``P(α, β(t2-t0)) - P(α, β(t1-t0))`` (0 before the start).
    """
    x = np.maximum(edges[None, :] - start[:, None], 0.0) * rate[:, None]
    cdf = gammainc(shape[:, None], x)
    return np.diff(cdf, axis=1)


def radial_parameters(e_gev: np.ndarray, tau: np.ndarray, medium: Medium
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core radius, tail radius (Molière radii) and core weight at depth τ (units of T).

    Homogeneous coefficients of hep-ex/0001020 with the sampling corrections
    (spec/SIMULATOR.md §2.3); ``e_gev`` broadcasts against ``tau``.
    """
    z, fs, emip = medium.z_eff, medium.sampling_frequency, medium.e_over_mip
    ln_e = np.log(np.maximum(e_gev, 1e-3))
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z, 0.645, -2.59, 0.3585 + 0.0421 * ln_e
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2, p3 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z, 1.313 - 0.0686 * ln_e
    u = (p2 - tau) / p3
    p = p1 * np.exp(u - np.exp(u))
    e_tau = np.exp(-tau)
    r_core = r_core - 0.0203 * (1 - emip) + 0.0397 * e_tau / fs
    r_tail = r_tail - 0.14 * (1 - emip) - 0.495 * e_tau / fs
    p = p + (1 - emip) * (0.348 - 0.642 * np.exp(-((tau - 1) ** 2)) / fs)
    r_core = np.maximum(r_core, 0.02)
    r_tail = np.maximum(r_tail, 1.5 * r_core)
    return r_core, r_tail, np.clip(p, 0.0, 1.0)


def em_components(e_mev: np.ndarray, particle: str, detector: Detector,
                  rng: np.random.Generator) -> list[Component]:
    """Core and tail components of EM showers (photon, electron, positron) in ``detector``.

    Photons start at an exponential depth (mean ``detector.conversion_x0``) from the front of
    the stack; electrons and positrons at the front. The gamma profile is integrated over the
    detector's sub-slices (in X0), so dead material, leakage and unstored layers lose energy.
    """
    grid = detector.grid
    n = len(e_mev)
    t_max, alpha, alpha_mean = draw_profiles(e_mev, detector.em_medium, rng)
    beta = (alpha - 1.0) / t_max
    if particle == "photon":
        start = rng.exponential(detector.conversion_x0, n)
    else:
        start = np.zeros(n)
    frac = gamma_slices(grid.x0_edges, start, alpha, beta)
    energy = e_mev[:, None] * frac
    # depth in units of the shower maximum, rescaled to the mean shape (GFlash)
    mid = 0.5 * (grid.x0_edges[1:] + grid.x0_edges[:-1])
    t_rel = np.maximum(mid[None, :] - start[:, None], 0.0)
    tau = t_rel * (beta / alpha)[:, None] * (alpha_mean / (alpha_mean - 1.0))[:, None]
    r_core, r_tail, p = radial_parameters((e_mev / 1000.0)[:, None], tau, detector.em_medium)
    rm = grid.moliere_mm[None, :]
    c2 = grid.c2_em
    sigma = LATERAL_JITTER / np.sqrt(np.maximum(e_mev / 1000.0, 0.05))
    u = rng.standard_normal((2, n, 1, 2)) * sigma[None, :, None, None]
    shift = (u[0] + u[1] * np.minimum(tau, 4.0)[:, :, None]) * rm[:, :, None]
    return [Component(energy * p, r_core * rm, c2, shift),
            Component(energy * (1 - p), r_tail * rm, c2, shift)]
