"""Convolutional RQS coupling flow on a cylindrical (alpha, r) layer image (ConvL2LFlow).

One layer of a CaloChallenge calorimeter is an image of ``n_alpha`` angular slices times
``n_r`` radial bins. :class:`ConvCouplingFlow` models such an image (flattened to
``(N, n_alpha * n_r)``, C order) given *condition images* (e.g. the previous layer(s), same
grid) and a condition vector (energies, a layer embedding):

* **squeeze** by ``s`` along alpha: ``(1, A, R) -> (s, A/s, R)`` (alpha only: ``n_r`` is odd in
  dataset 2; pairs of neighbouring slices become channels, so the grid stays cyclic);
* ``blocks`` x [:class:`ActNorm2d` -> :class:`InvConv1x1` -> :class:`ConvRQSCoupling`]: the
  coupling transforms half of the channels pixel by pixel with monotone rational-quadratic
  splines whose parameters a U-Net-like conditioner (:class:`ConvConditioner`) computes from
  the other half, the condition images and the broadcast condition vector; consecutive
  blocks swap the halves;
* every convolution pads **circularly in alpha** (the angle wraps around) and with zeros in r.
  The conditioner's U-Net goes down and up in r only (stride 2) and reads a global alpha mean
  at its bottom, so it sees the whole ring while staying exactly equivariant under any alpha
  roll of its inputs (tested); the condition vector enters as a per-channel bias of its
  first convolution.

Both directions are one conditioner pass per block (no per-pixel loop), so a layer is sampled
in one pass.

References:
    L. Dinh et al., "Density estimation using Real NVP", arXiv:1605.08803 (squeeze, coupling).
    D. P. Kingma, P. Dhariwal, "Glow", arXiv:1807.03039 (ActNorm, invertible 1x1 convolution).
    C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032.
    S. Buss et al., "ConvL2LFlows: Generating Accurate Showers in Highly Granular
    Calorimeters Using Convolutional Normalizing Flows", arXiv:2405.20407.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from caloforge.flows.actnorm import ActNorm
from caloforge.flows.base import ConditionalFlow
from caloforge.flows.spline import RQSTransform

__all__ = ["ActNorm2d", "ConvConditioner", "ConvCouplingFlow", "ConvRQSCoupling",
           "CylinderConv", "InvConv1x1", "squeeze_alpha", "unsqueeze_alpha"]


def squeeze_alpha(x: Tensor, s: int) -> Tensor:
    """``(N, C, A, R) -> (N, C*s, A/s, R)``: slices ``s*j .. s*j+s-1`` become channels."""
    n, c, a, r = x.shape
    return x.reshape(n, c, a // s, s, r).transpose(2, 3).reshape(n, c * s, a // s, r)


def unsqueeze_alpha(x: Tensor, s: int) -> Tensor:
    """Inverse of :func:`squeeze_alpha`."""
    n, cs, a, r = x.shape
    return x.reshape(n, cs // s, s, a, r).transpose(2, 3).reshape(n, cs // s, a * s, r)


class CylinderConv(nn.Conv2d):
    """A 2-d convolution over (alpha, r) with circular padding in alpha and zeros in r
    ("same" size for stride 1; ``ceil(R / 2)`` radial bins for radial stride 2)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, r_stride: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=(1, r_stride), padding=(0, kernel // 2))
        self.pad = kernel // 2  # zeros in r: the convolution's own padding

    def forward(self, x: Tensor) -> Tensor:
        p = self.pad
        if p:
            x = torch.cat([x[:, :, -p:], x, x[:, :, :p]], 2)  # circular in alpha
        return super().forward(x)


class ConvConditioner(nn.Module):
    """U-Net-like conditioner: a convolution at full resolution (the condition vector enters
    as a per-channel bias, which is a broadcast input channel set at a fraction of the
    cost), a second one, a radial down-sampling (stride 2) with a global alpha-mean branch,
    nearest up-sampling back added to the full-resolution skip, and a zero-initialised output
    convolution (the coupling starts as the identity)."""

    def __init__(self, cin: int, cout: int, width: int = 32, cond_features: int = 0) -> None:
        super().__init__()
        w = width
        self.first = CylinderConv(cin, w)
        self.film = nn.Linear(cond_features, w) if cond_features else None
        self.second = nn.Sequential(nn.SiLU(), CylinderConv(w, w), nn.SiLU())
        self.down = nn.Sequential(CylinderConv(w, w, r_stride=2), nn.SiLU(),
                                  CylinderConv(w, w), nn.SiLU())
        self.ring = nn.Conv2d(w, w, 1)
        self.up = nn.Sequential(CylinderConv(w, w), nn.SiLU())
        self.out = CylinderConv(w, cout)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        y = self.first(x)
        if self.film is not None and h is not None:
            y = y + self.film(h)[:, :, None, None]
        skip = self.second(y)
        d = self.down(skip)
        d = d + self.ring(d.mean(2, keepdim=True))  # the whole ring (alpha-roll invariant)
        u = F.interpolate(d, size=skip.shape[2:], mode="nearest")
        return self.out(self.up(u + skip))


class ActNorm2d(nn.Module):
    """Per-channel :class:`~caloforge.flows.actnorm.ActNorm` of an image (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ActNorm(channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = x.shape
        z, _ = self.norm(x.permute(0, 2, 3, 1).reshape(-1, c))
        ladj = (-self.norm.log_scale.sum() * (h * w)).expand(n)
        return z.reshape(n, h, w, c).permute(0, 3, 1, 2), ladj

    def inverse(self, z: Tensor) -> Tensor:
        n, c, h, w = z.shape
        x = self.norm.inverse(z.permute(0, 2, 3, 1).reshape(-1, c))
        return x.reshape(n, h, w, c).permute(0, 3, 1, 2)


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution (Glow): a learned C x C channel mixing, initialised as a
    random rotation; ``log|det| = H W log|det W|``."""

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q = torch.linalg.qr(torch.randn(channels, channels, generator=gen))[0]
        self.weight = nn.Parameter(q)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x.shape[2:]
        ladj = torch.linalg.slogdet(self.weight)[1] * (h * w)
        return torch.einsum("ij,njhw->nihw", self.weight, x), ladj.expand(len(x))

    def inverse(self, z: Tensor) -> Tensor:
        return torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.weight), z)


class ConvRQSCoupling(nn.Module):
    """Pixel-wise RQS coupling: channels ``b`` are transformed given channels ``a`` (the
    first ``channels // 2``, or the last ones when ``flip``), the condition images and the
    condition vector (broadcast over the grid)."""

    def __init__(self, channels: int, cond_channels: int, cond_features: int, bins: int = 8,
                 width: int = 32, bound: float = 5.0, flip: bool = False,
                 slope: float = 1e-3) -> None:
        super().__init__()
        self.n_a = channels // 2 if not flip else channels - channels // 2
        self.n_b = channels - self.n_a
        self.flip, self.bins, self.bound, self.slope = flip, bins, bound, slope
        self.net = ConvConditioner(self.n_a + cond_channels, self.n_b * (3 * bins - 1), width,
                                   cond_features)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.flip:
            return x[:, self.n_b:], x[:, :self.n_b]
        return x[:, :self.n_a], x[:, self.n_a:]

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([b, a] if self.flip else [a, b], 1)

    def _spline(self, a: Tensor, cond: Tensor | None, h: Tensor | None) -> RQSTransform:
        n, _, ha, wr = a.shape
        inp = a if cond is None else torch.cat([a, cond], 1)
        p = self.net(inp, h).reshape(n, self.n_b, 3 * self.bins - 1, ha, wr)
        p = p.permute(0, 1, 3, 4, 2)
        k = self.bins
        return RQSTransform(p[..., :k], p[..., k:2 * k], p[..., 2 * k:], bound=self.bound,
                            slope=self.slope)

    def forward(self, x: Tensor, cond: Tensor | None, h: Tensor | None
                ) -> tuple[Tensor, Tensor]:
        a, b = self._split(x)
        y, ladj = self._spline(a, cond, h).call_and_ladj(b)
        return self._join(a, y), ladj.flatten(1).sum(1)

    def inverse(self, y: Tensor, cond: Tensor | None, h: Tensor | None) -> Tensor:
        a, b = self._split(y)
        return self._join(a, self._spline(a, cond, h).inverse(b))


class ConvCouplingFlow(ConditionalFlow):
    """Conditional flow of one (A, R) layer image (see the module docstring).

    ``forward(x, c)`` / ``inverse(z, c)`` take ``x`` (N, A*R) and the context
    ``c = (cond_images (N, cond_channels, A, R) or None, cond_vector (N, cond_features) or
    None)``.

    Args:
        shape: ``(A, R)``; ``A`` must be divisible by ``squeeze``.
        cond_channels: Number of condition images.
        cond_features: Width of the condition vector.
        blocks: Number of [ActNorm, 1x1 conv, coupling] blocks.
        squeeze: Alpha squeeze factor (>= 2 so that there are channels to couple).
        bins: Spline bins; ``bound``: spline domain ``[-bound, bound]``, identity outside.
        width: Conditioner width (channels at full resolution; twice that at the bottom).
        seed: Seed of the 1x1 convolutions' initial rotations.
    """

    def __init__(self, shape: tuple[int, int], cond_channels: int = 0, cond_features: int = 0,
                 blocks: int = 8, squeeze: int = 2, bins: int = 8, width: int = 32,
                 bound: float = 5.0, seed: int = 0) -> None:
        a, r = shape
        super().__init__(a * r, 0)
        if squeeze < 2 or a % squeeze:
            raise ValueError(f"squeeze: expected a factor >= 2 of n_alpha={a}, found {squeeze}")
        self.shape, self.s = (a, r), squeeze
        ch = squeeze
        self.norms = nn.ModuleList(ActNorm2d(ch) for _ in range(blocks))
        self.mixes = nn.ModuleList(InvConv1x1(ch, seed + k) for k in range(blocks))
        self.couplings = nn.ModuleList(
            ConvRQSCoupling(ch, cond_channels * squeeze, cond_features, bins, width, bound,
                            flip=bool(k % 2)) for k in range(blocks))
        #: Training memory: when True, :meth:`forward` under autograd keeps only each
        #: coupling's input and recomputes its conditioner and spline in the backward pass
        #: (gradient checkpointing): the U-Net activations of one block instead of all.
        self.checkpoint_blocks = False

    def _prep(self, c: tuple[Tensor | None, Tensor | None] | None
              ) -> tuple[Tensor | None, Tensor | None]:
        cond, h = c if c is not None else (None, None)
        if cond is not None:
            cond = squeeze_alpha(cond, self.s)
        return cond, h

    def _image(self, x: Tensor) -> Tensor:
        return squeeze_alpha(x.reshape(len(x), 1, *self.shape), self.s)

    def forward(self, x: Tensor, c: tuple[Tensor | None, Tensor | None] | None = None
                ) -> tuple[Tensor, Tensor]:
        cond, h = self._prep(c)
        y = self._image(x)
        ladj = x.new_zeros(len(x))
        recompute = self.checkpoint_blocks and torch.is_grad_enabled()
        for norm, mix, coupling in zip(self.norms, self.mixes, self.couplings, strict=True):
            y, l0 = norm(y)
            y, l1 = mix(y)
            if recompute:
                y, l2 = checkpoint(coupling, y, cond, h, use_reentrant=False)
            else:
                y, l2 = coupling(y, cond, h)
            ladj = ladj + l0 + l1 + l2
        return unsqueeze_alpha(y, self.s).reshape(len(x), -1), ladj

    def inverse(self, z: Tensor, c: tuple[Tensor | None, Tensor | None] | None = None
                ) -> Tensor:
        cond, h = self._prep(c)
        y = self._image(z)
        for norm, mix, coupling in zip(reversed(self.norms), reversed(self.mixes),
                                       reversed(self.couplings), strict=True):
            y = norm.inverse(mix.inverse(coupling.inverse(y, cond, h)))
        return unsqueeze_alpha(y, self.s).reshape(len(z), -1)
