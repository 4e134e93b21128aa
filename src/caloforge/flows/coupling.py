"""Conditional rational-quadratic-spline (RQS) coupling flows.

A coupling layer keeps one half ``x_a`` of the features and transforms the other half ``x_b``
element-wise with monotonic rational-quadratic splines whose bin widths, heights and knot
derivatives a hyper-network computes from ``[x_a, h(c)]``. Both directions are one network pass
per layer (no per-dimension loop), which is why coupling flows sample fast (CaloINN, 0.2 ms per
shower on a GPU). The spline acts on ``[-bound, bound]`` and is the identity outside
(linear tails); the spline arithmetic is :class:`zuko.transforms.MonotonicRQSTransform`
(through :class:`caloforge.flows.spline.RQSTransform`, which sets it up faster).

:class:`CouplingRQSFlow` stacks ``transforms`` blocks of [ActNorm -> coupling -> fixed random
permutation]. Alternating blocks transform alternating halves, so every feature is transformed
even without permutations.

References:
    L. Dinh, J. Sohl-Dickstein, S. Bengio, "Density estimation using Real NVP", arXiv:1605.08803.
    C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", arXiv:1906.04032.
    F. Ernst et al., "Normalizing flows for high-dimensional detector simulations" (CaloINN),
    arXiv:2312.09290.

Example:
    >>> import torch
    >>> flow = CouplingRQSFlow(4, 1, transforms=2, hidden=(16,))
    >>> x, c = torch.randn(8, 4), torch.randn(8, 1)
    >>> z, ladj = flow(x, c)
    >>> bool(torch.allclose(flow.inverse(z, c), x, atol=1e-5)), ladj.shape
    (True, torch.Size([8]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.flows.actnorm import ActNorm
from caloforge.flows.base import ConditionalFlow
from caloforge.flows.embedding import hyper_network
from caloforge.flows.spline import RQSTransform, rqs_inverse


class RQSCoupling(nn.Module):
    """One conditional RQS coupling layer.

    Args:
        features: Dimension D.
        context: Dimension of the (embedded) context h (0: none).
        mask: Boolean (D,) mask of the features that are transformed (``x_b``).
        bins: Spline bins K.
        hidden: Hyper-network hidden widths.
        residual: Residual hyper-network (:class:`~caloforge.flows.embedding.ResidualMLP`).
        bound: Spline (co)domain ``[-bound, bound]``; identity outside.
        slope: Minimum spline slope (zuko's parametrisation).
    """

    idx_a: Tensor
    idx_b: Tensor
    split: Tensor
    order: Tensor

    def __init__(self, features: int, context: int, mask: Tensor, bins: int = 8,
                 hidden: Sequence[int] = (256, 256), residual: bool = False, bound: float = 5.0,
                 slope: float = 1e-3, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        self.register_buffer("idx_a", torch.nonzero(~mask).flatten())
        self.register_buffer("idx_b", torch.nonzero(mask).flatten())
        # position of each original feature in cat([x_a, x_b]), and its inverse
        self.register_buffer("split", torch.cat([self.idx_a, self.idx_b]), persistent=False)
        self.register_buffer("order", torch.argsort(self.split))
        self.bins, self.bound, self.slope = bins, bound, slope
        self.n_b = len(self.idx_b)
        self.net = hyper_network(len(self.idx_a) + context, self.n_b * (3 * bins - 1), hidden,
                                 residual, act, dropout)

    def _params(self, x_a: Tensor, h: Tensor | None) -> Tensor:
        """Raw spline parameters (N, n_b, 3K - 1) from the kept half and the context."""
        inp = x_a if h is None else torch.cat([x_a, h], -1)
        # unflatten, not reshape(len(x), ...): the batch size stays symbolic in ONNX traces
        return self.net(inp).unflatten(-1, (self.n_b, 3 * self.bins - 1))

    def _spline(self, x_a: Tensor, h: Tensor | None) -> RQSTransform:
        p = self._params(x_a, h)
        k = self.bins
        return RQSTransform(p[..., :k], p[..., k:2 * k], p[..., 2 * k:], bound=self.bound,
                            slope=self.slope)

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(y, log|det dy/dx|)``; the log-det has shape (N,)."""
        x_a, x_b = x[:, self.idx_a], x[:, self.idx_b]
        y_b, ladj = self._spline(x_a, h).call_and_ladj(x_b)
        return torch.cat([x_a, y_b], 1)[:, self.order], ladj.sum(-1)

    def inverse(self, y: Tensor, h: Tensor | None = None) -> Tensor:
        return self.inverse_halves(y[:, self.idx_a], y[:, self.idx_b], h)[:, self.order]

    def inverse_halves(self, y_a: Tensor, y_b: Tensor, h: Tensor | None = None) -> Tensor:
        """The inverse in the coupling's own order: ``cat([x_a, x_b])`` (N, D) from the kept
        half ``y_a`` and the transformed half ``y_b`` (``[:, order]`` restores the features'
        order; :meth:`CouplingRQSFlow.inverse` folds that into the next block's gathers)."""
        x_b = rqs_inverse(self._params(y_a, h), y_b, self.bound, self.slope)
        return torch.cat([y_a, x_b], 1)


class Permutation(nn.Module):
    """A fixed permutation of the features (a buffer, so it is saved with the weights)."""

    perm: Tensor
    inv: Tensor

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))
        self.register_buffer("inv", torch.argsort(self.perm))

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.perm]

    def inverse(self, z: Tensor) -> Tensor:
        return z[:, self.inv]


class CouplingRQSFlow(ConditionalFlow):
    """A conditional RQS coupling flow: ``transforms`` x [ActNorm -> RQSCoupling -> Permutation].

    Args:
        features: Dimension D (>= 2).
        context: Dimension of the raw context c (0: unconditional).
        transforms: Number of coupling blocks.
        bins: Spline bins per dimension.
        hidden: Hyper-network hidden widths.
        residual: Residual hyper-networks (all widths equal; CaloMan's latent flow).
        bound: Spline tail bound (zuko's default 5; CaloINN used 18 in its own units).
        actnorm: Data-initialised ActNorm before each coupling.
        permute: Fixed random permutation after each coupling (seeded by ``seed``).
        context_embedding: Optional module applied once to c; its output width must be given as
            its ``out_features`` attribute.
        act: Hidden activation (``relu``, ``leaky_relu``, ``silu``, ...).
        dropout: Hyper-network dropout.
        seed: Seed of the permutations (so a rebuilt model has the same ones).
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 4, bins: int = 8,
                 hidden: Sequence[int] = (256, 256), residual: bool = False, bound: float = 5.0,
                 actnorm: bool = True, permute: bool = True,
                 context_embedding: nn.Module | None = None, act: str = "relu",
                 dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__(features, context)
        if features < 2:
            raise ConfigError(f"flow[features]: expected at least 2 features for a coupling "
                              f"flow, found {features}")
        if transforms < 1 or bins < 1 or bound <= 0:
            raise ConfigError(f"flow: expected transforms >= 1, bins >= 1, bound > 0, found "
                              f"transforms={transforms}, bins={bins}, bound={bound}")
        self.embedding = context_embedding
        h_dim = context if context_embedding is None else int(context_embedding.out_features)
        gen = torch.Generator().manual_seed(seed)
        half = torch.arange(features) >= features // 2
        self.actnorms = nn.ModuleList()
        self.couplings = nn.ModuleList()
        self.perms = nn.ModuleList()
        for i in range(transforms):
            self.actnorms.append(ActNorm(features) if actnorm else nn.Identity())
            mask = half if i % 2 == 0 else ~half
            self.couplings.append(RQSCoupling(features, h_dim, mask, bins, hidden, residual,
                                              bound, act=act, dropout=dropout))
            perm = torch.randperm(features, generator=gen) if permute else torch.arange(features)
            self.perms.append(Permutation(perm))

    def embed(self, c: Tensor | None) -> Tensor | None:
        """The context as seen by the hyper-networks (computed once per call)."""
        if c is None:
            return None
        if c.ndim == 1:
            c = c[:, None]
        return c if self.embedding is None else self.embedding(c)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.embed(c)
        ladj = x.new_zeros(len(x))
        for norm, coupling, perm in zip(self.actnorms, self.couplings, self.perms, strict=True):
            if isinstance(norm, ActNorm):
                x, l0 = norm(x)
                ladj = ladj + l0
            x, l1 = coupling(x, h)
            ladj = ladj + l1
            x = perm(x)
        return x, ladj

    def inverse(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """Noise -> data. The permutations are not applied as copies: the state is kept as
        a tensor ``s`` and an index map ``m`` with ``z = s[:, m]``; each permutation updates
        ``m`` only, each coupling gathers its halves through ``m`` and leaves its output in its
        own ``[x_a, x_b]`` order, and each ActNorm acts on that order with permuted
        parameters. One gather at the end restores the features' order."""
        h = self.embed(c)
        m: Tensor | None = None  # None: identity map
        for norm, coupling, perm in zip(reversed(self.actnorms), reversed(self.couplings),
                                        reversed(self.perms), strict=True):
            m = perm.inv if m is None else m[perm.inv]
            z = coupling.inverse_halves(z[:, m[coupling.idx_a]], z[:, m[coupling.idx_b]], h)
            m = coupling.order
            if isinstance(norm, ActNorm):  # z in coupling order: feature j sits at column
                src = coupling.split  # split[j] = cat([idx_a, idx_b])[j]
                z = torch.addcmul(norm.loc[src], z, norm.log_scale[src].exp())
        return z if m is None else z[:, m]

    def inverse_blockwise(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """:meth:`inverse` the plain way, block by block: permutation copy, the coupling's
        :class:`RQSTransform` inverse, concatenation, reorder, ActNorm. The reference that
        the tests and ``benchmarks/spline_ab.py`` compare the fused path with."""
        h = self.embed(c)
        for norm, coupling, perm in zip(reversed(self.actnorms), reversed(self.couplings),
                                        reversed(self.perms), strict=True):
            y = perm.inverse(z)
            y_a, y_b = y[:, coupling.idx_a], y[:, coupling.idx_b]
            z = torch.cat([y_a, coupling._spline(y_a, h).inverse(y_b)], 1)[:, coupling.order]
            if isinstance(norm, ActNorm):
                z = norm.inverse(z)
        return z
