"""The model contract every caloforge generator follows.

A generator is a :class:`torch.nn.Module` with

* ``__init__(geometry, config)`` — builds the networks from the recipe (the YAML dict);
* ``fit(train, val, run_dir, *, resume, epochs, **options) -> history`` — trains from
  :class:`~caloforge.data.ShowerSet`s (in memory) or from files, lists of files or
  :class:`~caloforge.stream.ShowerSource`s (streamed in bounded memory: statistics in one
  pass, then per-batch preprocessing) with :func:`caloforge.training.fit`, checkpointing into
  ``run_dir``; ``options`` carries model-specific inputs (e.g. ``teacher=`` for a student);
* ``sample(e_inc) -> voxels`` — showers in MeV, shape (N, n_voxels), for incident energies
  ``e_inc`` (N,) in MeV;
* ``log_prob(...)`` where the model has one;
* ``save(path)`` / :func:`load_model(path)` — one self-describing file holding the weights, the
  config, the fitted preprocessing (as module buffers or ``extra_state``), the geometry and the
  caloforge version.

The CLI, the trainer, the benchmarks and the ONNX export only use this contract.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caloforge.atomic import atomic_path
from caloforge.data import ShowerSet
from caloforge.errors import CaloforgeError, ConfigError, DataError
from caloforge.geometry import Geometry


class GeneratorModel(nn.Module, abc.ABC):
    """Base class: holds ``geometry`` and ``config``; subclasses build their networks in
    ``__init__(geometry, config)`` so that :func:`load_model` can rebuild them.

    Attributes:
        name: Registry name (``caloflow``, ``caloinn``, ``caloman``, ...).
    """

    name: str = "base"
    #: Registry name of the teacher a student distils from (``caloforge train --teacher``);
    #: None for models trained from data alone.
    teacher_model: str | None = None
    #: The model-specific top-level recipe keys (besides ``model``, ``dataset``, ``training``,
    #: ``description`` and ``_``-prefixed ones); any other key is refused. None: the model
    #: checks its keys itself.
    sections: tuple[str, ...] | None = None

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__()
        self.geometry = geometry
        self.config = dict(config)
        if self.sections is not None:
            allowed = (*self.sections, "model", "dataset", "training", "description")
            for key in self.config:
                if key not in allowed and not str(key).startswith("_"):
                    raise ConfigError(f"{self.config.get('_source', 'config')}[{key}]: expected "
                                      f"one of {', '.join(allowed)}, found unknown key {key!r}")

    # -- the contract -----------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            **options: Any) -> dict[str, list[float]]:
        """Train on ``train`` (hyperparameters from ``self.config``; ``epochs`` overrides every
        stage's epoch count); return the history (metric name -> per-epoch values)."""

    @abc.abstractmethod
    def sample(self, e_inc: torch.Tensor) -> torch.Tensor:
        """Showers (N, n_voxels) in MeV for incident energies ``e_inc`` (N,) in MeV.

        Implementations run without gradients (``torch.inference_mode``)."""

    def compiled_sampler(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A sampler with :meth:`sample`'s contract that runs through ``torch.compile``.

        The default compiles :meth:`sample` whole (static shapes: call it with one batch
        size). Models whose ``sample`` cannot be traced whole override this and compile their
        one-pass parts. The first call includes the compile time (tens of seconds)."""
        return torch.compile(self.sample, dynamic=False)

    def stage_tags(self) -> list[tuple[str, str]]:
        """The training stages in order, as ``(tag, label)``: the stage writes
        ``{tag}last.pt`` every epoch and ``{tag}final.pt`` when done
        (:func:`caloforge.training.fit`). ``caloforge info RUN_DIR`` reports from this which
        stages (for layer-by-layer models: which layers) are done. Single-stage models
        return ``[("", "model")]``."""
        stages = self.config.get("training") or {}
        if stages and all(isinstance(v, dict) for v in stages.values()):
            return [(f"{name}_", name) for name in stages]
        return [("", "model")]

    # -- persistence ------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """The self-describing dictionary :meth:`save` writes."""
        from caloforge import __version__

        return {"model": self.name, "config": self.config, "geometry": self.geometry.to_dict(),
                "state_dict": self.state_dict(), "caloforge_version": __version__,
                "trained_e_inc": getattr(self, "trained_e_inc", None)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (replaces an existing file)."""
        with atomic_path(path, overwrite=True) as tmp:
            torch.save(self.checkpoint(), tmp)
        return Path(path)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"
               ) -> GeneratorModel:
    """Rebuild a model from a file written by :meth:`GeneratorModel.save`."""
    from caloforge.models import model_class

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: expected a caloforge checkpoint, found no such file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for damaged files
        raise DataError(f"{path}: expected a caloforge checkpoint, found unreadable data "
                        f"({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise DataError(f"{path}[model]: expected a caloforge model checkpoint, found "
                        f"{type(ckpt).__name__} without 'model'/'state_dict'")
    try:
        cls = model_class(ckpt["model"])
        model = cls(Geometry.from_dict(ckpt["geometry"]), ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
    except CaloforgeError as exc:
        raise DataError(f"{path}: expected a loadable caloforge checkpoint, found "
                        f"{' '.join(str(exc).split())}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign dictionary
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(f"{path}[state_dict]: expected a loadable caloforge checkpoint, found "
                        f"{type(exc).__name__} ({msg})") from None
    try:
        lo, hi = (float(v) for v in ckpt.get("trained_e_inc"))
        model.trained_e_inc = (lo, hi)
    except (TypeError, ValueError):  # not recorded (older checkpoints)
        model.trained_e_inc = None
    model.eval()
    return model
