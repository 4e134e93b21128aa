"""Invertible preprocessing of showers for the flow models (torch, runs on any device).

Stateless maps are plain functions of tensors; fitted maps (:class:`Standardizer`) are small
``nn.Module``s whose statistics are buffers, so they are saved in the model's ``state_dict`` and
move to the GPU with the model. Every forward map has an inverse; round trips are exact up to
floating point except where noise is added (:func:`dequantize`, undone by :func:`threshold`
only up to the noise level) or where a map clamps.

Units: voxel and layer energies in MeV, incident energies in MeV.

References:
    C. Krause, D. Shih, "CaloFlow", arXiv:2106.05285 (u-variables, logit, contexts).
    C. Krause, I. Pang, D. Shih, "CaloFlow for CaloChallenge dataset 1", arXiv:2210.14245.
    F. Ernst et al., "Normalizing flows for high-dimensional detector simulations" (CaloINN),
    arXiv:2312.09290 (per-layer normalisation + appended u-variables + log(x+alpha)).
    V. Mikuni, B. Nachman, "CaloScore", arXiv:2206.11898 (x / (f E_inc)).

Example:
    >>> import torch
    >>> e_layer = torch.tensor([[10.0, 50.0, 0.0, 5.0]])
    >>> e_inc = torch.tensor([100.0])
    >>> u = u_from_layer_energies(e_layer, e_inc)
    >>> torch.allclose(layer_energies_from_u(u, e_inc), e_layer)
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from caloforge.geometry import Geometry

#: CaloFlow's E_dep/E_inc normalisation of u_0 (DS1), so that u_0 < 1 for (almost) all showers.
U0_SCALE = 2.42
#: Default logit regulariser alpha (CaloFlow, CaloScore).
LOGIT_ALPHA = 1e-6


# --------------------------------------------------------------------------------------------
# u-variables (CaloFlow flow I / CaloINN extra dimensions)


def u_from_layer_energies(e_layer: Tensor, e_inc: Tensor, scale: float = U0_SCALE,
                          clamp: bool = True) -> Tensor:
    """CaloFlow u-variables of the layer energies.

    ``u_0 = sum_i E_i / (scale E_inc)`` and ``u_{n+1} = E_n / sum_{k>=n} E_k`` for
    ``n = 0..L-2`` (a layer with no energy left below it gets ``u = 0``).

    Args:
        e_layer: Layer energies (N, L) in MeV.
        e_inc: Incident energies (N,) in MeV.
        scale: Normalisation of u_0 (2.42 in CaloFlow DS1; 1 in CaloINN).
        clamp: Clamp to [0, 1] (CaloFlow); without it u_0 may exceed 1.

    Returns:
        u (N, L), dimensionless.
    """
    e_layer = torch.as_tensor(e_layer)
    e_inc = torch.as_tensor(e_inc, dtype=e_layer.dtype, device=e_layer.device).reshape(-1)
    tail = torch.flip(torch.cumsum(torch.flip(e_layer, [1]), 1), [1])  # S_n = sum_{k>=n} E_k
    u0 = tail[:, :1] / (scale * e_inc[:, None])
    s = tail[:, :-1]
    rest = torch.where(s > 0, e_layer[:, :-1] / torch.where(s > 0, s, torch.ones_like(s)),
                       torch.zeros_like(s))
    u = torch.cat([u0, rest], 1)
    if clamp:
        u = u.clamp(0.0, 1.0)
    else:
        u = torch.cat([u[:, :1].clamp_min(0.0), u[:, 1:].clamp(0.0, 1.0)], 1)
    return u


def layer_energies_from_u(u: Tensor, e_inc: Tensor, scale: float = U0_SCALE) -> Tensor:
    """Inverse of :func:`u_from_layer_energies`: layer energies (N, L) in MeV.

    ``u_{1..L-1}`` are clamped to [0, 1] and ``u_0`` to >= 0, so any flow output gives
    non-negative energies. The cumulative product over layers is a loop over the (at most
    45) layer columns rather than ``torch.cumprod``, which has no ONNX export.
    """
    u = torch.as_tensor(u)
    e_inc = torch.as_tensor(e_inc, dtype=u.dtype, device=u.device).reshape(-1)
    e_tot = u[:, 0].clamp_min(0.0) * scale * e_inc
    frac = u[:, 1:].clamp(0.0, 1.0)  # fraction of the remaining energy taken by layer n
    ones = torch.ones_like(frac[:, :1])
    cols = [ones]  # remaining[:, n] = prod_{k<n} (1 - frac_k)
    for n in range(frac.shape[1]):
        cols.append(cols[-1] * (1.0 - frac[:, n:n + 1]))
    remaining = torch.cat(cols, 1)  # (N, L)
    share = torch.cat([frac, ones], 1) * remaining
    return share * e_tot[:, None]


# --------------------------------------------------------------------------------------------
# logit


def logit(x: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """``log(y / (1 - y))`` with ``y = alpha + (1 - 2 alpha) x`` (finite for x in [0, 1])."""
    y = alpha + (1 - 2 * alpha) * x
    return torch.log(y / (1 - y))  # one log: half the time of log(y) - log1p(-y), same to 1 ulp


def inverse_logit(z: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """Inverse of :func:`logit`: ``(sigmoid(z) - alpha) / (1 - 2 alpha)``."""
    return (torch.sigmoid(z) - alpha) / (1 - 2 * alpha)


# --------------------------------------------------------------------------------------------
# per-layer normalisation


def layer_matrix(geometry: Geometry, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """One-hot voxel-to-layer matrix (V, L): ``showers @ M`` are the layer energies."""
    m = torch.zeros(geometry.n_voxels, geometry.n_layers, dtype=dtype, device=device)
    for i in range(geometry.n_layers):
        m[geometry.layer_slice(i), i] = 1.0
    return m


def normalise_layers(showers: Tensor, geometry: Geometry, eps: float = 1e-16
                     ) -> tuple[Tensor, Tensor]:
    """Split showers into per-layer shapes that sum to 1 and layer energies.

    Args:
        showers: Voxel energies (N, V) in MeV.
        geometry: The geometry of the voxels.
        eps: Added to each layer sum (an empty layer gives an all-zero shape).

    Returns:
        ``(shapes (N, V), e_layer (N, L) in MeV)``.
    """
    showers = torch.as_tensor(showers)
    m = layer_matrix(geometry, showers.dtype, showers.device)
    e_layer = showers @ m
    return showers / (e_layer @ m.T + eps), e_layer


def denormalise_layers(shapes: Tensor, e_layer: Tensor, geometry: Geometry,
                       eps: float = 1e-16) -> Tensor:
    """Inverse of :func:`normalise_layers`: voxel energies (N, V) in MeV.

    Negative shape values are set to 0 and each layer is renormalised to sum to 1 before it is
    scaled to its energy ``e_layer`` (N, L), so generated layer sums match ``e_layer`` exactly.
    """
    shapes = torch.as_tensor(shapes).clamp_min(0.0)
    e_layer = torch.as_tensor(e_layer, dtype=shapes.dtype, device=shapes.device)
    m = layer_matrix(geometry, shapes.dtype, shapes.device)
    sums = shapes @ m
    return shapes / (sums @ m.T + eps) * (e_layer.clamp_min(0.0) @ m.T)


# --------------------------------------------------------------------------------------------
# conditions


def energy_condition(e_inc: Tensor) -> Tensor:
    """CaloFlow condition ``log10(E_inc / 33.3 GeV)`` for ``e_inc`` in MeV, shape (N,)."""
    return torch.log10(torch.as_tensor(e_inc) / 33300.0)


def layer_energy_condition(e_layer: Tensor) -> Tensor:
    """CaloFlow flow-II context ``log10(E_i / 100 GeV + 1e-8) - 1`` for ``e_layer`` in MeV."""
    return torch.log10(torch.as_tensor(e_layer) / 1e5 + 1e-8) - 1.0


def log2_gev_condition(e_inc: Tensor) -> Tensor:
    """CaloINN condition ``log2(E_inc / GeV)`` for ``e_inc`` in MeV, shape (N,)."""
    return torch.log2(torch.as_tensor(e_inc) / 1000.0)


# --------------------------------------------------------------------------------------------
# CaloScore-style scaling


def caloscore_forward(showers: Tensor, e_inc: Tensor, f: float = 3.1) -> Tensor:
    """``showers / (f E_inc)`` (N, V); ``f`` bounds the ratio below 1 (CaloScore used 2)."""
    e_inc = torch.as_tensor(e_inc, dtype=showers.dtype, device=showers.device).reshape(-1, 1)
    return showers / (f * e_inc)


def caloscore_inverse(x: Tensor, e_inc: Tensor, f: float = 3.1) -> Tensor:
    """Inverse of :func:`caloscore_forward`: voxel energies in MeV."""
    e_inc = torch.as_tensor(e_inc, dtype=x.dtype, device=x.device).reshape(-1, 1)
    return x * (f * e_inc)


# --------------------------------------------------------------------------------------------
# dequantisation


def dequantize(showers: Tensor, noise_mev: float, generator: torch.Generator | None = None
               ) -> Tensor:
    """Add uniform noise U[0, ``noise_mev``] MeV to every voxel (CaloFlow ``--with_noise``).

    Zero voxels become small positive ones, which removes the point mass at 0 that a flow
    cannot model; :func:`threshold` at ``noise_mev`` removes the noise from empty voxels again.
    """
    noise = torch.rand(showers.shape, generator=generator, dtype=showers.dtype,
                       device="cpu" if generator is None else generator.device)
    return showers + noise.to(showers.device) * noise_mev


def threshold(showers: Tensor, cut_mev: float) -> Tensor:
    """Set voxels below ``cut_mev`` MeV (and negative ones) to 0."""
    return torch.where(showers < cut_mev, torch.zeros_like(showers), showers)


# --------------------------------------------------------------------------------------------
# fitted transforms


class Standardizer(nn.Module):
    """Per-feature ``(x - mean) / std`` with the statistics as buffers.

    Example:
        >>> s = Standardizer(3)
        >>> x = torch.randn(100, 3) * 5 + 2
        >>> _ = s.fit(x)
        >>> torch.allclose(s.inverse(s(x)), x, atol=1e-5)
        True
    """

    mean: Tensor
    std: Tensor

    def __init__(self, features: int, min_std: float = 1e-6) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    @torch.no_grad()
    def fit(self, x: Tensor) -> Standardizer:
        """Store the mean and the standard deviation (floored at ``min_std``) of x (N, D)."""
        x = torch.as_tensor(x, dtype=self.mean.dtype, device=self.mean.device)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).nan_to_num(1.0).clamp_min(self.min_std))
        return self

    @torch.no_grad()
    def fit_moments(self, mean: Tensor, std: Tensor) -> Standardizer:
        """Store statistics accumulated elsewhere (e.g. :class:`caloforge.stream.Moments`
        over a streamed file), the std floored at ``min_std`` as in :meth:`fit`."""
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        std = torch.as_tensor(std, dtype=self.std.dtype)
        self.std.copy_(std.nan_to_num(1.0).clamp_min(self.min_std))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean

    def log_abs_det(self) -> Tensor:
        """``log |d forward / dx|`` summed over features (a constant)."""
        return -torch.log(self.std).sum()


def log_alpha(x: Tensor, alpha: float) -> Tensor:
    """``log(x + alpha)`` (CaloINN's fixed input node); ``x >= 0``."""
    return torch.log(x + alpha)


def inverse_log_alpha(z: Tensor, alpha: float) -> Tensor:
    """Inverse of :func:`log_alpha`: ``exp(z) - alpha``."""
    return torch.exp(z) - alpha


__all__ = [
    "LOGIT_ALPHA", "U0_SCALE", "Standardizer", "caloscore_forward", "caloscore_inverse",
    "denormalise_layers", "dequantize", "energy_condition", "inverse_log_alpha",
    "inverse_logit", "layer_energies_from_u", "layer_energy_condition", "layer_matrix",
    "log2_gev_condition", "log_alpha", "logit", "normalise_layers", "threshold",
    "u_from_layer_energies",
]
