"""Conditional normalizing flows on top of zuko, all with one interface
(:class:`~caloforge.flows.base.ConditionalFlow`): ``forward(x, c) -> (z, log_abs_det)``
(data -> noise), ``inverse(z, c) -> x`` (noise -> data), ``log_prob(x, c) -> (N,)``,
``sample(c, z=None) -> x``.

* :class:`~caloforge.flows.coupling.CouplingRQSFlow`: RQS coupling (CaloINN, CaloMan latent flow);
* :mod:`caloforge.flows.autoregressive`: ``MAF`` teacher / ``IAF`` student (CaloFlow).
"""

from __future__ import annotations

from caloforge.flows.actnorm import ActNorm
from caloforge.flows.autoregressive import IAF, MAF
from caloforge.flows.base import ConditionalFlow, Flow, standard_normal_log_prob
from caloforge.flows.coupling import CouplingRQSFlow, Permutation, RQSCoupling
from caloforge.flows.embedding import MLP, ContextEmbedding, ResidualMLP, hyper_network

__all__ = ["IAF", "MAF", "MLP", "ActNorm", "ConditionalFlow", "ContextEmbedding",
           "CouplingRQSFlow", "Flow", "Permutation", "RQSCoupling", "ResidualMLP",
           "hyper_network", "standard_normal_log_prob"]

