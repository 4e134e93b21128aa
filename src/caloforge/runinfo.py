"""The state of a training run directory: which stages (for layer-by-layer models, which
layers) are done, which one is in progress and how far it got.

``caloforge train`` leaves in ``RUN_DIR``: ``config.yaml`` (the recipe), per stage
``{tag}last.pt`` and ``{tag}metrics.csv`` after every epoch and ``{tag}final.pt`` when the stage
is done (:func:`caloforge.training.fit`), and ``model.pt`` when the whole model is. The stages
and their order come from the model (:meth:`caloforge.models.base.GeneratorModel.stage_tags`),
so this module reads only small files: the recipe and the metrics CSVs, never the weights.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import yaml

from caloforge.errors import DataError


@dataclasses.dataclass
class StageState:
    """One training stage of a run.

    Attributes:
        tag: File prefix of the stage (``flow1_``; ``""`` for single-stage models).
        label: Readable name (``flow-1 (layer energies)``, ``layer 7``).
        status: ``done``, ``in progress`` or ``not started``.
        epochs_done: Epochs with a row in ``{tag}metrics.csv``.
        epochs_planned: The recipe's epoch count for the stage (None if it does not say).
        last: The last row of the metrics CSV (column -> value).
    """

    tag: str
    label: str
    status: str
    epochs_done: int
    epochs_planned: int | None
    last: dict[str, float]


def _metrics(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
    return rows


def read_recipe(run_dir: Path) -> dict:
    """``RUN_DIR/config.yaml`` as a mapping (:class:`DataError` if missing or unreadable)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{path}: expected the run's recipe written by caloforge train, found "
                        f"no such file")
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: expected a YAML recipe, found unreadable data "
                        f"({type(exc).__name__})") from None
    if not isinstance(recipe, dict) or "model" not in recipe:
        raise DataError(f"{path}[model]: expected a caloforge recipe naming its model, found "
                        f"{type(recipe).__name__}")
    return recipe


def _planned(recipe: dict, label_key: str | None) -> int | None:
    training = recipe.get("training") or {}
    if not isinstance(training, dict):
        return None
    d = training.get(label_key, training) if label_key is not None else training
    epochs = d.get("epochs") if isinstance(d, dict) else None
    return int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def run_state(run_dir: str | os.PathLike) -> tuple[dict, list[StageState], bool]:
    """``(recipe, stages, complete)`` of a run directory; ``complete``: ``model.pt`` exists."""
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    run_dir = Path(run_dir)
    recipe = read_recipe(run_dir)
    try:
        cls = model_class(str(recipe["model"]))
        model = cls(Geometry.resolve(str(recipe.get("dataset"))), recipe)
        tags = model.stage_tags()
    except Exception as exc:  # noqa: BLE001 - a recipe the installed caloforge cannot build
        raise DataError(f"{run_dir / 'config.yaml'}: expected a recipe this caloforge can "
                        f"build, found {' '.join(str(exc).split())[:160]}") from None
    training = recipe.get("training") or {}
    stages = []
    for tag, label in tags:
        key = tag[:-1] if tag.endswith("_") and tag[:-1] in training else None
        rows = _metrics(run_dir / f"{tag}metrics.csv")
        if (run_dir / f"{tag}final.pt").is_file():
            status = "done"
        elif rows or (run_dir / f"{tag}last.pt").is_file():
            status = "in progress"
        else:
            status = "not started"
        stages.append(StageState(tag, label, status, len(rows), _planned(recipe, key),
                                 rows[-1] if rows else {}))
    return recipe, stages, (run_dir / "model.pt").is_file()


def describe_checkpoint(path: str | os.PathLike) -> list[str]:
    """Lines for ``caloforge info MODEL.pt``: model, geometry, parameter counts per part, and
    the run's stages when the file sits in its run directory."""
    from caloforge.models.base import load_model

    path = Path(path)
    model = load_model(path)
    geo = model.geometry
    lines = [f"checkpoint:  {path}",
             f"model:       {model.name} (caloforge checkpoint)",
             f"geometry:    {geo.name} ({geo.particle}), {geo.n_voxels} voxels, "
             f"{geo.n_layers} layers"]
    total = sum(p.numel() for p in model.parameters())
    parts = ", ".join(f"{name} {sum(p.numel() for p in child.parameters()):,}"
                      for name, child in model.named_children()
                      if any(True for _ in child.parameters()))
    lines.append(f"parameters:  {total:,}" + (f" ({parts})" if parts else ""))
    if model.trained_e_inc is not None:
        lo, hi = model.trained_e_inc
        lines.append(f"trained on:  E_inc {lo:.6g} .. {hi:.6g} MeV")
    if (path.parent / "config.yaml").is_file():
        try:
            lines += describe(path.parent)[1:]
        except DataError:
            pass  # a checkpoint copied next to some other recipe: the model lines suffice
    return lines


def describe(run_dir: str | os.PathLike) -> list[str]:
    """Lines for ``caloforge info RUN_DIR``."""
    recipe, stages, complete = run_state(run_dir)
    done = sum(s.status == "done" for s in stages)
    lines = [f"run:         {Path(run_dir)}",
             f"model:       {recipe['model']} (dataset {recipe.get('dataset')})",
             f"stages:      {done} of {len(stages)} done"
             + ("; model.pt written" if complete else "; no model.pt yet")]
    for s in stages:
        plan = f"/{s.epochs_planned}" if s.epochs_planned is not None else ""
        loss = ""
        if "train_loss" in s.last:
            loss = f", train loss {s.last['train_loss']:.5g}"
            if "val_loss" in s.last:
                loss += f", val loss {s.last['val_loss']:.5g}"
        lines.append(f"  {s.label:<28} {s.status:<12} epochs {s.epochs_done}{plan}{loss}")
    return lines
