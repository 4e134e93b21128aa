"""Autoencoders that fit the (layer, alpha, r) geometry of CaloChallenge datasets 2 and 3.

The plain MLP autoencoder of :mod:`caloforge.models.autoencoder` sees a shower as one flat
vector: its first layer has V x hidden weights (40,500 x 64 = 2.6 M on dataset 3) and it must
learn 45 times over what a layer looks like. The networks here share one *layer cell* across
the L layers of a shower and tell the layers apart by a learned layer embedding:

* **encoder**: every layer image (A alpha bins x R radial bins) goes through the same cell
  (``layered``: an MLP on the A R voxels; ``conv``: 3x3 convolutions with *circular* padding
  in alpha and zero padding in r, then an MLP), together with its layer embedding and its
  condition (log E_inc and that layer's log energy), to a small per-layer code; a trunk MLP
  maps the L codes and the full condition to the latent (mean and log-variance for a VAE).
* **decoder**: a trunk MLP maps the latent and the condition to L per-layer codes; the shared
  cell maps each code, embedding and layer condition to the decoder parameters of the
  layer's A R voxels (e.g. occupancy logit, log-normal mu and log sigma of the zero-inflated
  likelihood, see :class:`~caloforge.models.autoencoder.ConditionalAutoencoder`).

The parameter count no longer grows like V x hidden: the cells cost ~A R x cell width, once;
only the trunks see all layers (L x code numbers). All of it is batched tensor algebra (the
layer axis is a tensor axis, no Python loop over layers or showers), so it exports to ONNX.

References:
    J. Cresswell et al., "CaloMan", arXiv:2211.15380 (two-step model this decodes for).
    T. Cohen, M. Welling, "Group equivariant convolutional networks", arXiv:1602.07576
    (circular padding = equivariance under rotations by one alpha bin).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.geometry import Geometry
from caloforge.models.autoencoder import ConditionalAutoencoder, mlp

#: Autoencoder network types (``network.type`` of a CaloMan recipe).
NETWORKS = ("mlp", "layered", "conv")


def layer_grid(geometry: Geometry, where: str = "config[network.type]") -> tuple[int, int, int]:
    """``(L, A, R)`` of a geometry whose layers all have one polar shape, laid out layer after
    layer (datasets 2 and 3); :class:`ConfigError` otherwise (e.g. dataset 1)."""
    shapes = {layer.shape for layer in geometry.layers}
    if len(shapes) != 1 or any(layer.cartesian for layer in geometry.layers):
        raise ConfigError(f"{where}: expected layers of one polar (alpha, r) shape (datasets "
                          f"2 and 3), found {geometry.name!r} with shapes {sorted(shapes)}; "
                          f"use network.type 'mlp'")
    a, r = shapes.pop()
    return geometry.n_layers, a, r


def circular_pad_alpha(x: Tensor, k: int = 1) -> Tensor:
    """Pad (B, C, A, R) images by ``k`` bins periodically in alpha (axis 2) and with zeros in r
    (axis 3): alpha bin -1 is bin A-1, radial bin -1 is outside the calorimeter."""
    x = torch.cat([x[:, :, -k:], x, x[:, :, :k]], dim=2)
    return nn.functional.pad(x, (k, k))


class CircularConvStack(nn.Module):
    """3x3 convolutions (SiLU between) with circular alpha / zero r padding: (B, C_in, A, R)
    -> (B, C_out, A, R). Equivariant under ``torch.roll`` by whole bins along alpha."""

    def __init__(self, c_in: int, channels: int, c_out: int, depth: int = 2) -> None:
        super().__init__()
        sizes = [c_in] + [channels] * (depth - 1) + [c_out]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3) for a, b in zip(sizes, sizes[1:],
                                                                      strict=False))

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(circular_pad_alpha(x))
            if i < len(self.convs) - 1:
                x = nn.functional.silu(x)
        return x


class LayeredAutoencoder(ConditionalAutoencoder):
    """Conditional AE / VAE with one layer cell shared over the L layers (module docstring).

    Args:
        grid: ``(L, A, R)``: layers, alpha bins, radial bins (V = L A R, voxels ordered
            layer, alpha, r with r fastest).
        n_cond: Condition features: 1 (log E_inc) or 1 + L (plus log layer energies; then
            each layer's cell also sees its own layer energy).
        latent: Latent dimension d.
        hidden: Hidden sizes of the two trunk MLPs (codes <-> latent).
        kind: ``ae`` or ``vae``.
        noise: Decoder likelihood (see :data:`~caloforge.models.autoencoder.NOISE_MODELS`).
        beta: KL weight (VAE).
        cell: ``layered`` (MLP cell) or ``conv`` (circular convolutions, then MLP).
        cell_hidden: Hidden sizes of the cell MLPs.
        code: Numbers per layer between cell and trunk.
        embed: Size of the learned layer embedding.
        channels: Convolution channels (``conv``).
    """

    def __init__(self, grid: tuple[int, int, int], n_cond: int, latent: int,
                 hidden: Sequence[int] = (256,), kind: str = "ae", noise: str = "zero-inflated",
                 beta: float = 1.0, cell: str = "layered", cell_hidden: Sequence[int] = (64,),
                 code: int = 8, embed: int = 8, channels: int = 8) -> None:
        nn.Module.__init__(self)
        n_l, n_a, n_r = grid
        self.grid, self.cell = (n_l, n_a, n_r), cell
        self.n_in, self.n_cond, self.latent = n_l * n_a * n_r, n_cond, latent
        self.kind, self.noise, self.beta = kind, noise, float(beta)
        self.code, self.channels = int(code), int(channels)
        self.per_layer_cond = n_cond == 1 + n_l
        k = 2 if self.per_layer_cond else n_cond
        pix = n_a * n_r
        self.layer_embedding = nn.Parameter(0.5 * torch.randn(n_l, int(embed),
                                            generator=torch.Generator().manual_seed(0)))
        n_enc = 2 * latent if kind == "vae" else latent
        if cell == "conv":
            self.enc_conv = CircularConvStack(1, self.channels, self.channels)
            self.dec_conv = CircularConvStack(self.channels, self.channels, self.n_par)
            enc_in, dec_out = self.channels * pix, self.channels * pix
        elif cell == "layered":
            enc_in, dec_out = pix, self.n_par * pix
        else:
            raise ConfigError(f"config[network.type]: expected 'layered' or 'conv' for the "
                              f"geometric autoencoder, found {cell!r}")
        self.enc_cell = mlp(enc_in + int(embed) + k, list(cell_hidden), self.code)
        self.enc_trunk = mlp(n_l * self.code + n_cond, list(hidden), n_enc)
        self.dec_trunk = mlp(latent + n_cond, list(hidden)[::-1], n_l * self.code)
        self.dec_cell = mlp(self.code + int(embed) + k, list(cell_hidden)[::-1], dec_out)
        if noise == "none":
            self.log_sigma = nn.Parameter(torch.zeros(()))

    def _layer_inputs(self, c: Tensor) -> Tensor:
        """(N, L, embed + k): the layer embedding and each layer's condition features."""
        n, n_l = c.shape[0], self.grid[0]
        emb = self.layer_embedding.to(c.dtype).unsqueeze(0).expand(n, -1, -1)
        if self.per_layer_cond:
            cl = torch.stack([c[:, :1].expand(-1, n_l), c[:, 1:]], dim=2)
        else:
            cl = c.unsqueeze(1).expand(-1, n_l, -1)
        return torch.cat([emb, cl], dim=2)

    def encode_layers(self, x: Tensor, c: Tensor) -> Tensor:
        """Per-layer codes (N, L, code): layer l's code depends on layer l's voxels, its
        embedding and its condition only (one cell, shared weights)."""
        n_l, n_a, n_r = self.grid
        n = x.shape[0]
        if self.cell == "conv":
            img = self.enc_conv(x.reshape(n * n_l, 1, n_a, n_r))
            feats = nn.functional.silu(img).reshape(n, n_l, self.channels * n_a * n_r)
        else:
            feats = x.reshape(n, n_l, n_a * n_r)
        return self.enc_cell(torch.cat([feats, self._layer_inputs(c)], dim=2))

    def encode_raw(self, x: Tensor, c: Tensor) -> Tensor:
        codes = self.encode_layers(x, c)
        return self.enc_trunk(torch.cat([codes.reshape(x.shape[0], -1), c], dim=1))

    def decode_params(self, z: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        """Decoder parameters, each (N, V) with voxels in file order.

        The ``layered`` cell's last linear map is applied block by block (its weight rows
        for one parameter at a time), so each parameter comes out contiguous with no
        (N, L, n_par, A R) -> (n_par, N, V) transpose copy (a measurable share of the
        sampling time on dataset 3)."""
        n_l, n_a, n_r = self.grid
        n, pix = z.shape[0], n_a * n_r
        codes = self.dec_trunk(torch.cat([z, c], dim=1)).reshape(n, n_l, self.code)
        h = torch.cat([codes, self._layer_inputs(c)], dim=2)
        if self.cell == "conv":
            img = nn.functional.silu(self.dec_cell(h)).reshape(n * n_l, self.channels, n_a,
                                                               n_r)
            out = self.dec_conv(img).reshape(n, n_l, self.n_par, pix)
            parts = [out[:, :, k].reshape(n, self.n_in) for k in range(self.n_par)]
        else:
            for layer in list(self.dec_cell)[:-1]:
                h = layer(h)
            last = self.dec_cell[-1]
            parts = [nn.functional.linear(h, last.weight[k * pix:(k + 1) * pix],
                                          last.bias[k * pix:(k + 1) * pix]).reshape(n, self.n_in)
                     for k in range(self.n_par)]
        return self.finish_params(parts)

    def fallback(self, p: Tensor, mu: Tensor) -> Tensor:
        """The occupancy probabilities (no extra exp over V voxels; only their pattern
        matters, since the layer is renormalised to its sampled energy)."""
        return p
