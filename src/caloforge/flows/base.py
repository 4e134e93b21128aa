"""The one interface of caloforge's conditional flows.

Every flow maps data ``x`` (N, D) to noise ``z`` (N, D) given a context ``c`` (N, C):

* ``forward(x, c) -> (z, log_abs_det)``: data -> noise, with ``log|det dz/dx|`` of shape (N,);
* ``inverse(z, c) -> x``: noise -> data, deterministic (the sampling direction);
* ``log_prob(x, c) -> (N,)``: ``log N(z; 0, 1) + log_abs_det``;
* ``sample(c, z=None) -> x``: ``inverse`` of ``z`` (drawn from N(0, 1) when None).

Coupling flows (:mod:`caloforge.flows.coupling`) are fast in both directions; masked
autoregressive flows (MAF) are fast in ``forward`` only and inverse autoregressive flows
(IAF) in ``inverse`` only. Subclass :class:`ConditionalFlow` and implement ``forward`` and
``inverse``; ``log_prob`` and ``sample`` come for free.

References:
    G. Papamakarios et al., "Normalizing Flows for Probabilistic Modeling and Inference",
    arXiv:1912.02762 (sign and shape conventions).
"""

from __future__ import annotations

import abc
import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``sum_d log N(z_d; 0, 1)`` over the last axis, shape (N,)."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * _LOG_2PI)


@runtime_checkable
class Flow(Protocol):
    """Structural type of a conditional flow (see the module docstring)."""

    features: int

    def forward(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]: ...

    def inverse(self, z: Tensor, c: Tensor | None) -> Tensor: ...

    def log_prob(self, x: Tensor, c: Tensor | None) -> Tensor: ...

    def sample(self, c: Tensor | None, z: Tensor | None = None, n: int | None = None
               ) -> Tensor: ...


class ConditionalFlow(nn.Module, abc.ABC):
    """Base class: ``log_prob`` and ``sample`` from ``forward`` and ``inverse``.

    Attributes:
        features: Dimension D of x and z.
        context: Dimension C of the raw context c (0: unconditional, pass ``c=None``).
    """

    def __init__(self, features: int, context: int) -> None:
        super().__init__()
        self.features = features
        self.context = context

    @abc.abstractmethod
    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(z (N, D), log|det dz/dx| (N,))``."""

    @abc.abstractmethod
    def inverse(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """Noise -> data: ``x (N, D)``."""

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """``log p(x | c)`` in nats, shape (N,)."""
        z, ladj = self.forward(x, c)
        return standard_normal_log_prob(z) + ladj

    def sample(self, c: Tensor | None = None, z: Tensor | None = None, n: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Samples (N, D); N from ``c`` (or ``n`` when unconditional), z ~ N(0, 1) if None."""
        if z is None:
            if c is not None:
                n, ref = len(c), c
            else:
                ref = next(self.parameters())
                if n is None:
                    raise ValueError("sample: pass c, z or n")
            z = self.noise(n, ref, generator)
        return self.inverse(z, c)

    def noise(self, n: int, ref: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Base-distribution draws (n, D) with ``ref``'s dtype and device, drawn on the CPU
        (or the generator's device) so that a seed gives the same samples on every device."""
        z = torch.randn(n, self.features, generator=generator, dtype=ref.dtype,
                        device="cpu" if generator is None else generator.device)
        return z.to(ref.device)
