"""The CaloChallenge evaluation: histograms and separation power, classifier tests, FPD/KPD,
PRDC, pictures and an HTML/JSON report (definitions: spec/EVALUATION.md).

``evaluate`` is imported lazily so that the fast metrics do not import torch.
"""

from __future__ import annotations

from typing import Any

from caloforge.evaluation.compare import mean_separation_power
from caloforge.evaluation.separation import separation_power

__all__ = ["evaluate", "mean_separation_power", "separation_power"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from caloforge.evaluation.runner import evaluate

        return evaluate
    raise AttributeError(f"module 'caloforge.evaluation' has no attribute {name!r}")
