"""The per-layer shower flows of L2LFlows: ``p_i(I_i | I_{i-k..i-1}, E_1..E_L, E_inc)``.

:class:`LayerFlows` holds either one flow shared by all layers (``shared: true``; the layer
index enters as a one-hot in the condition vector) or one flow per layer (``shared: false``,
as published: 45 separate flows). The flow of a layer is

* ``type: conv`` (ConvL2LFlow): a :class:`~caloforge.flows.conv_coupling.ConvCouplingFlow` on
  the (alpha, r) image, the previous ``context_layers`` layers entering as condition images;
* ``type: maf`` (the L2LFlows of the seed talk): a MADE-RQS
  :class:`~caloforge.flows.autoregressive.MAF` on the flattened layer, the previous layers
  entering (flattened) through the MADE context.

The condition vector ``[2 log10(E_inc/GeV) - 3, c(E_1..E_L), c(E_i), one-hot(i)]`` with
``c(E) = log10(E / 100 GeV + 1e-8) - 1`` goes through a learned embedding
(:class:`~caloforge.flows.embedding.ContextEmbedding`), one per flow (so that separate
per-layer flows can be trained one after the other).

Inputs ``x`` are the preprocessed layers (N, L, V_layer) of :mod:`caloforge.models.l2lflows`
(logit space). Sampling is causal: layer i is one flow inverse (one pass for ``conv``) given
layers ``< i`` already drawn.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloforge.flows.autoregressive import MAF, random_permutations
from caloforge.flows.base import standard_normal_log_prob
from caloforge.flows.conv_coupling import ConvCouplingFlow
from caloforge.flows.embedding import ContextEmbedding

__all__ = ["LayerFlows", "LayerUnit"]


class LayerUnit(nn.Module):
    """The condition embedding and the flow of one layer (or of all, when shared)."""

    def __init__(self, embed: nn.Module, flow: nn.Module) -> None:
        super().__init__()
        self.embed, self.flow = embed, flow


class LayerFlows(nn.Module):
    """All per-layer shower flows of one L2LFlows model.

    Args:
        shape: ``(n_alpha, n_r)`` of every layer.
        n_layers: L.
        cfg: The recipe's ``shower_flow`` section (checked by the model).
    """

    def __init__(self, shape: tuple[int, int], n_layers: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.shape, self.L = (int(shape[0]), int(shape[1])), int(n_layers)
        self.V = self.shape[0] * self.shape[1]
        self.type, self.k, self.shared = cfg["type"], int(cfg["context_layers"]), cfg["shared"]
        n_vec = 2 + self.L + (self.L if self.shared else 0)
        n_units = 1 if self.shared else self.L
        self.units = nn.ModuleList(
            LayerUnit(ContextEmbedding(n_vec, cfg["embedding"], hidden=(64,)),
                      self._build(cfg, cfg["seed"] + 1000 * g)) for g in range(n_units))

    def _build(self, cfg: dict[str, Any], seed: int) -> nn.Module:
        if self.type == "conv":
            return ConvCouplingFlow(self.shape, self.k, cfg["embedding"], cfg["blocks"],
                                    cfg["squeeze"], cfg["bins"], cfg["width"], cfg["bound"],
                                    seed)
        return MAF(self.V, cfg["embedding"] + self.k * self.V, transforms=cfg["blocks"],
                   bins=cfg["bins"], hidden=cfg["hidden"], bound=cfg["bound"],
                   permutations=random_permutations(self.V, cfg["blocks"], seed))

    # -- conditions ---------------------------------------------------------------------------
    def unit(self, i: int) -> LayerUnit:
        """The embedding and flow of layer ``i``."""
        return self.units[0 if self.shared else i]

    def _context(self, prev: Tensor, vec: Tensor, layers: Tensor, embed: nn.Module
                 ) -> tuple[Tensor, Tensor]:
        """Condition images (M, k, A, R) and embedded vector (M, E) for M = N * len(layers)
        rows (shower-major), given the previous layers ``prev`` (N, len(layers), k, V)."""
        n, m = len(vec), len(layers)
        own = vec[:, 1:][:, layers]  # c(E_i) of each selected layer, (N, m)
        parts = [vec[:, None, :].expand(n, m, vec.shape[1]), own[:, :, None]]
        if self.shared:
            onehot = F.one_hot(layers, self.L).to(vec.dtype)
            parts.append(onehot[None].expand(n, m, self.L))
        h = embed(torch.cat(parts, 2).reshape(n * m, -1))
        return prev.reshape(n * m, self.k, *self.shape), h

    def _previous(self, x: Tensor, layers: Tensor) -> Tensor:
        """(N, len(layers), k, V): layers ``i-k .. i-1`` of ``x`` (N, L, V), zeros before 0."""
        pad = F.pad(x, (0, 0, self.k, 0))  # k zero layers in front
        idx = layers[:, None] + torch.arange(self.k, device=x.device)[None]  # i-k+j -> i+j
        return pad[:, idx]

    def _flow_ctx(self, cond: Tensor, h: Tensor) -> Any:
        if self.type == "conv":
            return (cond, h)
        return torch.cat([h, cond.flatten(1)], 1)

    def context(self, prev: Tensor, vec: Tensor, i: int) -> Any:
        """Layer ``i``'s flow context from its previous layers ``prev`` (N, k, V)."""
        layer = torch.tensor([i], device=vec.device)
        return self._flow_ctx(*self._context(prev[:, None], vec, layer, self.unit(i).embed))

    # -- density ------------------------------------------------------------------------------
    def log_prob(self, x: Tensor, vec: Tensor, layers: Tensor | None = None) -> Tensor:
        """``sum_{i in layers} log p_i(x_i | ...)`` (N,) in the flows' space; all layers by
        default. ``x`` (N, L, V), ``vec`` (N, 1 + L): ``[2 log10(E_inc/GeV) - 3, c(E_1..L)]``."""
        if layers is None:
            layers = torch.arange(self.L, device=x.device)
        n, m = len(x), len(layers)
        prev = self._previous(x, layers)
        if self.shared:
            unit = self.units[0]
            cond, h = self._context(prev, vec, layers, unit.embed)
            z, ladj = unit.flow(x[:, layers].reshape(n * m, self.V), self._flow_ctx(cond, h))
            return (standard_normal_log_prob(z) + ladj).reshape(n, m).sum(1)
        total = x.new_zeros(n)
        for j, i in enumerate(layers.tolist()):
            z, ladj = self.unit(i).flow(x[:, i], self.context(prev[:, j], vec, i))
            total = total + standard_normal_log_prob(z) + ladj
        return total

    # -- sampling -----------------------------------------------------------------------------
    def sample(self, vec: Tensor, noise: Tensor | None = None) -> Tensor:
        """Layers (N, L, V) in the flows' space, drawn in order: layer i from its noise
        ``noise[:, i]`` (N(0, 1) when None) given the layers already drawn."""
        n = len(vec)
        if noise is None:
            noise = torch.randn(n, self.L, self.V, dtype=vec.dtype).to(vec.device)
        out = vec.new_zeros(n, self.L, self.V)
        for i in range(self.L):
            prev = out[:, max(0, i - self.k):i]
            prev = F.pad(prev, (0, 0, self.k - prev.shape[1], 0))
            out[:, i] = self.unit(i).flow.inverse(noise[:, i], self.context(prev, vec, i))
        return out
