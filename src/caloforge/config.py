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

import math
import os
from pathlib import Path
from typing import Any

import yaml

from caloforge.errors import ConfigError
from caloforge.training import TrainConfig


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (plain
    YAML keeps the last silently, so ``lr`` written twice would be half ignored)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if dup:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML recipe; raise :class:`ConfigError` (one line) when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: expected a YAML config file, found no such file")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}[{exc.key}]: expected each key once per mapping, found it "
                          f"twice (line {exc.line})") from None
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
    if "progress" in d and not isinstance(d["progress"], bool):  # checked before --quiet
        raise ConfigError(f"{where[:-1]}.progress]: expected true or false, found "
                          f"{d['progress']!r}")
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


#: Integer keys that may be 0 (or any integer, for seeds); every other integer must be >= 1.
_INT_MIN = {"seed": None, "noise_seed": None, "embedding": 0}
#: Upper bounds of sizes (a recipe typo must not ask for terabytes); others: 10^8.
_INT_MAX = {"transforms": 1024, "bins": 1024, "embedding": 65536}
MAX_WIDTH = 65536
#: Float keys that must be > 0 (every other float must be >= 0); ``dropout`` must be < 1.
_FLOAT_POSITIVE = ("bound", "alpha", "u0_max", "layer_eps", "logit_alpha", "u_scale",
                   "max_voxel_mev")


def check_values(given: Any, defaults: dict[str, Any], where: str,
                 skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``defaults`` updated with the mapping ``given``, checked at every nesting level.

    Unknown keys are refused, and each value must have the type of its default: mappings
    (checked recursively), ``hidden`` (a non-empty list of positive integers), ``k`` (two
    integers 1 <= k_min <= k_max), booleans, integers (>= 1 unless a seed or
    ``embedding``), numbers (finite, >= 0; > 0 for scales and bounds; ``dropout`` < 1) and
    strings. Keys in ``skip`` are left to the caller.

    Args:
        given: The recipe's section (None: all defaults).
        defaults: The section's defaults (its keys are the allowed keys).
        where: ``file[section]`` prefix of the messages, e.g. ``configs/x.yaml[flow]``.

    Raises:
        ConfigError: one line naming the file, the key, what was expected and what was found.
    """
    import copy

    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(given).__name__}")
    out = copy.deepcopy(defaults)
    file, _, sect = where.partition("[")
    sect = sect.rstrip("]")
    for key, val in given.items():
        w = f"{file}[{sect + '.' if sect else ''}{key}]"
        if key not in defaults:
            raise ConfigError(f"{w}: expected one of {', '.join(map(str, defaults))}, found "
                              f"unknown key {key!r}")
        out[key] = val
        if key in skip:
            continue
        ref = defaults[key]
        if isinstance(ref, dict):
            out[key] = check_values(val, ref, w)
        elif key == "hidden":
            if not (isinstance(val, list | tuple) and 0 < len(val) <= 64 and all(
                    isinstance(h, int) and not isinstance(h, bool) and 0 < h <= MAX_WIDTH
                    for h in val)):
                raise ConfigError(f"{w}: expected a non-empty list of at most 64 integers "
                                  f"1..{MAX_WIDTH}, found {val!r}")
            out[key] = [int(h) for h in val]
        elif key == "k":
            if not (isinstance(val, list | tuple) and len(val) == 2
                    and all(isinstance(h, int) and not isinstance(h, bool) for h in val)
                    and 1 <= val[0] <= val[1]):
                raise ConfigError(f"{w}: expected [k_min, k_max] with 1 <= k_min <= k_max, "
                                  f"found {val!r}")
        elif isinstance(ref, bool):
            if not isinstance(val, bool):
                raise ConfigError(f"{w}: expected true or false, found {val!r}")
        elif isinstance(ref, int):
            low, high = _INT_MIN.get(key, 1), _INT_MAX.get(key, 10**8)
            if (not isinstance(val, int) or isinstance(val, bool)
                    or (low is not None and not low <= val <= high)):
                want = "an integer" if low is None else f"an integer {low}..{high}"
                raise ConfigError(f"{w}: expected {want}, found {val!r}")
        elif isinstance(ref, float):
            if isinstance(val, str):  # YAML reads 1e-3 (no dot) as a string
                try:
                    val = float(val)
                except ValueError:
                    pass
            ok = (isinstance(val, int | float) and not isinstance(val, bool)
                  and math.isfinite(val) and val >= 0)
            if ok and key in _FLOAT_POSITIVE:
                ok = val > 0
            if ok and key == "dropout":
                ok = val < 1
            if not ok:
                rng = ("a number in [0, 1)" if key == "dropout" else "a number > 0"
                       if key in _FLOAT_POSITIVE else "a finite number >= 0")
                raise ConfigError(f"{w}: expected {rng}, found {val!r}")
            out[key] = float(val)
        elif isinstance(ref, str):
            if not isinstance(val, str):
                raise ConfigError(f"{w}: expected a string, found {val!r}")
    return out
