"""CaloFlow: a two-flow generator (layer energies, then normalised shower shapes).

* **Flow I** learns ``p(E_1..E_L | E_inc)`` through CaloFlow's u-variables
  (``u_0 = sum_i E_i / (2.42 E_inc)``, ``u_n = E_{n-1} / sum_{k>=n-1} E_k``) in logit space,
  conditioned on ``log10(E_inc / 33.3 GeV)``. A small MAF (6 MADE-RQS blocks, 2 x 64 hidden).
* **Flow II** learns ``p(shape | E_inc, E_1..E_L)`` of the layer-normalised, logit-transformed
  voxels (``/1e5`` MeV, uniform dequantisation noise <= 1 keV), conditioned on
  ``log10(E_inc / 33.3 GeV)`` and ``log10(E_i / 100 GeV + 1e-8) - 1``.
  :class:`CaloFlow` uses a MAF (the v1 "teacher": exact likelihood training, sampling needs
  one pass per voxel); :class:`CaloFlowStudent` an IAF with the teacher's permutations (the v2
  "student": one-pass sampling), trained by probability density distillation from a frozen
  teacher.

Generation: E_i from flow I -> shape from flow II -> inverse logit -> each layer renormalised
to its E_i -> clamp to [0, 1e6] MeV -> voxels below ``threshold_mev`` (0.01 MeV) set to 0.

Recipe (YAML; every key has a default)::

    model: caloflow
    dataset: 1-photons
    preprocessing: {logit_alpha: 1.0e-6, noise_mev: 1.0e-3, u_scale: 2.42,
                    threshold_mev: 0.01, max_voxel_mev: 1.0e6}
    flow1: {transforms: 6, hidden: [64, 64], bins: 8, bound: 14.0, dropout: 0.0, seed: 1}
    flow2: {transforms: 8, hidden: [378], bins: 8, bound: 14.0, dropout: 0.05, seed: 2}
    sampling: {batch_size: 1000}
    training: {flow1: {<TrainConfig>}, flow2: {<TrainConfig>}}

The student recipe has ``flow2: {hidden, dropout}``, ``distillation: {beta, fully_guided,
kl_samples, state_weight, param_weight}`` and ``training: {student: {...}}``; the number of
blocks, bins, bound, permutations, flow I and the preprocessing are copied from the teacher at
``fit`` time (and stored in the student's config under ``teacher``).

References:
    C. Krause, D. Shih, "CaloFlow: Fast and Accurate Generation of Calorimeter Showers with
    Normalizing Flows", arXiv:2106.05285.
    C. Krause, D. Shih, "CaloFlow II: Even Faster and Still Accurate Generation of
    Calorimeter Showers with Normalizing Flows", arXiv:2110.11377.
    C. Krause, I. Pang, D. Shih, "CaloFlow for CaloChallenge Dataset 1", arXiv:2210.14245.
    A. van den Oord et al., "Parallel WaveNet" (probability density distillation),
    arXiv:1711.10433.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from caloforge import preprocessing as pp
from caloforge import stream
from caloforge.config import train_config
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError, DataError, GeometryError
from caloforge.flows.autoregressive import IAF, MAF, layer_permutations, random_permutations
from caloforge.geometry import Geometry
from caloforge.models.base import GeneratorModel
from caloforge.monitor import monitor_score
from caloforge.training import TrainConfig
from caloforge.training import fit as train_stage

__all__ = ["CaloFlow", "CaloFlowStudent", "distillation_loss", "reverse_kl"]

PREPROCESSING_DEFAULTS: dict[str, float] = {
    "logit_alpha": pp.LOGIT_ALPHA,  # logit regulariser
    "noise_mev": 1e-3,  # uniform dequantisation noise U[0, noise_mev] MeV per voxel
    "u_scale": pp.U0_SCALE,  # u_0 = sum E_i / (u_scale E_inc)
    "threshold_mev": 0.01,  # generated voxels below this are set to 0
    "max_voxel_mev": 1e6,  # generated voxels are clamped to [0, max_voxel_mev]
}
FLOW1_DEFAULTS: dict[str, Any] = {"transforms": 6, "hidden": [64, 64], "bins": 8,
                                  "bound": 14.0, "dropout": 0.0, "seed": 1}
FLOW2_DEFAULTS: dict[str, Any] = {"transforms": 8, "hidden": [378], "bins": 8, "bound": 14.0,
                                  "dropout": 0.05, "seed": 2}
STUDENT_FLOW2_DEFAULTS: dict[str, Any] = {"hidden": [736], "dropout": 0.0}
DISTILLATION_DEFAULTS: dict[str, Any] = {
    "beta": 0.5,  # total loss (1 - beta) L_z + beta L_x
    "fully_guided": False,  # also match intermediate states and spline parameters per block
    "state_weight": 1.0,  # weight of the per-block state terms (fully guided)
    "param_weight": 1.0,  # weight of the per-block spline-parameter terms (fully guided)
    "kl_samples": 2000,  # conditions used for the reverse-KL validation score
}
SAMPLING_DEFAULTS: dict[str, Any] = {"batch_size": 1000, "cpu_batch_size": None}


# --------------------------------------------------------------------------------------------
# config checks


def _section(config: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``config[name]``; unknown keys and bad values -> ConfigError."""
    source = config.get("_source", "config")
    value = config.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}[{name}]: expected a mapping, found {type(value).__name__}")
    for key in value:
        if key not in defaults:
            raise ConfigError(f"{source}[{name}.{key}]: expected one of "
                              f"{', '.join(defaults)}, found unknown key {key!r}")
    out = {**copy.deepcopy(defaults), **value}
    for key, val in out.items():
        where, ref = f"{source}[{name}.{key}]", defaults[key]
        if key == "cpu_batch_size":
            if val is not None and (not isinstance(val, int) or isinstance(val, bool)
                                    or not 1 <= val <= 10**8):
                raise ConfigError(f"{where}: expected null or a positive integer, found "
                                  f"{val!r}")
        elif key == "hidden":
            ok = (isinstance(val, list | tuple) and 0 < len(val) <= 64
                  and all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= 65536
                          for h in val))
            if not ok:
                raise ConfigError(f"{where}: expected a non-empty list of integers 1..65536, "
                                  f"found {val!r}")
            out[key] = [int(h) for h in val]
        elif isinstance(ref, bool):
            if not isinstance(val, bool):
                raise ConfigError(f"{where}: expected true or false, found {val!r}")
        elif isinstance(ref, int):
            if not isinstance(val, int) or isinstance(val, bool) or (
                    key != "seed" and not 1 <= val <= (1024 if key in ("transforms", "bins")
                                                       else 10**8)):
                raise ConfigError(f"{where}: expected a positive integer (sizes: at most 1024 "
                                  f"transforms and bins), found {val!r}")
        elif isinstance(ref, float):
            if not isinstance(val, int | float) or isinstance(val, bool) or not math.isfinite(val):
                raise ConfigError(f"{where}: expected a number, found {val!r}")
            out[key] = float(val)
            lo_ok = {"dropout": 0.0 <= val < 1.0, "beta": 0.0 <= val <= 1.0,
                     "threshold_mev": val >= 0.0, "noise_mev": val >= 0.0,
                     "logit_alpha": 0.0 < val < 0.5}.get(key, val > 0.0)
            if not lo_ok:
                raise ConfigError(f"{where}: expected a value in the allowed range, found {val!r}")
    return out


def _check_geometry(model: GeneratorModel, data: ShowerSet, what: str) -> None:
    if data.geometry.n_voxels != model.geometry.n_voxels:
        raise GeometryError(f"{what}[showers]: expected {model.geometry.n_voxels} voxels "
                            f"(geometry {model.geometry.name}), found {data.geometry.n_voxels}")


def _flow1(geometry: Geometry, cfg: dict[str, Any]) -> MAF:
    L = geometry.n_layers
    return MAF(L, 1, transforms=cfg["transforms"], bins=cfg["bins"], hidden=cfg["hidden"],
               bound=cfg["bound"], dropout=cfg["dropout"],
               permutations=random_permutations(L, cfg["transforms"], cfg["seed"]))


def _flow2_permutations(geometry: Geometry, cfg: dict[str, Any]) -> list[Tensor]:
    sizes = [layer.n_voxels for layer in geometry.layers]
    return layer_permutations(sizes, cfg["transforms"], cfg["seed"])


def _dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(module.parameters())
    return p.dtype, p.device


# --------------------------------------------------------------------------------------------
# generation helpers (also used by iCaloFlow and L2LFlows)


class LayerwiseSampler(Protocol):
    """A model that draws layer energies, then showers given them (CaloFlow, L2LFlows)."""

    geometry: Geometry
    sampling_cfg: dict[str, Any]

    def sample_layer_energies(self, e_inc: Tensor) -> Tensor: ...

    def sample_showers(self, e_inc: Tensor, e_layer: Tensor) -> Tensor: ...


def pass_size(sampling: dict[str, Any], device: torch.device) -> int:
    """Showers per sampling pass: ``sampling["cpu_batch_size"]`` on a CPU when the recipe
    sets it, else ``sampling["batch_size"]``. The published dataset-3 conv L2LFlows take 301
    instead of 506 ms per shower on one CPU thread in 100-shower passes (BENCHMARKS.md,
    "Sampling pass size on a CPU"): a 1,000-shower pass's conv activations (~58 MB each) leave
    the caches. A GPU wants the large passes."""
    cpu = sampling.get("cpu_batch_size")
    return int(cpu) if cpu is not None and device.type == "cpu" else int(sampling["batch_size"])


def generate_in_batches(model: LayerwiseSampler, e_inc: Tensor, empty_dtype: torch.dtype, *,
                        layers_as_showers: bool = False) -> tuple[Tensor, Tensor]:
    """``(showers (N, V), layer energies (N, L))`` in MeV for incident energies ``e_inc`` (N,)
    in MeV: ``model.sample_layer_energies`` then ``model.sample_showers`` on chunks of
    :func:`pass_size` showers without gradients, returned on ``e_inc``'s
    device.

    Args:
        empty_dtype: The dtype of the (empty) result when no chunk is drawn.
        layers_as_showers: Return the layer energies in the showers' dtype (else as drawn).

    Raises:
        DataError: An incident energy is not finite or not positive.
    """
    e_inc = torch.as_tensor(e_inc)
    e = e_inc.reshape(-1)
    if not torch.isfinite(e).all() or (e <= 0).any():
        raise DataError("e_inc: expected finite positive incident energies in MeV, found "
                        f"values in [{e.min().item():.4g}, {e.max().item():.4g}]")
    out, layers = [], []
    size = pass_size(model.sampling_cfg, next(model.parameters()).device)
    with torch.inference_mode():
        # (an empty e splits into one empty chunk, which the flows' reshapes refuse)
        for chunk in e.split(size) if len(e) else ():
            e_layer = model.sample_layer_energies(chunk)
            out.append(model.sample_showers(chunk, e_layer))
            layers.append(e_layer.to(out[-1].dtype) if layers_as_showers else e_layer)
    if not out:
        return (torch.zeros(0, model.geometry.n_voxels, dtype=empty_dtype),
                torch.zeros(0, model.geometry.n_layers, dtype=empty_dtype))
    return torch.cat(out).to(e_inc.device), torch.cat(layers).to(e_inc.device)


def finish_showers(shapes: Tensor, e_layer: Tensor, geometry: Geometry,
                   prep: dict[str, float]) -> Tensor:
    """Generated voxels (N, V) in MeV from layer-normalised shapes (N, V): every layer scaled
    to its energy in ``e_layer`` (N, L) MeV, clamped to ``[0, prep["max_voxel_mev"]]``, voxels
    below ``prep["threshold_mev"]`` set to 0."""
    showers = pp.denormalise_layers(shapes, e_layer, geometry)
    showers = showers.clamp(0.0, prep["max_voxel_mev"])
    return pp.threshold(showers, prep["threshold_mev"])


# --------------------------------------------------------------------------------------------
# shared pipeline


class _CaloFlowBase(GeneratorModel):
    """Preprocessing, flow I and the generation pipeline shared by teacher and student."""

    flow1: MAF
    flow2: nn.Module
    prep: dict[str, float]

    # -- preprocessing ------------------------------------------------------------------------
    def _flow1_input(self, e_layer: Tensor, e_inc: Tensor) -> Tensor:
        u = pp.u_from_layer_energies(e_layer, e_inc, scale=self.prep["u_scale"])
        return pp.logit(u, self.prep["logit_alpha"])

    def _flow2_context(self, e_inc: Tensor, e_layer: Tensor) -> Tensor:
        return torch.cat([pp.energy_condition(e_inc)[:, None],
                          pp.layer_energy_condition(e_layer)], 1)

    def prepare(self, data: ShowerSet, seed: int = 0) -> dict[str, Tensor]:
        """Flow inputs (float64) of a shower set.

        Returns:
            ``x1`` (N, L) logit u-variables, ``c1`` (N, 1) ``log10(E_inc/33.3 GeV)``,
            ``x2`` (N, V) logit layer-normalised voxels, ``c2`` (N, 1+L) flow-II context,
            ``e_inc`` (N,) MeV.
        """
        gen = torch.Generator().manual_seed(seed)
        e_inc = torch.as_tensor(np.asarray(data.e_inc, dtype=np.float64))
        showers = torch.as_tensor(np.asarray(data.showers, dtype=np.float64))
        if self.prep["noise_mev"] > 0:
            showers = pp.dequantize(showers, self.prep["noise_mev"], generator=gen)
        shapes, e_layer = pp.normalise_layers(showers, self.geometry)
        del showers
        return {"x1": self._flow1_input(e_layer, e_inc),
                "c1": pp.energy_condition(e_inc)[:, None],
                "x2": pp.logit(shapes, self.prep["logit_alpha"]),
                "c2": self._flow2_context(e_inc, e_layer),
                "e_inc": e_inc}

    # -- generation ---------------------------------------------------------------------------
    def sample_layer_energies(self, e_inc: Tensor) -> Tensor:
        """Layer energies (N, L) in MeV from flow I for incident energies (N,) in MeV."""
        dtype, device = _dtype_device(self.flow1)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=dtype)
        y = self.flow1.sample(pp.energy_condition(e)[:, None])
        u = pp.inverse_logit(y, self.prep["logit_alpha"])
        return pp.layer_energies_from_u(u, e, scale=self.prep["u_scale"])

    def sample_showers(self, e_inc: Tensor, e_layer: Tensor) -> Tensor:
        """Voxel energies (N, V) in MeV from flow II given E_inc (N,) and E_layer (N, L), MeV:
        renormalised to ``e_layer`` per layer, clamped and thresholded."""
        dtype, device = _dtype_device(self.flow2)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=dtype)
        e_layer = torch.as_tensor(e_layer).to(device=device, dtype=dtype)
        ctx = self._flow2_context(e, e_layer)
        y = (self._flow2_inverse or self.flow2.inverse)(self.flow2.noise(len(ctx), ctx), ctx)
        shapes = pp.inverse_logit(y, self.prep["logit_alpha"])
        return finish_showers(shapes, e_layer, self.geometry, self.prep)

    def generate(self, e_inc: Tensor) -> tuple[Tensor, Tensor]:
        """``(showers (N, V), layer energies from flow I (N, L))`` in MeV, in batches
        (:func:`generate_in_batches`)."""
        return generate_in_batches(self, e_inc, _dtype_device(self.flow2)[0])

    def sample(self, e_inc: Tensor) -> Tensor:
        """Showers (N, V) in MeV for incident energies ``e_inc`` (N,) in MeV."""
        self.eval()
        return self.generate(e_inc)[0]

    #: flow II's inverse under torch.compile, once :meth:`compiled_sampler` has been called
    _flow2_inverse: Callable[[Tensor, Tensor], Tensor] | None = None
    #: the flows :meth:`compiled_sampler` compiles when they are one-pass IAFs (``_NAME_inverse``
    #: holds a whole compiled inverse off the CPU)
    _one_pass_flows: tuple[str, ...] = ("flow2",)

    def compiled_sampler(self) -> Callable[[Tensor], Tensor]:
        """:meth:`sample` with flow II's inverse compiled when it is one pass (the student's
        IAF; the speed-up is in BENCHMARKS.md, "Sampling speed"). The MAF teacher's
        inverse is a loop of D x blocks sequential steps, which torch.compile would unroll,
        so the teacher samples eagerly. One graph per internal batch size
        (``sampling.batch_size``); the first call includes the compile time.

        On a CPU only the splines are compiled (:meth:`AutoregressiveFlow.compile_spline`),
        the MADE's matmuls stay on the fused eager path: the dataset-1 photon student sampled
        1,000 showers in 1.58-1.70 s that way against 1.77-1.93 s with the whole inverse
        compiled (one thread, a second process on the other core). On other devices the whole
        inverse is compiled."""
        if not isinstance(self.flow2, IAF):
            return self.sample
        for name in self._one_pass_flows:
            flow = getattr(self, name)
            if _dtype_device(flow)[1].type == "cpu":
                flow.compile_spline()
            elif getattr(self, f"_{name}_inverse") is None:
                setattr(self, f"_{name}_inverse", torch.compile(flow.inverse, dynamic=False))
        return self.sample

    # -- helpers ------------------------------------------------------------------------------
    def _stream_prep(self, keys: tuple[str, ...], dtype: torch.dtype
                     ) -> Callable[[ShowerSet, torch.Generator], tuple[Tensor, ...]]:
        """Per-batch :meth:`prepare` for a streamed source (dequantisation noise seeded from
        the batch's generator), returning the tensors ``keys`` in ``dtype``."""
        def fn(chunk: ShowerSet, gen: torch.Generator) -> tuple[Tensor, ...]:
            seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
            return self._stage_tensors(self.prepare(chunk, seed=seed), keys, dtype)
        return fn

    @staticmethod
    def _stage_tensors(data: dict[str, Tensor], keys: tuple[str, ...], dtype: torch.dtype
                       ) -> tuple[Tensor, ...]:
        return tuple(data[k].to(dtype) for k in keys)


def _nll(flow: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    x, c = batch
    return -flow.log_prob(x, c).mean()


# --------------------------------------------------------------------------------------------
# teacher


class CaloFlow(_CaloFlowBase):
    """CaloFlow v1 ("teacher"): MAF flow I + MAF flow II.

    Args:
        geometry: Calorimeter geometry (dataset 1 photons/pions, CaloGAN, ...).
        config: The recipe (see the module docstring).
    """

    name = "caloflow"
    sections = ("preprocessing", "flow1", "flow2", "sampling")

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        self.prep = _section(config, "preprocessing", PREPROCESSING_DEFAULTS)
        f1 = _section(config, "flow1", FLOW1_DEFAULTS)
        f2 = _section(config, "flow2", FLOW2_DEFAULTS)
        self.sampling_cfg = _section(config, "sampling", SAMPLING_DEFAULTS)
        self.flow1 = _flow1(geometry, f1)
        self.flow2 = MAF(geometry.n_voxels, 1 + geometry.n_layers, transforms=f2["transforms"],
                         bins=f2["bins"], hidden=f2["hidden"], bound=f2["bound"],
                         dropout=f2["dropout"], permutations=_flow2_permutations(geometry, f2))

    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            **options: Any) -> dict[str, list[float]]:
        """Train flow I (stage ``flow1``, files ``flow1_*``) then flow II (``flow2``) by
        maximum likelihood; ``resume`` continues an interrupted run in ``run_dir``."""
        options = {k: v for k, v in options.items() if v is not None}
        if options:
            raise ConfigError(f"caloflow.fit: expected no options, found {', '.join(options)}")
        cfg1 = train_config(self.config, "flow1", epochs, progress)
        cfg2 = train_config(self.config, "flow2", epochs, progress)
        source = stream.as_source(train, self.geometry, seed=cfg1.seed)
        if source is not None:  # files: streamed, bounded memory
            val = stream.as_val_source(val, self.geometry, seed=cfg1.seed + 1)
        _check_geometry(self, source or train, "train")
        if val is not None:
            _check_geometry(self, val, "val")
        history: dict[str, list[float]] = {}
        if cfg1.monitor != "loss":
            raise ConfigError("training.flow1[monitor]: expected 'loss' (flow II is untrained "
                              "while flow I trains, so showers cannot be generated), found "
                              f"{cfg1.monitor!r}")
        score2 = monitor_score(cfg2, self.sample,
                               stream.monitor_val(cfg2.monitor, cfg2.monitor_samples, val),
                               "training.flow2")
        if source is None:  # in memory: preprocessed once
            tr = self.prepare(train, seed=cfg1.seed)
            va = self.prepare(val, seed=cfg1.seed + 1) if val is not None else None
        for name, flow, cfg, keys, score in (("flow1", self.flow1, cfg1, ("x1", "c1"), None),
                                             ("flow2", self.flow2, cfg2, ("x2", "c2"), score2)):
            if source is not None:  # per batch
                fn = self._stream_prep(keys, cfg.torch_dtype)
                tr_b = stream.TensorBatches(source, fn, cfg.seed)
                va_b = stream.TensorBatches(val, fn, cfg.seed + 1) if val is not None else None
            else:
                tr_b = self._stage_tensors(tr, keys, cfg.torch_dtype)
                va_b = self._stage_tensors(va, keys, cfg.torch_dtype) if va else None
            h = train_stage(flow, _nll, tr_b, va_b, cfg, run_dir, tag=f"{name}_",
                            val_score=score, resume=resume, desc=name)
            history.update({f"{name}_{k}": v for k, v in h.items()})
        self.eval()
        return history

    def log_prob(self, showers: Tensor, e_inc: Tensor) -> Tensor:
        """``log p`` (N,) of showers (N, V) MeV given E_inc (N,) MeV in the flows' space
        (logit u-variables + logit shapes; no dequantisation noise): flow I + flow II."""
        dtype, device = _dtype_device(self.flow2)
        showers = torch.as_tensor(showers).to(device=device, dtype=torch.float64)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=torch.float64)
        shapes, e_layer = pp.normalise_layers(showers, self.geometry)
        d1 = _dtype_device(self.flow1)[0]
        lp1 = self.flow1.log_prob(self._flow1_input(e_layer, e).to(d1),
                                  pp.energy_condition(e)[:, None].to(d1))
        lp2 = self.flow2.log_prob(pp.logit(shapes, self.prep["logit_alpha"]).to(dtype),
                                  self._flow2_context(e, e_layer).to(dtype))
        return lp1.to(lp2.dtype) + lp2


def check_fit_teacher(student: GeneratorModel, teacher: object, options: dict[str, Any]
                      ) -> None:
    """ConfigError unless a student's ``fit`` got a teacher and no other (non-None) option."""
    options = {k: v for k, v in options.items() if v is not None}
    if options:
        raise ConfigError(f"{student.name}.fit: expected only teacher=, found "
                          f"{', '.join(options)}")
    if teacher is None:
        raise ConfigError(f"teacher: expected a trained {student.teacher_model!r} teacher model "
                          "(caloforge train --teacher PATH), found none")


def check_teacher(student: GeneratorModel, teacher: object, cls: type[GeneratorModel], *,
                  geometry: bool = False) -> None:
    """ConfigError unless ``teacher`` is a ``cls`` (the student's ``teacher_model``); with
    ``geometry``, GeometryError unless it has the student's number of voxels."""
    if not isinstance(teacher, cls):
        raise ConfigError(f"teacher: expected a trained {student.teacher_model!r} model, found "
                          f"{getattr(teacher, 'name', type(teacher).__name__)!r}")
    if geometry and teacher.geometry.n_voxels != student.geometry.n_voxels:
        raise GeometryError(f"teacher[geometry]: expected {student.geometry.n_voxels} voxels "
                            f"({student.geometry.name}), found {teacher.geometry.n_voxels} "
                            f"({teacher.geometry.name})")


def freeze_for_distillation(student: nn.Module, teacher: nn.Module, dtype: torch.dtype,
                            device: torch.device) -> None:
    """Freeze ``teacher`` (eval mode, no gradients), let ``student`` adopt its preprocessing,
    flow I and permutations (``student.adopt_teacher``), move both to ``device``/``dtype`` and
    freeze the student's copy of flow I: only the student's one-pass flows train."""
    teacher.eval()
    teacher.to(device=device, dtype=dtype)
    for p in teacher.parameters():
        p.requires_grad_(False)
    student.adopt_teacher(teacher)
    student.to(device=device, dtype=dtype)
    student.flow1.eval()
    for p in student.flow1.parameters():
        p.requires_grad_(False)


def distillation_loss(student: IAF, teacher: MAF, x: Tensor, c: Tensor, c_z: Tensor,
                      cfg: dict[str, Any]) -> dict[str, Tensor]:
    """CaloFlow v2 loss terms for one batch.

    Args:
        student: The IAF being trained (noise -> data in one pass).
        teacher: The frozen MAF (same blocks, bins, bound and permutations).
        x: Real inputs (N, D) of the teacher's flow (logit shapes); ``c`` their context.
        c_z: Contexts (N, C) for the z-side (e.g. from flow-I samples).
        cfg: The ``distillation`` settings (:data:`DISTILLATION_DEFAULTS` keys).

    Returns:
        ``loss`` = (1-beta) L_z + beta L_x, and the parts ``l_x``, ``l_z`` (each a batch
        mean of a sum over dimensions of squared errors), with the fully guided per-block
        state and spline-parameter terms included when enabled.
    """
    guided = cfg["fully_guided"]

    def sq(a: Tensor, b: Tensor) -> Tensor:
        # = (a - b).square().flatten(1).sum(-1).mean(); mse_loss keeps references to a and b
        # for its backward instead of a new (a - b) tensor per term (on dataset 3 the 32 terms'
        # differences were ~2.7 GB at the published flow-3 batch)
        return nn.functional.mse_loss(a, b, reduction="sum") / a.shape[0]

    # x-side: real x -> teacher z_T -> student x_hat
    with torch.no_grad():
        t_x = teacher.forward_trace(x, c)
    s_x = student.inverse_trace(t_x.out, c)
    l_x = sq(s_x.out, x)
    # z-side: z -> student x_S -> teacher z_hat
    z = torch.randn_like(x)
    s_z = student.inverse_trace(z, c_z)
    t_z = teacher.forward_trace(s_z.out, c_z)
    l_z = sq(t_z.out, z)
    if guided:
        n = teacher.transforms
        for k in range(1, n):  # inner states (k = 0 is x / x_S, k = n is z_T / z)
            l_x = l_x + cfg["state_weight"] * sq(s_x.states[k], t_x.states[k])
            l_z = l_z + cfg["state_weight"] * sq(s_z.states[k], t_z.states[k])
        for k in reversed(range(n)):  # MADE outputs, matched in reverse order
            l_x = l_x + cfg["param_weight"] * sq(s_x.raws[k], t_x.raws[k])
            l_z = l_z + cfg["param_weight"] * sq(s_z.raws[k], t_z.raws[k])
    beta = cfg["beta"]
    return {"loss": (1 - beta) * l_z + beta * l_x, "l_x": l_x, "l_z": l_z}


@torch.no_grad()
def reverse_kl(student: IAF, teacher: MAF, c: Tensor, z: Tensor) -> float:
    """``mean[log q_student(x_S) - log p_teacher(x_S)]`` (nats) for x_S from noise z
    (N, D) at contexts c: the student's checkpoint-selection score (no gradient)."""
    was = student.training
    student.eval()
    x_s, log_q = student.sample_and_log_prob(c, z)
    log_p = teacher.log_prob(x_s, c)
    student.train(was)
    return float((log_q - log_p).mean())


def distil_stage(model: GeneratorModel, student: IAF, teacher: MAF, cfg: TrainConfig,
                 train: Any, val: Any, kl: tuple[Tensor, Tensor], val_showers: object,
                 run_dir: str | os.PathLike | None, *, name: str, desc: str, resume: bool,
                 z_context: Callable[[tuple[Tensor, ...]], Tensor] | None = None
                 ) -> dict[str, list[float]]:
    """One distillation stage (tag and history prefix ``{name}_``): ``student`` learns the
    frozen ``teacher`` with :func:`distillation_loss` (``model.distill_cfg``) on batches
    ``(x, c, ...)`` of ``train``/``val``, the z-side at contexts ``z_context(batch)``
    (computed without gradients; default ``c``).

    The validation score is ``training.{name}.monitor`` when that is ``histogram`` or
    ``classifier`` (``model``'s showers against ``val_showers``), else :func:`reverse_kl` at
    the fixed contexts and noise ``kl = (c, z)``: the kept weights are those of the lowest KL.
    """
    kl_c, kl_z = kl

    def loss_fn(s_flow: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, c = batch[0], batch[1]
        if z_context is None:
            c_z = c
        else:
            with torch.no_grad():
                c_z = z_context(batch)
        return distillation_loss(s_flow, teacher, x, c, c_z, model.distill_cfg)["loss"]

    def kl_score(s_flow: nn.Module) -> float:
        return reverse_kl(s_flow, teacher, kl_c, kl_z)

    score = monitor_score(cfg, model.sample,
                          stream.monitor_val(cfg.monitor, cfg.monitor_samples, val_showers),
                          f"training.{name}") or kl_score
    # the teacher's traced pass on the student's samples carries autograd too: checkpoint it
    # with the student's blocks (memory only; restored afterwards)
    was = teacher.checkpoint_blocks
    teacher.checkpoint_blocks = student.checkpoint_blocks
    try:
        h = train_stage(student, loss_fn, train, val, cfg, run_dir, tag=f"{name}_",
                        val_score=score, resume=resume, desc=desc)
    finally:
        teacher.checkpoint_blocks = was
    return {f"{name}_{k}": v for k, v in h.items()}


# --------------------------------------------------------------------------------------------
# student


class CaloFlowStudent(_CaloFlowBase):
    """CaloFlow v2 ("student"): the teacher's flow I + an IAF flow II distilled from the
    teacher's MAF (one-pass sampling).

    ``fit(train, val, run_dir, teacher=<CaloFlow>)`` needs the trained teacher.
    """

    name = "caloflow-student"
    sections = ("flow2", "distillation", "sampling", "teacher")
    teacher_model = "caloflow"

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        self.student_cfg = _section(config, "flow2", STUDENT_FLOW2_DEFAULTS)
        self.distill_cfg = _section(config, "distillation", DISTILLATION_DEFAULTS)
        self.sampling_cfg = _section(config, "sampling", SAMPLING_DEFAULTS)
        teacher = config.get("teacher") or {}
        self._build(teacher.get("preprocessing", {}), teacher.get("flow1", {}),
                    teacher.get("flow2", {}))

    def _build(self, prep: dict[str, Any], flow1: dict[str, Any], flow2: dict[str, Any]) -> None:
        """(Re)build flow I and the IAF from the teacher's settings."""
        self.prep = _section({"p": prep}, "p", PREPROCESSING_DEFAULTS)
        f1 = _section({"f": flow1}, "f", FLOW1_DEFAULTS)
        f2 = _section({"f": flow2}, "f", FLOW2_DEFAULTS)
        self.flow1 = _flow1(self.geometry, f1)
        self.flow2 = IAF(self.geometry.n_voxels, 1 + self.geometry.n_layers,
                         transforms=f2["transforms"], bins=f2["bins"],
                         hidden=self.student_cfg["hidden"], bound=f2["bound"],
                         dropout=self.student_cfg["dropout"],
                         permutations=_flow2_permutations(self.geometry, f2))

    def adopt_teacher(self, teacher: CaloFlow) -> None:
        """Copy the teacher's preprocessing, flow I (weights) and flow-II permutations."""
        check_teacher(self, teacher, CaloFlow, geometry=True)
        t_cfg = {"preprocessing": dict(teacher.prep),
                 "flow1": _section(teacher.config, "flow1", FLOW1_DEFAULTS),
                 "flow2": {k: v for k, v in _section(teacher.config, "flow2",
                                                     FLOW2_DEFAULTS).items()
                           if k in ("transforms", "bins", "bound", "seed")}}
        self.config["teacher"] = t_cfg
        self._build(t_cfg["preprocessing"], t_cfg["flow1"], t_cfg["flow2"])
        self.flow1.load_state_dict(teacher.flow1.state_dict())
        self.flow2.load_permutations(teacher.flow2.permutations)
        dtype, device = _dtype_device(teacher.flow2)
        self.to(device=device, dtype=dtype)

    # -- distillation ---------------------------------------------------------------------------
    def distillation_loss(self, student: IAF, teacher: MAF, x: Tensor, c: Tensor,
                          c_z: Tensor) -> dict[str, Tensor]:
        """CaloFlow v2 loss terms for one batch (:func:`distillation_loss` with this model's
        ``distillation`` settings)."""
        return distillation_loss(student, teacher, x, c, c_z, self.distill_cfg)

    @torch.no_grad()
    def reverse_kl(self, teacher: MAF, c: Tensor, z: Tensor) -> float:
        """:func:`reverse_kl` of this model's flow II against ``teacher``."""
        return reverse_kl(self.flow2, teacher, c, z)

    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            teacher: CaloFlow | None = None, **options: Any) -> dict[str, list[float]]:
        """Distil flow II from ``teacher`` (stage ``student``, files ``student_*``); the
        validation score is the reverse KL, so the kept weights are those of the lowest KL.

        The teacher is frozen, switched to eval mode and moved to the stage's device/dtype.
        """
        check_fit_teacher(self, teacher, options)
        source = stream.as_source(train, self.geometry)
        if source is not None:  # files: streamed, bounded memory
            val = stream.as_val_source(val, self.geometry, seed=1)
        _check_geometry(self, source or train, "train")
        if val is not None:
            _check_geometry(self, val, "val")
        check_teacher(self, teacher, CaloFlow)
        cfg = train_config(self.config, "student", epochs, progress)
        dtype, device = cfg.torch_dtype, cfg.torch_device()
        freeze_for_distillation(self, teacher, dtype, device)

        keys = ("x2", "c2", "e_inc")
        n_kl = self.distill_cfg["kl_samples"]
        if source is not None:
            fn = self._stream_prep(keys, dtype)
            train_t = stream.TensorBatches(source, fn, cfg.seed)
            val_t = stream.TensorBatches(val, fn, cfg.seed + 1) if val is not None else None
            kl_c = self._stage_tensors(self.prepare(stream.head(val or source, n_kl),
                                                    seed=cfg.seed + 1), keys, dtype)[1]
        else:
            tr = self.prepare(train, seed=cfg.seed)
            train_t = self._stage_tensors(tr, keys, dtype)
            del tr
            ref = self.prepare(val, seed=cfg.seed + 1) if val is not None else None
            val_t = self._stage_tensors(ref, keys, dtype) if ref else None
            kl_c = (val_t if val_t is not None else train_t)[1][:n_kl]
        gen = torch.Generator().manual_seed(cfg.seed + 2)
        kl_z = torch.randn(len(kl_c), self.geometry.n_voxels, generator=gen, dtype=dtype)

        def z_context(batch: tuple[Tensor, ...]) -> Tensor:
            e_inc = batch[2]  # z-side contexts from flow-I samples at the same energies
            return self._flow2_context(e_inc, self.sample_layer_energies(e_inc).to(dtype))

        history = distil_stage(self, self.flow2, teacher.flow2, cfg, train_t, val_t,
                               (kl_c.to(device), kl_z.to(device)), val, run_dir, name="student",
                               desc="student", resume=resume, z_context=z_context)
        self.eval()
        return history
