"""The "mean histogram difference" training monitor of the normalizing-flow seed talk.

A flow's validation likelihood is not what the CaloChallenge judges: the talk instead keeps the
epoch whose generated showers best match validation showers in the high-level-feature
histograms. :func:`histogram_score` builds that score for :func:`caloforge.training.fit`
(``val_score``): generate showers at the incident energies of a fixed validation subset and
return the mean separation power over the high-level-feature histograms
(:func:`caloforge.evaluation.mean_separation_power`; 0 = identical, 1 = disjoint).

Models call :func:`monitor_score` with a stage's training options; it returns this score when
they say ``monitor: histogram``.
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

__all__ = ["histogram_score", "monitor_score"]


def monitor_score(cfg: TrainConfig, sample: Callable[[Tensor], Tensor], val: ShowerSet | None,
                  source: str = "training") -> Callable[[nn.Module], float] | None:
    """The ``val_score`` a stage's ``monitor`` option asks for: None for ``loss`` (the
    trainer's default score), :func:`histogram_score` for ``histogram``."""
    if cfg.monitor != "histogram":
        return None
    return histogram_score(sample, val, cfg.monitor_samples, cfg.seed, source)


def histogram_score(sample: Callable[[Tensor], Tensor], val: ShowerSet | None, n: int,
                    seed: int = 0, source: str = "training") -> Callable[[nn.Module], float]:
    """A ``val_score`` callable: mean separation power of ``n`` generated vs validation showers.

    Args:
        sample: The model's sampler (incident energies (N,) MeV -> showers (N, V) MeV).
        val: Validation showers (required).
        n: Showers per evaluation (a fixed random subset of ``val`` if it is larger).
        seed: Seed of the subset and of the sampling noise (the same noise every epoch, so
            epochs differ only by the weights; the global RNG state is restored afterwards).
        source: Config location named in the error when ``val`` is missing.
    """
    if val is None or len(val) == 0:
        raise ConfigError(f"{source}[monitor]: 'histogram' compares generated with validation "
                          "showers: expected validation data (--val), found none")
    from caloforge.evaluation import mean_separation_power

    ref = subsample(val, n, seed) if len(val) > n else val
    e_inc = torch.as_tensor(np.asarray(ref.e_inc, dtype=np.float64))

    def score(_module: nn.Module) -> float:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            showers = sample(e_inc)
        gen = ShowerSet(ref.e_inc, showers.detach().to("cpu", torch.float64).numpy(),
                        ref.geometry)
        return mean_separation_power(gen, ref)

    return score
