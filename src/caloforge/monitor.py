"""The "mean histogram difference" training monitor of the normalizing-flow seed talk.

A flow's validation likelihood is not what the CaloChallenge judges: the talk instead keeps the
epoch whose generated showers best match validation showers in the high-level-feature
histograms. :func:`histogram_score` builds that score for :func:`caloforge.training.fit`
(``val_score``): generate showers at the incident energies of a fixed validation subset and
return the mean separation power over the high-level-feature histograms
(:func:`caloforge.evaluation.mean_separation_power`; 0 = identical, 1 = disjoint).

``monitor: classifier`` uses a judge that sees instead (:func:`classifier_score`): the AUC of a
quick boosted-tree classifier (:func:`caloforge.evaluation.gbdt.gbdt_test`, 100 iterations) on
the high-level-feature vector of generated vs validation showers (0.5 = the classifier found no
difference). Both scores are computed every ``monitor_every`` epochs.

Models call :func:`monitor_score` with a stage's training options; it returns the score their
``monitor`` option names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from caloforge.data import ShowerSet, subsample
from caloforge.errors import ConfigError

if TYPE_CHECKING:
    from caloforge.training import TrainConfig

__all__ = ["classifier_score", "histogram_score", "monitor_score"]


def monitor_score(cfg: TrainConfig, sample: Callable[[Tensor], Tensor], val: ShowerSet | None,
                  source: str = "training") -> Callable[[nn.Module], float] | None:
    """The ``val_score`` a stage's ``monitor`` option asks for: None for ``loss`` (the
    trainer's default score), :func:`histogram_score` for ``histogram``,
    :func:`classifier_score` for ``classifier``; evaluated every ``monitor_every`` epochs."""
    if cfg.monitor == "loss":
        return None
    make = histogram_score if cfg.monitor == "histogram" else classifier_score
    return every(make(sample, val, cfg.monitor_samples, cfg.seed, source,
                      monitor=cfg.monitor), cfg.monitor_every)


def every(score: Callable[[nn.Module], float], k: int) -> Callable[[nn.Module], float]:
    """``score`` evaluated on calls 1, 1 + k, 1 + 2k, ...; the calls between return the last
    value."""
    if k == 1:
        return score
    state = {"calls": 0, "last": float("inf")}

    def sparse(module: nn.Module) -> float:
        if state["calls"] % k == 0:
            state["last"] = score(module)
        state["calls"] += 1
        return state["last"]

    return sparse


def _generate_like(sample: Callable[[Tensor], Tensor], ref: ShowerSet, seed: int) -> ShowerSet:
    """Showers generated at the incident energies of ``ref``, with fixed noise (the global
    RNG state is restored afterwards)."""
    e_inc = torch.as_tensor(np.asarray(ref.e_inc, dtype=np.float64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        showers = sample(e_inc)
    return ShowerSet(ref.e_inc, showers.detach().to("cpu", torch.float64).numpy(), ref.geometry)


def _monitor_reference(val: ShowerSet | None, n: int, seed: int, source: str,
                       monitor: str) -> ShowerSet:
    if val is None or len(val) == 0:
        raise ConfigError(f"{source}[monitor]: {monitor!r} compares generated with validation "
                          "showers: expected validation data (--val), found none")
    return subsample(val, n, seed) if len(val) > n else val


def classifier_score(sample: Callable[[Tensor], Tensor], val: ShowerSet | None, n: int,
                     seed: int = 0, source: str = "training", monitor: str = "classifier"
                     ) -> Callable[[nn.Module], float]:
    """A ``val_score`` callable: boosted-tree AUC of ``n`` generated vs validation showers on
    the ``cls-high`` vector (fixed subset and noise as :func:`histogram_score`)."""
    from caloforge.evaluation.gbdt import gbdt_test
    from caloforge.evaluation.inputs import high_level_vector
    from caloforge.features import high_level_features, pair_sums

    ref = _monitor_reference(val, n, seed, source, monitor)
    thr = ref.geometry.eval_threshold
    x_ref = None

    def score(_module: nn.Module) -> float:
        nonlocal x_ref
        gen = _generate_like(sample, ref, seed)
        sums = pair_sums(gen, ref)
        if x_ref is None or sums != "file":  # one sum dtype for both sides
            x_ref = high_level_vector(high_level_features(ref, thr, sums), ref)
        x_gen = high_level_vector(high_level_features(gen, thr, sums), gen)
        x_gen = np.where(np.isfinite(x_gen), x_gen, -1e3)  # a broken shower is easy to spot
        return gbdt_test(x_gen, x_ref, ref.geometry.name, seed=seed, max_iter=100).auc

    return score


def histogram_score(sample: Callable[[Tensor], Tensor], val: ShowerSet | None, n: int,
                    seed: int = 0, source: str = "training", monitor: str = "histogram"
                    ) -> Callable[[nn.Module], float]:
    """A ``val_score`` callable: mean separation power of ``n`` generated vs validation showers.

    Args:
        sample: The model's sampler (incident energies (N,) MeV -> showers (N, V) MeV).
        val: Validation showers (required).
        n: Showers per evaluation (a fixed random subset of ``val`` if it is larger).
        seed: Seed of the subset and of the sampling noise (the same noise every epoch, so
            epochs differ only by the weights; the global RNG state is restored afterwards).
        source: Config location named in the error when ``val`` is missing.
        monitor: The option's value, named in that error.
    """
    from caloforge.evaluation import mean_separation_power

    ref = _monitor_reference(val, n, seed, source, monitor)

    def score(_module: nn.Module) -> float:
        return mean_separation_power(_generate_like(sample, ref, seed), ref)

    return score
