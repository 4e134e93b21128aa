"""Model recipes: the YAML files under ``configs/<model>/<dataset>.yaml``.

Every recipe is one mapping shared by all models::

    model: caloinn            # registry name (caloforge.models.REGISTRY)
    dataset: 1-photons        # the geometry the model is built for (caloforge.geometry.DATASETS)
    flow: {...}               # model-specific architecture keys
    preprocessing: {...}      # model-specific preprocessing keys
    training:                 # caloforge.training.TrainConfig fields, for a single-stage model
      epochs: 100
      batch_size: 512
    # or, for a multi-stage model, one TrainConfig mapping per stage:
    # training: {flow1: {epochs: 100}, flow2: {epochs: 100}}

:func:`load_config` reads and checks the top level; :func:`train_config` turns the
``training`` section (or one stage of it) into a :class:`~caloforge.training.TrainConfig`;
:func:`override_training` applies command-line overrides (``--device``, ``--seed``) to every
stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from caloforge.errors import ConfigError
from caloforge.training import TrainConfig


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML recipe; raise :class:`ConfigError` (one line) when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: expected a YAML config file, found no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: expected valid YAML, found a syntax error{at} "
                          f"({problem})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: expected a readable text file, found "
                          f"{type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found "
                          f"{type(data).__name__}")
    for key in ("model", "dataset"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}[{key}]: expected a string, found {data[key]!r}")
    training = data.get("training")
    if training is not None and not isinstance(training, dict):
        raise ConfigError(f"{path}[training]: expected a mapping, found "
                          f"{type(training).__name__}")
    data.setdefault("_source", str(path))
    return data


def is_multistage(config: dict[str, Any]) -> bool:
    """Whether ``training`` holds one mapping per stage rather than TrainConfig fields."""
    training = config.get("training") or {}
    return bool(training) and all(isinstance(v, dict) for v in training.values())


def section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The mapping ``config[name]`` ({} when absent); :class:`ConfigError` if not a mapping."""
    value = config.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{config.get('_source', 'config')}[{name}]: expected a mapping, "
                          f"found {type(value).__name__}")
    return value


def train_config(config: dict[str, Any], stage: str | None = None, epochs: int | None = None,
                 progress: bool = True) -> TrainConfig:
    """The :class:`TrainConfig` of the whole ``training`` section or of one ``stage``.

    Args:
        config: The recipe.
        stage: Stage name for multi-stage models (``training: {stage: {...}}``).
        epochs: Overrides the epoch count (``caloforge train --epochs``).
        progress: Show progress bars.
    """
    source = config.get("_source", "config")
    training = section(config, "training")
    if stage is not None:
        d = training.get(stage, {})
        where = f"{source}[training.{stage}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping, found {type(d).__name__}")
    else:
        d, where = training, f"{source}[training]"
    d = dict(d)
    if epochs is not None:
        d["epochs"] = epochs
    d.setdefault("progress", progress)
    if not progress:
        d["progress"] = False
    return TrainConfig.from_dict(d, where)


def override_training(config: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``fields`` (those not None) set in every training stage."""
    fields = {k: v for k, v in fields.items() if v is not None}
    config = dict(config)
    training = dict(section(config, "training"))
    if is_multistage(config):
        training = {k: {**v, **fields} for k, v in training.items()}
    else:
        training.update(fields)
    config["training"] = training
    return config
