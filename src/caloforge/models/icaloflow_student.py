"""The iCaloFlow student: IAF flows 2 and 3 distilled from a frozen iCaloFlow teacher.

The student keeps the teacher's flow-1 (weights copied) and preprocessing, and replaces
flow-2 and flow-3 by IAFs with the teacher's blocks, bins, tail bound and permutations (so that
block k of the student matches block k of the teacher), trained one after the other with the
CaloFlow v2 loss (:func:`caloforge.models.caloflow.distillation_loss`:
``(1 - beta) L_z + beta L_x``, fully guided when ``distillation.fully_guided``). The kept
epoch of each stage is the one of lowest reverse KL ``E[log q_student - log p_teacher]`` on
fixed noise and validation contexts. Both sides of the loss use real (validation or training)
contexts; for flow-3 these include the real previous layer.

Sampling needs one pass per block per layer (45 x blocks passes), instead of the teacher's
S x blocks sequential steps per layer.

Recipe::

    model: icaloflow-student
    dataset: '2'
    flow2: {hidden: [256, 256], dropout: 0.0, checkpoint: false}
    flow3: {hidden: [256, 256], dropout: 0.0, layers_per_shower: all, checkpoint: false}
    distillation: {beta: 0.5, fully_guided: true, state_weight: 1.0, param_weight: 1.0,
                   kl_samples: 2000}
    sampling: {batch_size: 1000, cpu_batch_size: null}  # showers per pass (on a CPU)
    training: {flow2: {<TrainConfig>}, flow3: {<TrainConfig>}}

``caloforge train --model icaloflow-student -c RECIPE --teacher RUN/model.pt``; the teacher's
settings are stored in the student's config under ``teacher``.

``checkpoint`` (flows 2 and 3): gradient checkpointing per block during distillation, of the
student's one-pass inverse and of the frozen teacher's forward pass on the student's samples
(:attr:`~caloforge.flows.autoregressive.AutoregressiveFlow.checkpoint_blocks`): the loss
and gradients are the same; only each block's inputs and outputs (states and spline
parameters, which the fully guided loss reads) stay in memory, not the MADE activations and
spline intermediates. The dataset-3 recipe turns it on.

References:
    C. Krause, D. Shih, "CaloFlow II", arXiv:2110.11377 (probability density distillation
    with the fully guided loss); arXiv:2305.11934 (iCaloFlow).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from caloforge import stream
from caloforge.config import train_config
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError
from caloforge.flows.autoregressive import IAF
from caloforge.geometry import Geometry
from caloforge.models.caloflow import (
    DISTILLATION_DEFAULTS,
    _dtype_device,
    _flow1,
    _section,
    check_fit_teacher,
    check_teacher,
    distil_stage,
    freeze_for_distillation,
)
from caloforge.models.icaloflow import (
    PREPROCESSING_DEFAULTS,
    SAMPLING_DEFAULTS,
    ICaloFlow,
    _ICaloFlowBase,
    _layer_size,
    flow_section,
    layers_per_shower,
)

__all__ = ["ICaloFlowStudent"]

STUDENT_FLOW_DEFAULTS: dict[str, Any] = {"hidden": [256, 256], "dropout": 0.0,
                                         "checkpoint": False}
#: The student's stages (the teacher flow each one distils).
STUDENT_STAGES = ("flow2", "flow3")


class ICaloFlowStudent(_ICaloFlowBase):
    """The iCaloFlow student (see the module docstring).

    ``fit(train, val, run_dir, teacher=<ICaloFlow>)`` needs the trained teacher.
    """

    name = "icaloflow-student"
    sections = ("flow2", "flow3", "distillation", "sampling", "teacher")
    teacher_model = "icaloflow"

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        self.layer_size = _layer_size(geometry)
        self.rows_per_shower = layers_per_shower(config, geometry.n_layers)
        cfg = {**config, "flow3": {k: v for k, v in (config.get("flow3") or {}).items()
                                   if k != "layers_per_shower"}}
        self.student_cfg = {name: _section(cfg, name, STUDENT_FLOW_DEFAULTS)
                            for name in STUDENT_STAGES}
        self.distill_cfg = _section(config, "distillation", DISTILLATION_DEFAULTS)
        self.sampling_cfg = _section(config, "sampling", SAMPLING_DEFAULTS)
        self._build(config.get("teacher") or {})

    def _build(self, teacher: dict[str, Any]) -> None:
        """(Re)build flow-1 and the IAFs from the teacher's settings."""
        self.prep = _section({"p": teacher.get("preprocessing", {})}, "p",
                             PREPROCESSING_DEFAULTS)
        f = {name: flow_section(teacher, name, seed)
             for seed, name in enumerate(("flow1", "flow2", "flow3"), 1)}
        self.flow1 = _flow1(self.geometry, f["flow1"])
        s2, s3 = self.student_cfg["flow2"], self.student_cfg["flow3"]
        self._build_flows(IAF, f["flow2"], f["flow3"], s2["hidden"], s3["hidden"],
                          s2["dropout"], s3["dropout"])
        # checkpoint: recompute each block of the student's and the teacher's traced passes
        # in backward during distillation (training memory, not results)
        self.flow2.checkpoint_blocks = bool(s2["checkpoint"])
        self.flow3.checkpoint_blocks = bool(s3["checkpoint"])

    def stage_tags(self) -> list[tuple[str, str]]:
        """``flow2_`` (student flow-2, layer 0) and ``flow3_`` (student flow-3)."""
        return [("flow2_", "student flow-2 (layer 0)"),
                ("flow3_", f"student flow-3 (layers 1-{self.geometry.n_layers - 1})")]

    def adopt_teacher(self, teacher: ICaloFlow) -> None:
        """Copy the teacher's preprocessing, flow-1 (weights) and the permutations."""
        check_teacher(self, teacher, ICaloFlow, geometry=True)
        keep = ("transforms", "bins", "bound", "seed", "skip")
        t_cfg: dict[str, Any] = {"preprocessing": dict(teacher.prep),
                                 "flow1": dict(teacher.flow_cfg["flow1"])}
        for name in STUDENT_STAGES:
            t_cfg[name] = {k: v for k, v in teacher.flow_cfg[name].items() if k in keep}
        self.config["teacher"] = t_cfg
        self._build(t_cfg)
        self.flow1.load_state_dict(teacher.flow1.state_dict())
        self.flow2.load_permutations(teacher.flow2.permutations)
        self.flow3.load_permutations(teacher.flow3.permutations)
        dtype, device = _dtype_device(teacher.flow3)
        self.to(device=device, dtype=dtype)

    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            teacher: ICaloFlow | None = None, **options: Any) -> dict[str, list[float]]:
        """Distil flow-2 then flow-3 from ``teacher`` (stages and files ``flow2_*``,
        ``flow3_*``); the validation score of each is the reverse KL against the teacher's
        flow, so the kept weights are those of the lowest KL. The teacher is frozen,
        switched to eval mode and moved to the stages' device/dtype."""
        check_fit_teacher(self, teacher, options)
        check_teacher(self, teacher, ICaloFlow)
        cfgs = {name: train_config(self.config, name, epochs, progress)
                for name in STUDENT_STAGES}
        if cfgs["flow2"].monitor != "loss":
            raise ConfigError(f"training.flow2[monitor]: expected 'loss' (the reverse KL; "
                              f"flow-3 is untrained while flow-2 distils), found "
                              f"{cfgs['flow2'].monitor!r}")
        source, val = self._sources(train, val, cfgs["flow2"].seed)
        cfg = cfgs["flow2"]
        dtype, device = cfg.torch_dtype, cfg.torch_device()
        freeze_for_distillation(self, teacher, dtype, device)

        n_kl = self.distill_cfg["kl_samples"]
        kl_feats = self.prepare(stream.head(val or source, n_kl), seed=cfgs["flow2"].seed + 1)
        gen = torch.Generator().manual_seed(cfgs["flow2"].seed + 2)
        history: dict[str, list[float]] = {}
        for name in STUDENT_STAGES:
            cfg = cfgs[name]
            t_flow, s_flow = getattr(teacher, name), getattr(self, name)
            t_flow.to(device=cfg.torch_device(), dtype=cfg.torch_dtype)
            kl_c = self.stage_rows(kl_feats, name, self.rows_per_shower, gen)[1]
            kl_c = kl_c[torch.randperm(len(kl_c), generator=gen)[:n_kl]]
            kl_z = torch.randn(len(kl_c), self.layer_size, generator=gen)
            kl_c = kl_c.to(device=cfg.torch_device(), dtype=cfg.torch_dtype)
            kl_z = kl_z.to(device=cfg.torch_device(), dtype=cfg.torch_dtype)
            fn = self._batch_fn(name, cfg.torch_dtype)
            va = stream.TensorBatches(val, fn, cfg.seed + 1) if val is not None else None
            # flow2's monitor is 'loss' (checked above): its score is the reverse KL
            history.update(distil_stage(self, s_flow, t_flow, cfg,
                                        stream.TensorBatches(source, fn, cfg.seed), va,
                                        (kl_c, kl_z), val, run_dir, name=name,
                                        desc=f"student {name}", resume=resume))
        self.eval()
        return history
