"""Conditional normalizing flows on top of zuko, all with one interface
(:class:`~caloforge.flows.base.ConditionalFlow`): ``forward(x, c) -> (z, log_abs_det)``
(data -> noise), ``inverse(z, c) -> x`` (noise -> data), ``log_prob(x, c) -> (N,)``,
``sample(c, z=None) -> x``.

* :class:`~caloforge.flows.coupling.CouplingRQSFlow`: RQS coupling (CaloINN, CaloMan latent flow);
* :mod:`caloforge.flows.autoregressive`: ``MAF`` teacher / ``IAF`` student (CaloFlow), also
  importable from here.
"""

from __future__ import annotations

from typing import Any

from caloforge.flows.actnorm import ActNorm
from caloforge.flows.base import ConditionalFlow, Flow, standard_normal_log_prob
from caloforge.flows.coupling import CouplingRQSFlow, Permutation, RQSCoupling
from caloforge.flows.embedding import MLP, ContextEmbedding, ResidualMLP, hyper_network

__all__ = ["IAF", "MAF", "MLP", "ActNorm", "ConditionalFlow", "ContextEmbedding",
           "CouplingRQSFlow", "Flow", "Permutation", "RQSCoupling", "ResidualMLP",
           "hyper_network", "standard_normal_log_prob"]


def __getattr__(name: str) -> Any:
    """Lazy ``MAF`` / ``IAF`` (defined in :mod:`caloforge.flows.autoregressive`)."""
    if name in ("MAF", "IAF"):
        from caloforge.flows import autoregressive

        return getattr(autoregressive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
