"""Generators. Every model subclasses :class:`~caloforge.models.base.GeneratorModel`.

Models register themselves by name in :data:`REGISTRY` (``caloforge train --model NAME``);
registration is lazy so that importing caloforge stays cheap.
"""

from __future__ import annotations

import importlib

from caloforge.errors import ConfigError

#: model name -> "module:Class"
REGISTRY: dict[str, str] = {
    "caloflow": "caloforge.models.caloflow:CaloFlow",
    "caloflow-student": "caloforge.models.caloflow:CaloFlowStudent",
    "caloinn": "caloforge.models.caloinn:CaloINN",
    "caloman": "caloforge.models.caloman:CaloMan",
    "vae-inn": "caloforge.models.caloman:VAEINN",
    "icaloflow": "caloforge.models.icaloflow:ICaloFlow",
    "icaloflow-student": "caloforge.models.icaloflow:ICaloFlowStudent",
    "l2lflows": "caloforge.models.l2lflows:L2LFlows",
}


def model_class(name: str) -> type:
    """The model class registered as ``name``."""
    if name not in REGISTRY:
        raise ConfigError(f"--model: expected one of {', '.join(sorted(REGISTRY))}, found {name!r}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
