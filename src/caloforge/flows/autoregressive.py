"""Masked autoregressive (MAF) and inverse autoregressive (IAF) flows with rational-quadratic
spline (RQS) blocks: the CaloFlow v1 teacher and the CaloFlow v2 student.

Every block is a monotone RQS ``y_i = RQS(x_i; theta_i)`` applied per feature in the
data -> noise direction, with spline parameters from a MADE hyper network:

* **MAF block** (teacher): ``theta_i = MADE(x_{<i}, c)`` reads the *data* side, so the density
  direction ``x -> z`` is one pass and sampling ``z -> x`` needs D sequential passes;
* **IAF block** (student): ``theta_i = MADE(y_{<i}, c)`` reads the *noise* side, so sampling
  ``z -> x`` (the inverse spline) is one pass — and so is the log-density of the student's own
  samples — while ``x -> z`` needs D passes.

An IAF block whose MADE outputs equal those of a MAF block (evaluated on the matching data-side
inputs) is that block's exact inverse; this is what "fully guided" distillation matches block by
block (:meth:`AutoregressiveFlow.forward_trace`, :meth:`AutoregressiveFlow.inverse_trace`).

Between blocks the features are permuted (fixed permutations stored as buffers, so a student
can reuse its teacher's permutations); :func:`layer_permutations` gives CaloFlow's alternation of
within-layer reversal and random within-layer permutation.

Splines: :class:`zuko.transforms.MonotonicRQSTransform` (set up by
:class:`caloforge.flows.spline.RQSTransform`) on ``[-bound, bound]`` with identity
("linear") tails outside; CaloFlow uses ``bound = 14`` because logit-space inputs reach
``+-13.8`` (logit alpha 1e-6).

References:
    G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density
    Estimation", arXiv:1705.07057.
    M. Germain et al., "MADE: Masked Autoencoder for Distribution Estimation",
    arXiv:1502.03509.
    D. P. Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow",
    arXiv:1606.04934.
    C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032.
    C. Krause, D. Shih, "CaloFlow" (teacher), arXiv:2106.05285; "CaloFlow II" (student,
    probability density distillation), arXiv:2110.11377.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from caloforge.flows.base import ConditionalFlow, standard_normal_log_prob
from caloforge.flows.spline import RQSTransform, compiled_rqs_inverse, rqs_inverse

__all__ = ["IAF", "MADE", "MAF", "AutoregressiveFlow", "MADERQSBlock", "Trace",
           "layer_permutations", "random_permutations"]


# --------------------------------------------------------------------------------------------
# MADE hyper network


class MADE(nn.Module):
    """Masked MLP: output block ``i`` (``params`` values) depends on inputs ``x_{<i}`` and the
    whole context only (natural order 0..D-1). The first ``skip_context`` context features also
    reach every output through an unmasked linear skip.

    Args:
        features: D, the number of autoregressive inputs.
        context: C, the number of context features (0: none).
        hidden: Widths of the hidden layers.
        params: Outputs per feature (P).
        dropout: Dropout probability after each hidden activation.
        skip_context: How many leading context features the skip reads (default: all C). A
            wide context (iCaloFlow's flow-3 reads the previous layer's 900 voxels on dataset
            3) would make the skip a C x D P matrix larger than the rest of the MADE; it then
            reads only the few scalar conditions, and the wide part enters through the
            hidden layers.

    Shapes: ``forward(x (N, D), c (N, C) | None) -> (N, D, P)``.
    """

    def __init__(self, features: int, context: int, hidden: Sequence[int], params: int,
                 dropout: float = 0.0, skip_context: int | None = None) -> None:
        super().__init__()
        self.features, self.context, self.params = features, context, params
        self.skip_context = context if skip_context is None else int(skip_context)
        if not 0 <= self.skip_context <= context:
            raise ValueError(f"MADE skip_context: expected 0..{context}, found {skip_context}")
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"MADE hidden: expected positive widths, found {hidden}")
        deg_in = torch.cat([torch.arange(1, features + 1), torch.zeros(context, dtype=torch.long)])
        low = 0 if context > 0 else 1
        high = max(features - 1, low)
        degrees = [deg_in]
        for width in hidden:
            degrees.append(low + torch.arange(width) % (high - low + 1))
        deg_out = torch.arange(1, features + 1).repeat_interleave(params)
        self.linears = nn.ModuleList()
        for k in range(len(hidden) + 1):
            d_in = degrees[k]
            if k < len(hidden):
                d_out = degrees[k + 1]
                mask = d_out[:, None] >= d_in[None, :]
            else:
                d_out = deg_out
                mask = d_out[:, None] > d_in[None, :]
            lin = nn.Linear(len(d_in), len(d_out))
            lin.register_buffer("mask", mask.to(lin.weight.dtype))
            self.linears.append(lin)
        # unmasked context -> output skip: every feature (also the first, which sees few
        # hidden units) depends on the context directly
        self.skip = (nn.Linear(self.skip_context, features * params, bias=False)
                     if self.skip_context > 0 else None)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        with torch.no_grad():  # identity initialisation of the splines
            self.linears[-1].weight.mul_(1e-2)
            self.linears[-1].bias.zero_()
            if self.skip is not None:
                self.skip.weight.mul_(1e-2)

    def _skip_in(self, c: Tensor) -> Tensor:
        return c if self.skip_context == self.context else c[..., :self.skip_context]

    @staticmethod
    def _masked(lin: nn.Linear) -> Tensor:
        return lin.weight * lin.mask

    def _inputs(self, x: Tensor, c: Tensor | None) -> Tensor:
        return torch.cat([x, c], -1) if self.context > 0 else x

    def _inference_weights(self) -> list[Tensor]:
        """The masked weights, the last one with the skip's weight appended as extra input
        columns (so the skip is part of the last matmul instead of a second (N, D P) product
        and sum), cached while no weight, mask or device changes (keyed on each tensor's
        storage and version counter, which optimiser steps and ``load_state_dict`` bump)."""
        tensors = [t for lin in self.linears for t in (lin.weight, lin.mask)]
        if self.skip is not None:
            tensors.append(self.skip.weight)
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        cached = self.__dict__.get("_weights_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            ws = [self._masked(lin) for lin in self.linears]
            if self.skip is not None:
                ws[-1] = torch.cat([ws[-1], self.skip.weight], 1)
        self.__dict__["_weights_cache"] = (key, ws)
        return ws

    def forward_sampling(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """:meth:`forward` for sampling without autograd (the IAF's one-pass direction): the
        same outputs to float rounding, from the cached masked weights (see
        :meth:`_inference_weights`; they hold one more copy of the MADE's weights) with the
        skip fused into the last matmul. Falls back to :meth:`forward` under autograd,
        tracing (ONNX) and ``torch.compile``."""
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.forward(x, c)
        ws = self._inference_weights()
        h = self._inputs(x, c)
        for k, lin in enumerate(self.linears[:-1]):
            h = self.drop(self.act(nn.functional.linear(h, ws[k], lin.bias)))
        if self.skip is not None:
            h = torch.cat([h, self._skip_in(c)], -1)
        h = nn.functional.linear(h, ws[-1], self.linears[-1].bias)
        return h.unflatten(-1, (self.features, self.params))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self._inputs(x, c)
        for k, lin in enumerate(self.linears):
            h = nn.functional.linear(h, self._masked(lin), lin.bias)
            if k < len(self.linears) - 1:
                h = self.drop(self.act(h))
        if self.skip is not None:
            h = h + self.skip(self._skip_in(c))
        return h.unflatten(-1, (self.features, self.params))

    # -- sequential evaluation (D passes) -------------------------------------------------------
    def first_layer(self, x: Tensor, c: Tensor | None) -> Tensor:
        """Pre-activation of the first hidden layer (N, H1)."""
        lin = self.linears[0]
        return nn.functional.linear(self._inputs(x, c), self._masked(lin), lin.bias)

    def add_feature(self, pre: Tensor, i: int, value: Tensor) -> Tensor:
        """Update a first-layer pre-activation after feature ``i`` changed by ``value`` (N,)."""
        lin = self.linears[0]
        w = lin.weight[:, i] * lin.mask[:, i]
        return pre + value[:, None] * w[None, :]

    def rows(self, pre: Tensor, i: int, c: Tensor | None = None) -> Tensor:
        """The P outputs (N, P) of feature ``i`` from a first-layer pre-activation."""
        h = self.drop(self.act(pre))
        for lin in self.linears[1:-1]:
            h = self.drop(self.act(nn.functional.linear(h, self._masked(lin), lin.bias)))
        last = self.linears[-1]
        sl = slice(i * self.params, (i + 1) * self.params)
        out = nn.functional.linear(h, last.weight[sl] * last.mask[sl], last.bias[sl])
        if self.skip is not None:
            out = out + nn.functional.linear(self._skip_in(c), self.skip.weight[sl])
        return out


# --------------------------------------------------------------------------------------------
# one MADE-RQS block


class MADERQSBlock(nn.Module):
    """One autoregressive RQS block; data -> noise is ``y = RQS(x; theta)`` per feature.

    Args:
        features: D.
        context: C.
        bins: Spline bins K (raw parameters per feature: 3K - 1).
        hidden: Hidden widths of the MADE.
        bound: Spline (co)domain ``[-bound, bound]``; identity outside.
        dropout: MADE dropout.
        slope: Minimum spline slope (zuko's regulariser of bin widths/heights/derivatives).
        inverse_autoregressive: False: MAF block (MADE reads x); True: IAF block (MADE reads y).
        skip_context: Leading context features of the MADE's skip (see :class:`MADE`).
    """

    def __init__(self, features: int, context: int, bins: int = 8,
                 hidden: Sequence[int] = (378,), bound: float = 14.0, dropout: float = 0.0,
                 slope: float = 1e-3, inverse_autoregressive: bool = False,
                 skip_context: int | None = None) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError(f"bins: expected >= 2, found {bins}")
        self.features, self.context, self.bins = features, context, bins
        self.bound, self.slope = float(bound), float(slope)
        self.inverse_autoregressive = inverse_autoregressive
        self.made = MADE(features, context, hidden, 3 * bins - 1, dropout, skip_context)
        #: Sequential-direction algorithm, ``"incremental"`` or ``"full"`` (see :meth:`_solve`).
        self.solver = "incremental"
        #: Plain sampling of an IAF block inverts its spline with
        #: :func:`~caloforge.flows.spline.compiled_rqs_inverse` instead of the eager
        #: :func:`~caloforge.flows.spline.rqs_inverse` (set by
        #: :meth:`AutoregressiveFlow.compile_spline`).
        self.compiled_spline = False

    def spline(self, raw: Tensor) -> RQSTransform:
        """The spline of raw MADE outputs (..., 3K-1)."""
        k = self.bins
        return RQSTransform(raw[..., :k], raw[..., k:2 * k], raw[..., 2 * k:],
                            bound=self.bound, slope=self.slope)

    def _solve(self, known: Tensor, c: Tensor | None, to_noise: bool) -> Tensor:
        """D sequential passes: the unknown side u, on which the MADE depends, given the other.

        ``to_noise``: u = y = RQS(known) (IAF forward); else u = x = RQS^-1(known) (MAF inverse).

        ``solver == "incremental"`` (default) keeps the first hidden layer's pre-activation and
        updates it by one column per solved feature, then evaluates only feature i's output
        rows: a pass costs O(N H) instead of a full MADE evaluation. ``"full"`` is the
        textbook algorithm (one full MADE pass per feature, as in nflows and zuko), kept as
        the reference for tests and the sampling benchmark.
        """
        if self.solver == "full":
            return self._solve_full(known, c, to_noise)
        u = torch.zeros_like(known)
        pre = self.made.first_layer(u, c)
        cols = []
        for i in range(self.features):
            t = self.spline(self.made.rows(pre, i, c))
            ui = t(known[:, i]) if to_noise else t.inverse(known[:, i])
            cols.append(ui)
            if i < self.features - 1:
                pre = self.made.add_feature(pre, i, ui)
        return torch.stack(cols, -1)

    def _solve_full(self, known: Tensor, c: Tensor | None, to_noise: bool) -> Tensor:
        """The reference D-pass solve: pass i runs the whole MADE and fixes feature i."""
        u = torch.zeros_like(known)
        for i in range(self.features):
            t = self.spline(self.made(u, c)[:, i])
            ui = t(known[:, i]) if to_noise else t.inverse(known[:, i])
            u = torch.cat([u[:, :i], ui[:, None], u[:, i + 1:]], 1)
        return u

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Data -> noise: ``(y, log|dy/dx| (N,), raw MADE outputs (N, D, 3K-1))``.

        For an IAF block this is the sequential direction (D passes without gradient, then one
        differentiable pass at the solution)."""
        if self.inverse_autoregressive:
            with torch.no_grad():
                y = self._solve(x, c, to_noise=True)
            raw = self.made(y, c)
        else:
            raw = self.made(x, c)
        y, ladj = self.spline(raw).call_and_ladj(x)
        return y, ladj.sum(-1), raw

    def inverse(self, y: Tensor, c: Tensor | None = None, with_ladj: bool = True
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Noise -> data: ``(x, log|dy/dx| (N,), raw MADE outputs)`` (the log-det is the
        data -> noise one, as in :meth:`forward`). ``with_ladj=False`` (plain sampling) skips
        the log-det (returned as None) and, for a MAF block, the raw outputs (None).

        For a MAF block this is the sequential direction: x is computed without gradient."""
        if self.inverse_autoregressive:
            if not with_ladj:  # plain sampling: fused MADE pass and spline inverse
                raw = self.made.forward_sampling(y, c)
                inv = compiled_rqs_inverse() if self.compiled_spline else rqs_inverse
                return inv(raw, y, self.bound, self.slope), None, raw
            raw = self.made(y, c)
            t = self.spline(raw)
            x = t.inverse(y)
        else:
            with torch.no_grad():
                x = self._solve(y, c, to_noise=False)
            if not with_ladj:
                return x, None, None
            raw = self.made(x, c)
            t = self.spline(raw)
        if not with_ladj:
            return x, None, raw
        ladj = t.log_abs_det_jacobian(x, y)
        return x, ladj.sum(-1), raw


# --------------------------------------------------------------------------------------------
# permutations


def random_permutations(features: int, blocks: int, seed: int = 0) -> list[Tensor]:
    """``blocks`` random permutations of ``range(features)`` (the first is the identity)."""
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.arange(features)]
    perms += [torch.randperm(features, generator=gen) for _ in range(blocks - 1)]
    return perms


def layer_permutations(layer_sizes: Sequence[int], blocks: int, seed: int = 0) -> list[Tensor]:
    """CaloFlow's permutations: before block k, reverse the voxels within every layer (k odd)
    or permute them randomly within every layer (k even, k > 0); block 0 sees the natural
    order. Layers keep their order. Returned as indices into the previous block's output.
    """
    gen = torch.Generator().manual_seed(seed)
    offsets = [0]
    for s in layer_sizes:
        offsets.append(offsets[-1] + int(s))
    perms = [torch.arange(offsets[-1])]
    for k in range(1, blocks):
        parts = []
        for lo, hi in zip(offsets[:-1], offsets[1:], strict=True):
            if k % 2 == 1:
                parts.append(torch.arange(hi - 1, lo - 1, -1))
            else:
                parts.append(lo + torch.randperm(hi - lo, generator=gen))
        perms.append(torch.cat(parts))
    return perms


# --------------------------------------------------------------------------------------------
# flows


class Trace(tuple):
    """``(out, log_abs_det (N,), states, raws)`` of a traced pass.

    ``states[k]`` (k = 0..B) is the input of block k in its own (permuted) coordinates
    (``states[0]`` is x in data order permuted by block 0's permutation, ``states[B]`` = z);
    ``raws[k]`` are block k's MADE outputs (N, D, 3K-1).
    """

    __slots__ = ()

    def __new__(cls, out: Tensor, ladj: Tensor, states: list[Tensor], raws: list[Tensor]
                ) -> Trace:
        return super().__new__(cls, (out, ladj, states, raws))

    out = property(lambda self: self[0])
    ladj = property(lambda self: self[1])
    states = property(lambda self: self[2])
    raws = property(lambda self: self[3])


def _block_out(block: nn.Module, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
    """A block's (output, log-det), for :func:`torch.utils.checkpoint.checkpoint`."""
    out, ladj, _ = block(h, c)
    return out, ladj


class AutoregressiveFlow(ConditionalFlow):
    """A stack of MADE-RQS blocks with fixed permutations and a standard-normal base.

    Data -> noise: for k = 0..B-1, ``h = perm_k(h)`` then ``h = block_k(h)``.

    Args:
        features: D.
        context: C (0: unconditional).
        transforms: Number of blocks B.
        bins: Spline bins per block.
        hidden: MADE hidden widths.
        bound: Spline tail bound (14 for CaloFlow's logit-space data).
        dropout: MADE dropout.
        permutations: B index tensors (default: :func:`random_permutations` with ``seed``).
        seed: Seed of the default permutations.
        slope: Minimum spline slope.
        inverse_autoregressive: IAF (True) or MAF (False) blocks.
        skip_context: Leading context features of the MADEs' skips (see :class:`MADE`).
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 8, bins: int = 8,
                 hidden: Sequence[int] = (378,), bound: float = 14.0, dropout: float = 0.0,
                 permutations: Sequence[Tensor] | None = None, seed: int = 0,
                 slope: float = 1e-3, inverse_autoregressive: bool = False,
                 skip_context: int | None = None) -> None:
        super().__init__(features, context)
        if transforms < 1:
            raise ValueError(f"transforms: expected >= 1, found {transforms}")
        if permutations is None:
            permutations = random_permutations(features, transforms, seed)
        permutations = [torch.as_tensor(p, dtype=torch.long) for p in permutations]
        if len(permutations) != transforms:
            raise ValueError(f"permutations: expected {transforms}, found {len(permutations)}")
        for p in permutations:
            if p.shape != (features,) or not torch.equal(p.sort().values,
                                                         torch.arange(features)):
                raise ValueError(f"permutations: expected permutations of range({features})")
        self.transforms, self.bins, self.bound = transforms, bins, float(bound)
        self.hidden = tuple(int(h) for h in hidden)
        #: Training memory: when True, :meth:`forward` and the traced passes
        #: (:meth:`forward_trace`, :meth:`inverse_trace` of an IAF: distillation) under
        #: autograd keep only each block's input and outputs and recompute the block's
        #: internals (MADE activations, spline intermediates) in the backward pass (gradient
        #: checkpointing): activation memory of one block instead of all, for ~1.3x the
        #: step time.
        self.checkpoint_blocks = False
        self.inverse_autoregressive = inverse_autoregressive
        self.blocks = nn.ModuleList(
            MADERQSBlock(features, context, bins, hidden, bound, dropout, slope,
                         inverse_autoregressive, skip_context) for _ in range(transforms))
        for k, p in enumerate(permutations):
            self.register_buffer(f"perm{k}", p.clone())
            self.register_buffer(f"iperm{k}", torch.argsort(p))

    def set_solver(self, solver: str) -> None:
        """Algorithm of every block's sequential direction: ``"incremental"`` (default) or
        ``"full"`` (one whole MADE pass per feature: the textbook reference)."""
        if solver not in ("incremental", "full"):
            raise ValueError(f"solver: expected 'incremental' or 'full', found {solver!r}")
        for block in self.blocks:
            block.solver = solver

    def compile_spline(self, enabled: bool = True) -> None:
        """Invert every block's spline through ``torch.compile`` when sampling (an IAF's
        one-pass direction without log-det; see
        :func:`~caloforge.flows.spline.compiled_rqs_inverse`): the MADE's matmuls stay eager,
        where on a CPU they are faster than compiled. No effect on a MAF's sequential inverse,
        on log-densities or under autograd."""
        for block in self.blocks:
            block.compiled_spline = bool(enabled)

    @property
    def permutations(self) -> list[Tensor]:
        """The B permutations (copies), e.g. to build a student with the same ones."""
        return [getattr(self, f"perm{k}").clone() for k in range(self.transforms)]

    def load_permutations(self, permutations: Sequence[Tensor]) -> None:
        """Replace the permutations (e.g. by a teacher's)."""
        if len(permutations) != self.transforms:
            raise ValueError(f"permutations: expected {self.transforms}, found "
                             f"{len(permutations)}")
        for k, p in enumerate(permutations):
            getattr(self, f"perm{k}").copy_(p)
            getattr(self, f"iperm{k}").copy_(torch.argsort(p))

    # -- traced passes --------------------------------------------------------------------
    def forward_trace(self, x: Tensor, c: Tensor | None = None, keep: bool = True) -> Trace:
        """Data -> noise, keeping every intermediate state and raw spline parameters
        (``keep=False``: empty lists, which saves memory)."""
        ladj = x.new_zeros(x.shape[0])
        states, raws = [], []
        h = x
        recompute = self.checkpoint_blocks and torch.is_grad_enabled()
        for k, block in enumerate(self.blocks):
            h = h[:, getattr(self, f"perm{k}")]
            if keep:
                states.append(h)
            if recompute and keep:  # keep input and outputs; recompute the rest in backward
                h, l, raw = checkpoint(block, h, c, use_reentrant=False)
            elif recompute:
                h, l = checkpoint(_block_out, block, h, c, use_reentrant=False)
                raw = None
            else:
                h, l, raw = block(h, c)
            ladj = ladj + l
            if keep:
                raws.append(raw)
        if keep:
            states.append(h)
        return Trace(h, ladj, states, raws)

    def inverse_trace(self, z: Tensor, c: Tensor | None = None, keep: bool = True,
                      with_ladj: bool = True) -> Trace:
        """Noise -> data with states/raws in the same indexing as :meth:`forward_trace`;
        ``ladj`` is ``log|det dz/dx|`` at the returned x (zeros when ``with_ladj=False`` and
        ``keep=False``: plain sampling)."""
        with_ladj = with_ladj or keep
        ladj = z.new_zeros(z.shape[0])
        states: list[Tensor] = [z] if keep else []
        raws: list[Tensor] = []
        h = z
        # an IAF's inverse is its one-pass, differentiable direction (distillation)
        recompute = (self.checkpoint_blocks and with_ladj and self.inverse_autoregressive
                     and torch.is_grad_enabled())
        for k in reversed(range(self.transforms)):
            if recompute:
                h, l, raw = checkpoint(self.blocks[k].inverse, h, c, with_ladj=True,
                                       use_reentrant=False)
            else:
                h, l, raw = self.blocks[k].inverse(h, c, with_ladj=with_ladj)
            if l is not None:
                ladj = ladj + l
            if keep:
                states.append(h)
                raws.append(raw)
            h = h[:, getattr(self, f"iperm{k}")]
        return Trace(h, ladj, states[::-1], raws[::-1])

    # -- the common interface ----------------------------------------------------------------
    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(z (N, D), log|det dz/dx| (N,))``."""
        tr = self.forward_trace(x, c, keep=False)
        return tr.out, tr.ladj

    def inverse(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """Noise -> data (deterministic)."""
        return self.inverse_trace(z, c, keep=False, with_ladj=False).out

    def sample_and_log_prob(self, c: Tensor | None = None, z: Tensor | None = None,
                            n: int | None = None,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Samples and their log-density ``(x (N, D), log p(x|c) (N,))``; one pass for an
        IAF (the student's reverse-KL term)."""
        if z is None:
            n = len(c) if c is not None else n
            if n is None:
                raise ValueError("sample_and_log_prob: pass c, z or n")
            z = self.noise(n, next(self.parameters()), generator)
        tr = self.inverse_trace(z, c, keep=False)
        return tr.out, standard_normal_log_prob(z) + tr.ladj


class MAF(AutoregressiveFlow):
    """Masked autoregressive flow (fast density, D-pass sampling): the CaloFlow v1 teacher.

    Example:
        >>> flow = MAF(4, 2, transforms=2, hidden=(16,))
        >>> x, c = torch.randn(3, 4), torch.randn(3, 2)
        >>> bool(torch.allclose(flow.inverse(flow(x, c)[0], c), x, atol=1e-4))
        True
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 8, bins: int = 8,
                 hidden: Sequence[int] = (378,), bound: float = 14.0, dropout: float = 0.0,
                 permutations: Sequence[Tensor] | None = None, seed: int = 0,
                 slope: float = 1e-3, skip_context: int | None = None) -> None:
        super().__init__(features, context, transforms, bins, hidden, bound, dropout,
                         permutations, seed, slope, inverse_autoregressive=False,
                         skip_context=skip_context)


class IAF(AutoregressiveFlow):
    """Inverse autoregressive flow (one-pass sampling and log-density of own samples, D-pass
    density of given data): the CaloFlow v2 student.

    Build it with the teacher's permutations (``permutations=teacher.permutations``) so that
    block k of the student can be matched to block k of the teacher.
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 8, bins: int = 8,
                 hidden: Sequence[int] = (736,), bound: float = 14.0, dropout: float = 0.0,
                 permutations: Sequence[Tensor] | None = None, seed: int = 0,
                 slope: float = 1e-3, skip_context: int | None = None) -> None:
        super().__init__(features, context, transforms, bins, hidden, bound, dropout,
                         permutations, seed, slope, inverse_autoregressive=True,
                         skip_context=skip_context)
