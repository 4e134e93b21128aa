"""iCaloFlow: inductive (layer-by-layer) CaloFlow for the 45-layer datasets 2 and 3.

A single flow over 6,480 (dataset 2) or 40,500 (dataset 3) voxels is too big, so the shower
is generated layer by layer with three MADE-RQS MAFs (the "teacher", :class:`ICaloFlow`):

* **flow-1** ``p(E_0..E_44 | E_inc)``: CaloFlow's flow I (:func:`caloforge.models.caloflow._flow1`,
  u-variables in logit space, context ``log10(E_inc / 33.3 GeV)``);
* **flow-2** ``p(I_0 | E_0, E_inc)``: the logit of layer 0's normalised voxels
  (``I_n = voxels / E_n``, S = 144 or 900 dimensions), context ``log10(E_inc / 33.3 GeV)``
  and ``log10(E_0 / 100 GeV + 1e-8) - 1`` (2 features);
* **flow-3** ``p(I_n | I_{n-1}, E_n, E_{n-1}, E_inc, n)`` for n = 1..44, one flow shared by all
  layers: context ``log10(E_inc / 33.3 GeV)``, the two layer-energy conditions, a one-hot of
  ``n - 1`` (44) and the previous layer's logit shape divided by :data:`PREV_SCALE`
  (3 + 44 + S features).

Voxels get uniform dequantisation noise U[0, ``noise_mev``] (5 keV) before the layers are
normalised; generated voxels below ``threshold_mev`` (15 keV) are cut. Generation: E_n from
flow-1, I_0 from flow-2, then I_1..I_44 from flow-3 one layer after the other (each needs the
previous one), each layer renormalised to its E_n, clamped to [0, ``max_voxel_mev``] and
thresholded. The teacher's MAF inverse is the incremental one of
:mod:`caloforge.flows.autoregressive` (S x blocks sequential steps per layer); the student
(:class:`~caloforge.models.icaloflow_student.ICaloFlowStudent`) replaces flows 2 and 3 by IAFs
distilled with the CaloFlow v2 loss (one pass per block per layer).

Recipe (YAML; every key has a default)::

    model: icaloflow
    dataset: '2'
    preprocessing: {logit_alpha: 1.0e-6, noise_mev: 5.0e-3, u_scale: 2.42,
                    threshold_mev: 0.015, max_voxel_mev: 1.0e6}
    flow1: {transforms: 8, hidden: [256, 256], bins: 8, bound: 14.0, dropout: 0.0, seed: 1}
    flow2: {transforms: 8, hidden: [256, 256], bins: 8, bound: 14.0, dropout: 0.0, seed: 2}
    flow3: {transforms: 8, hidden: [256, 256], bins: 8, bound: 14.0, dropout: 0.0, seed: 3,
            layers_per_shower: all, skip: all, checkpoint: false}
    sampling: {batch_size: 1000, cpu_batch_size: null}  # showers per pass (on a CPU)
    training: {flow1: {<TrainConfig>}, flow2: {...}, flow3: {...}}

``layers_per_shower``: the flow-3 rows one shower gives per batch (``all``: every layer
1..44, so ``batch_size`` showers make 44 x ``batch_size`` rows; an integer k: k layers
drawn at random without replacement, a cheaper epoch for CPU recipes).

``skip``: every MADE also has an unmasked linear skip from its context to all outputs.
``all`` (default): from the whole flow-3 context; ``conditions``: from the energies and the
layer one-hot only, the previous layer's voxels entering through the hidden layers, as in
the published MADE. On dataset 3 the full skip is a 947 x 20,700 matrix per block (204 M of
flow-3's weights at the published size against 55 M with ``conditions``, and 12x the
sampling cost at the ``-cpu`` size), so the dataset-3 recipes use ``conditions``; the
students inherit the teacher's choice. (Measured on a toy teacher, distillation with
``conditions`` lowers the reverse KL more slowly.)

``checkpoint`` (flows 2 and 3): gradient checkpointing per block while the teacher trains
(:attr:`~caloforge.flows.autoregressive.AutoregressiveFlow.checkpoint_blocks`): the same
gradients with one block's activations in memory instead of all of them, for ~1.3x the step
time; the published dataset-3 recipe turns it on to train within 8 GiB on a CPU.

References:
    M. R. Buckley, C. Krause, I. Pang, D. Shih, "Inductive CaloFlow", arXiv:2305.11934
    (iCaloFlow for datasets 2 and 3; code claudius-krause/inductive-caloflow).
    C. Krause, D. Shih, "CaloFlow", arXiv:2106.05285; "CaloFlow II", arXiv:2110.11377.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from caloforge import preprocessing as pp
from caloforge import stream
from caloforge.config import train_config
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError, GeometryError
from caloforge.flows.autoregressive import MAF, AutoregressiveFlow, layer_permutations
from caloforge.geometry import Geometry
from caloforge.models.caloflow import (
    _CaloFlowBase,
    _check_geometry,
    _dtype_device,
    _flow1,
    _section,
    finish_showers,
)
from caloforge.monitor import monitor_score
from caloforge.training import fit as train_stage

__all__ = ["ICaloFlow", "ICaloFlowStudent"]  # noqa: F822 - ICaloFlowStudent: lazy (__getattr__)

PREPROCESSING_DEFAULTS: dict[str, float] = {
    "logit_alpha": pp.LOGIT_ALPHA,  # logit regulariser
    "noise_mev": 5e-3,  # uniform dequantisation noise U[0, noise_mev] MeV per voxel
    "u_scale": pp.U0_SCALE,  # flow-1 u_0 = sum E_i / (u_scale E_inc)
    "threshold_mev": 0.015,  # generated voxels below this are set to 0
    "max_voxel_mev": 1e6,  # generated voxels are clamped to [0, max_voxel_mev]
}
FLOW_DEFAULTS: dict[str, Any] = {"transforms": 8, "hidden": [256, 256], "bins": 8,
                                 "bound": 14.0, "dropout": 0.0, "seed": 1, "skip": "all",
                                 "checkpoint": False}
#: ``flow3.skip``: which context features the MADEs' unmasked context->output skip reads
SKIPS = ("all", "conditions")
SAMPLING_DEFAULTS: dict[str, Any] = {"batch_size": 1000, "cpu_batch_size": None}
#: The previous layer's logit shape enters flow-3's context divided by this (logit(1e-6)
#: = -13.8 becomes -3.5), so that it is of the order of the other context features.
PREV_SCALE = 4.0
#: The flows and the stage names of the teacher, in training order.
STAGES = ("flow1", "flow2", "flow3")


def flow_section(config: dict[str, Any], name: str, seed: int) -> dict[str, Any]:
    """A flow section (``transforms, hidden, bins, bound, dropout, seed``) with defaults."""
    return _section(config, name, {**FLOW_DEFAULTS, "seed": seed})


def layers_per_shower(config: dict[str, Any], n_layers: int) -> int:
    """``flow3.layers_per_shower`` (``all`` or absent -> ``n_layers - 1``), removed from the
    section so that the remaining keys are the flow's; ConfigError for a bad value."""
    section = config.get("flow3") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{config.get('_source', 'config')}[flow3]: expected a mapping, "
                          f"found {type(section).__name__}")
    k = section.get("layers_per_shower", "all")
    if k == "all":
        return n_layers - 1
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{config.get('_source', 'config')}[flow3.layers_per_shower]: "
                          f"expected 'all' or a positive integer, found {k!r}")
    return min(k, n_layers - 1)


def _layer_size(geometry: Geometry) -> int:
    """Voxels per layer; GeometryError unless every layer has the same number (DS2/DS3)."""
    sizes = {layer.n_voxels for layer in geometry.layers}
    if len(sizes) != 1 or geometry.n_layers < 2:
        raise GeometryError(f"dataset {geometry.name}: expected at least 2 layers of equal size "
                            f"(datasets 2 and 3), found layer sizes "
                            f"{[layer.n_voxels for layer in geometry.layers]}")
    return sizes.pop()


def _nll(flow: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    return -flow.log_prob(batch[0], batch[1]).mean()


# --------------------------------------------------------------------------------------------
# shared pipeline


class _ICaloFlowBase(_CaloFlowBase):
    """Features, contexts and layer-by-layer generation shared by teacher and student
    (flow-1, its u-variables and :meth:`generate` come from CaloFlow)."""

    flow2: AutoregressiveFlow
    flow3: AutoregressiveFlow
    layer_size: int
    rows_per_shower: int
    _flow2_inverse: Callable[[Tensor, Tensor], Tensor] | None = None
    _flow3_inverse: Callable[[Tensor, Tensor], Tensor] | None = None
    #: :meth:`compiled_sampler` (CaloFlow's) compiles the student's flows 2 and 3; on a CPU
    #: only their splines: the dataset-2 student sampled 1.2x faster that way at batch 1,000
    #: on one thread, while the whole inverses compiled were slower than eager
    _one_pass_flows = ("flow2", "flow3")

    def _build_flows(self, cls: type[AutoregressiveFlow], f2: dict[str, Any],
                     f3: dict[str, Any], hidden2: list[int], hidden3: list[int],
                     dropout2: float, dropout3: float) -> None:
        S, L = self.layer_size, self.geometry.n_layers
        self.flow2 = cls(S, 2, transforms=f2["transforms"], bins=f2["bins"], hidden=hidden2,
                         bound=f2["bound"], dropout=dropout2,
                         permutations=layer_permutations([S], f2["transforms"], f2["seed"]))
        if f3["skip"] not in SKIPS:
            raise ConfigError(f"{self.config.get('_source', 'config')}[flow3.skip]: expected "
                              f"one of {', '.join(SKIPS)}, found {f3['skip']!r}")
        # skip: conditions -> the MADE skip reads the 3 energies and the layer one-hot only;
        # the previous layer's S voxels reach every output through the hidden layers (their
        # skip is an S x S(3K - 1) matrix: 78 % of a published-size flow-3 on dataset 3)
        self.flow3 = cls(S, 3 + (L - 1) + S, transforms=f3["transforms"], bins=f3["bins"],
                         hidden=hidden3, bound=f3["bound"], dropout=dropout3,
                         permutations=layer_permutations([S], f3["transforms"], f3["seed"]),
                         skip_context=3 + (L - 1) if f3["skip"] == "conditions" else None)
        # checkpoint: recompute each block in backward (training memory, not results)
        self.flow2.checkpoint_blocks = bool(f2["checkpoint"])
        self.flow3.checkpoint_blocks = bool(f3["checkpoint"])

    # -- contexts -----------------------------------------------------------------------------
    @staticmethod
    def _ctx2(e_inc: Tensor, e0: Tensor) -> Tensor:
        """Flow-2 context (N, 2) from E_inc (N,) and E_0 (N,) in MeV."""
        return torch.stack([pp.energy_condition(e_inc), pp.layer_energy_condition(e0)], 1)

    def _ctx3(self, e_inc: Tensor, e_n: Tensor, e_prev: Tensor, n: Tensor,
              prev_logit: Tensor) -> Tensor:
        """Flow-3 context (N, 3 + L-1 + S) for layer indices ``n`` (N,) in 1..L-1, energies in
        MeV and the previous layer's logit shape (N, S)."""
        onehot = nn.functional.one_hot(n - 1, self.geometry.n_layers - 1).to(prev_logit.dtype)
        return torch.cat([pp.energy_condition(e_inc)[:, None],
                          pp.layer_energy_condition(e_n)[:, None],
                          pp.layer_energy_condition(e_prev)[:, None],
                          onehot, prev_logit / PREV_SCALE], 1)

    # -- features -----------------------------------------------------------------------------
    def features(self, showers: Tensor, e_inc: Tensor, layers: int | None = None
                 ) -> dict[str, Tensor]:
        """Flow inputs of showers (N, V) MeV (float64, no noise added here).

        Args:
            layers: Logit shapes of the first ``layers`` layers only (0 for flow-1, 1 for
                flow-2: cheaper per-batch preprocessing); None: all.

        Returns:
            ``x1`` (N, L) logit u-variables, ``c1`` (N, 1), ``logits`` (N, layers, S) logit
            layer shapes, ``e_layer`` (N, L) MeV, ``e_inc`` (N,) MeV.
        """
        v = showers.view(len(showers), self.geometry.n_layers, self.layer_size)
        e_layer = v.sum(-1)
        v = v if layers is None else v[:, :layers]
        shapes = v / (e_layer[:, :v.shape[1], None] + 1e-16)  # as pp.normalise_layers
        return {"x1": self._flow1_input(e_layer, e_inc),
                "c1": pp.energy_condition(e_inc)[:, None],
                "logits": pp.logit(shapes, self.prep["logit_alpha"]),
                "e_layer": e_layer, "e_inc": e_inc}

    def prepare(self, data: ShowerSet, seed: int = 0, layers: int | None = None
                ) -> dict[str, Tensor]:
        """:meth:`features` of a shower set after dequantisation noise (seeded)."""
        gen = torch.Generator().manual_seed(seed)
        e_inc = torch.as_tensor(np.asarray(data.e_inc, dtype=np.float64)).reshape(-1)
        showers = torch.as_tensor(np.asarray(data.showers, dtype=np.float64))
        if self.prep["noise_mev"] > 0:
            showers = pp.dequantize(showers, self.prep["noise_mev"], generator=gen)
        return self.features(showers, e_inc, layers)

    def stage_rows(self, f: dict[str, Tensor], stage: str, k: int | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x, context)`` rows of one flow from :meth:`features`: flow-3 gets ``k`` layers
        per shower (all L-1 when ``k`` is None or L-1, else drawn without replacement)."""
        if stage == "flow1":
            return f["x1"], f["c1"]
        lg, el, e = f["logits"], f["e_layer"], f["e_inc"]
        if stage == "flow2":
            return lg[:, 0], self._ctx2(e, el[:, 0])
        N, L = lg.shape[:2]
        k = L - 1 if k is None else k
        if k >= L - 1:
            n = torch.arange(1, L).repeat(N, 1)
        else:
            n = torch.rand(N, L - 1, generator=generator).argsort(1)[:, :k] + 1
        i = torch.arange(N)[:, None].expand_as(n).reshape(-1)
        n = n.reshape(-1)
        return lg[i, n], self._ctx3(e[i], el[i, n], el[i, n - 1], n, lg[i, n - 1])

    def _batch_fn(self, stage: str, dtype: torch.dtype
                  ) -> Callable[[ShowerSet, torch.Generator], tuple[Tensor, ...]]:
        """Per-batch preprocessing of a streamed source: ``(x, context)`` in ``dtype``."""
        def fn(chunk: ShowerSet, gen: torch.Generator) -> tuple[Tensor, ...]:
            seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
            layers = {"flow1": 0, "flow2": 1}.get(stage)
            rows = self.stage_rows(self.prepare(chunk, seed=seed, layers=layers), stage,
                                   self.rows_per_shower, gen)
            return tuple(t.to(dtype) for t in rows)
        return fn

    def _sources(self, train: object, val: object, seed: int
                 ) -> tuple[stream.ShowerSource, stream.ShowerSource | None]:
        """Training and validation data as sources (files streamed; sets in memory)."""
        source = stream.as_source(train, self.geometry, seed=seed)
        if source is None:
            source = stream.InMemorySource(train, seed)
        val = stream.as_val_source(val, self.geometry, seed=seed + 1)
        _check_geometry(self, source, "train")
        if val is not None:
            _check_geometry(self, val, "val")
        return source, val

    # -- generation ---------------------------------------------------------------------------
    def sample_showers(self, e_inc: Tensor, e_layer: Tensor) -> Tensor:
        """Voxel energies (N, V) in MeV given E_inc (N,) and layer energies (N, L), MeV:
        layer 0 from flow-2, then layers 1..L-1 from flow-3 one after the other; each layer
        renormalised to its E_n, clamped and thresholded."""
        dtype, device = _dtype_device(self.flow3)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=dtype)
        el = torch.as_tensor(e_layer).to(device=device, dtype=dtype)
        inv2 = self._flow2_inverse or self.flow2.inverse
        inv3 = self._flow3_inverse or self.flow3.inverse
        d2 = _dtype_device(self.flow2)[0]
        c = self._ctx2(e, el[:, 0]).to(d2)
        y = inv2(self.flow2.noise(len(c), c), c).to(dtype)
        layers = [y]
        for n in range(1, self.geometry.n_layers):
            idx = torch.full((len(e),), n, dtype=torch.long, device=device)
            c = self._ctx3(e, el[:, n], el[:, n - 1], idx, y)
            y = inv3(self.flow3.noise(len(c), c), c)
            layers.append(y)
        shapes = pp.inverse_logit(torch.cat(layers, 1), self.prep["logit_alpha"])
        return finish_showers(shapes, el, self.geometry, self.prep)

    def log_prob(self, showers: Tensor, e_inc: Tensor) -> Tensor:
        """``log p`` (N,) of showers (N, V) MeV given E_inc (N,) MeV in the flows' space
        (logit u-variables + logit layer shapes; no dequantisation noise): flow-1 + flow-2 +
        flow-3 summed over layers 1..L-1 (one pass each for the teacher; D passes per block
        for a student's IAFs)."""
        dtype, device = _dtype_device(self.flow3)
        showers = torch.as_tensor(showers).to(device=device, dtype=torch.float64)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=torch.float64)
        f = self.features(showers, e)
        out = torch.zeros(len(e), dtype=dtype, device=device)
        for stage, flow in (("flow1", self.flow1), ("flow2", self.flow2),
                            ("flow3", self.flow3)):
            d = _dtype_device(flow)[0]
            x, c = self.stage_rows(f, stage)
            out = out + flow.log_prob(x.to(d), c.to(d)).to(dtype).view(len(e), -1).sum(1)
        return out


# --------------------------------------------------------------------------------------------
# teacher


class ICaloFlow(_ICaloFlowBase):
    """The iCaloFlow teacher: three MADE-RQS MAFs (see the module docstring).

    Args:
        geometry: Dataset 2 or 3 (45 layers of equal size).
        config: The recipe.
    """

    name = "icaloflow"
    sections = ("preprocessing", "flow1", "flow2", "flow3", "sampling")

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        self.layer_size = _layer_size(geometry)
        self.rows_per_shower = layers_per_shower(config, geometry.n_layers)
        cfg = {**config, "flow3": {k: v for k, v in (config.get("flow3") or {}).items()
                                   if k != "layers_per_shower"}}
        self.prep = _section(config, "preprocessing", PREPROCESSING_DEFAULTS)
        self.sampling_cfg = _section(config, "sampling", SAMPLING_DEFAULTS)
        self.flow_cfg = {name: flow_section(cfg, name, seed)
                         for seed, name in enumerate(STAGES, 1)}
        self.flow1 = _flow1(geometry, self.flow_cfg["flow1"])
        f2, f3 = self.flow_cfg["flow2"], self.flow_cfg["flow3"]
        self._build_flows(MAF, f2, f3, f2["hidden"], f3["hidden"], f2["dropout"],
                          f3["dropout"])

    def stage_tags(self) -> list[tuple[str, str]]:
        """``flow1_`` (layer energies), ``flow2_`` (layer 0), ``flow3_`` (layers 1..L-1)."""
        return [("flow1_", "flow-1 (layer energies)"), ("flow2_", "flow-2 (layer 0)"),
                ("flow3_", f"flow-3 (layers 1-{self.geometry.n_layers - 1})")]

    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            **options: Any) -> dict[str, list[float]]:
        """Train flow-1, flow-2 then flow-3 by maximum likelihood (stages and checkpoint
        files ``flow1_*``, ``flow2_*``, ``flow3_*``), streaming from files; ``resume``
        continues an interrupted run in ``run_dir`` (finished stages are skipped)."""
        options = {k: v for k, v in options.items() if v is not None}
        if options:
            raise ConfigError(f"icaloflow.fit: expected no options, found {', '.join(options)}")
        cfgs = {name: train_config(self.config, name, epochs, progress) for name in STAGES}
        for name in ("flow1", "flow2"):
            if cfgs[name].monitor != "loss":
                raise ConfigError(f"training.{name}[monitor]: expected 'loss' (flow-3 is "
                                  f"untrained while {name} trains, so showers cannot be "
                                  f"generated), found {cfgs[name].monitor!r}")
        source, val = self._sources(train, val, cfgs["flow1"].seed)
        cfg3 = cfgs["flow3"]
        score3 = monitor_score(cfg3, self.sample,
                               stream.monitor_val(cfg3.monitor, cfg3.monitor_samples, val),
                               "training.flow3")
        history: dict[str, list[float]] = {}
        for name in STAGES:
            cfg, flow = cfgs[name], getattr(self, name)
            fn = self._batch_fn(name, cfg.torch_dtype)
            va = stream.TensorBatches(val, fn, cfg.seed + 1) if val is not None else None
            h = train_stage(flow, _nll, stream.TensorBatches(source, fn, cfg.seed), va, cfg,
                            run_dir, tag=f"{name}_", resume=resume, desc=name,
                            val_score=score3 if name == "flow3" else None)
            history.update({f"{name}_{k}": v for k, v in h.items()})
        self.eval()
        return history


def __getattr__(name: str) -> Any:
    """``ICaloFlowStudent`` lives in :mod:`caloforge.models.icaloflow_student` (imported
    lazily: it imports this module)."""
    if name == "ICaloFlowStudent":
        from caloforge.models.icaloflow_student import ICaloFlowStudent

        return ICaloFlowStudent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
