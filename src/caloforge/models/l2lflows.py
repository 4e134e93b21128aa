"""L2LFlows and ConvL2LFlow: layer-to-layer normalizing flows for datasets 2 and 3.

The shower is generated layer by layer (seed talk 001, part II):

1. **Energy flow** ``p_0(E_1..E_L | E_inc)``: CaloFlow's flow I
   (:func:`caloforge.models.caloflow._flow1`: a MADE-RQS MAF, 6 blocks, 2 x 64 hidden,
   8 bins) on the logit (alpha 1e-6) u-variables of the L layer energies (the "scaled" layer
   energies: ``u_0 = sum E_i / (u_scale E_inc)``, ``u_n = E_{n-1} / sum_{k>=n-1} E_k``),
   conditioned on ``2 log10(E_inc / GeV) - 3`` (ConvL2LFlow's condition).
2. **Shower flows** ``p_i(I_i | I_{i-k..i-1}, E_1..E_L, E_inc)``, one per layer
   (:class:`caloforge.models.l2l_layers.LayerFlows`), selected by ``shower_flow.type``:
   ``conv`` (ConvL2LFlow: convolutional RQS coupling flow on the (alpha, r) image with a
   U-Net-like conditioner, circular padding in alpha, squeeze 2, ActNorm + invertible 1x1
   convolutions, the previous layer(s) as condition images;
   :mod:`caloforge.flows.conv_coupling`) or ``maf`` (the MAF L2LFlows of the talk: a
   MADE-RQS MAF per layer, the previous layer(s) in the MADE context).

**Weight sharing** (``shower_flow.shared``): ``false`` builds L separate flows as published
(one per layer; by default trained together in one stage on the same batches, which for
independent flows with per-parameter Adam and no ``grad_clip`` is the same as training them
one after the other on those batches);
``stages: per_layer`` trains the separate flows one after the other instead (stages
``layer00_`` .. ``layer44_``, as published: one layer's activations in memory at a time).
``true`` builds one flow for all layers that also reads a one-hot of the layer index. The
published-size recipes ``configs/l2lflows/{2,3}.yaml`` keep ``shared: false`` (the model of
the paper); the CPU twins use ``shared: true``, which is L times smaller and trains every
step on all layers of a batch at once (one batched pass), at the price of one network having
to fit every layer. ``shower_flow.layers_per_step: m`` trains each step on m random layers
(an unbiased estimate of the full loss, scaled by L/m), which bounds memory and time per step.
``shower_flow.checkpoint: true`` recomputes each block's conditioner and spline in the
backward pass (gradient checkpointing, for conv and MAF flows alike): the same loss and
gradients, the activations of one block in memory instead of all of them (the dataset-3
recipe uses it to train within 8 GiB on a CPU).

**Preprocessing** of layer i (ConvL2LFlow's layer norm -> log10 -> affine -> logit):
``f = voxel / E_i``; ``t = 1 + log10(f + floor (1 + u)) / log10(1/floor)`` with
``u ~ U[0, 1]`` dequantisation noise (so ``t`` is in [0, 1]); ``x = logit(t)`` with
alpha = ``shape_alpha`` (1e-2). Generation inverts it, subtracts the mean noise
``1.5 floor``, renormalises every layer to the energy flow's ``E_i`` (so the layer sums equal
the energy flow's energies), clamps to ``[0, max_voxel_mev]`` and zeroes voxels below
``threshold_mev``. Showers whose energy-flow deposit exceeds ``veto`` x E_inc are redrawn
(ConvL2LFlow's ``--veto 2.6``; with the default ``u_scale`` 2.42 the u-parametrisation already
bounds the deposit below 2.42 E_inc).

Recipe (YAML; every key has a default)::

    model: l2lflows
    dataset: '3'
    preprocessing: {floor: 1.0e-7, shape_alpha: 1.0e-2, energy_alpha: 1.0e-6, u_scale: 2.42,
                    threshold_mev: 0.01515, max_voxel_mev: 1.0e6, veto: 2.6}
    energy_flow: {transforms: 6, hidden: [64, 64], bins: 8, bound: 14.0, dropout: 0.0, seed: 1}
    shower_flow: {type: conv, shared: false, context_layers: 1, embedding: 16, blocks: 8,
                  squeeze: 2, bins: 8, width: 32, bound: 5.0, hidden: [256],
                  layers_per_step: null, stages: one, checkpoint: false, seed: 2}
                  # hidden: maf only; squeeze/width: conv; stages: one | per_layer
    sampling: {batch_size: 1000, cpu_batch_size: null}  # showers per pass (on a CPU)
    training: {energy_flow: {<TrainConfig>}, shower_flow: {<TrainConfig>}}

Export: the energy flow is a MAF (45 sequential passes per block to sample) and generation
redraws vetoed showers, so there is no one-pass ``(noise, E_inc) -> showers`` graph;
``caloforge export`` refuses L2LFlows with its one-line message (as for the CaloFlow
teacher).

References:
    S. Diefenbacher et al., "L2LFlows: Generating High-Fidelity 3D Calorimeter Images",
    arXiv:2302.11594.
    T. Buss et al., "Convolutional L2LFlows", arXiv:2405.20407.
    C. Krause, D. Shih, "CaloFlow", arXiv:2106.05285 (flow I).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caloforge import preprocessing as pp
from caloforge import stream
from caloforge.config import train_config
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError, GeometryError
from caloforge.geometry import Geometry
from caloforge.models.base import GeneratorModel
from caloforge.models.caloflow import (
    FLOW1_DEFAULTS,
    _dtype_device,
    _flow1,
    _section,
    finish_showers,
    generate_in_batches,
)
from caloforge.models.l2l_layers import LayerFlows
from caloforge.monitor import monitor_score
from caloforge.training import fit as train_stage

__all__ = ["L2LFlows"]

PREPROCESSING_DEFAULTS: dict[str, float] = {
    "floor": 1e-7,  # relative voxel floor of the log10 map (and dequantisation noise scale)
    "shape_alpha": 1e-2,  # logit regulariser of the layer shapes (ConvL2LFlow)
    "energy_alpha": 1e-6,  # logit regulariser of the energy flow's u-variables
    "u_scale": pp.U0_SCALE,  # u_0 = sum E_i / (u_scale E_inc)
    "threshold_mev": 0.01515,  # generated voxels below this are set to 0 (1.515e-5 GeV)
    "max_voxel_mev": 1e6,  # generated voxels are clamped to [0, max_voxel_mev]
    "veto": 2.6,  # redraw showers with E_dep / E_inc above this
}
SHOWER_DEFAULTS: dict[str, Any] = {
    "type": "conv", "shared": False, "context_layers": 1, "embedding": 16, "blocks": 8,
    "squeeze": 2, "bins": 8, "width": 32, "bound": 5.0, "hidden": [256],
    "layers_per_step": None, "stages": "one", "checkpoint": False, "seed": 2}
SAMPLING_DEFAULTS: dict[str, Any] = {"batch_size": 1000, "cpu_batch_size": None}
MAX_REDRAWS = 20  # veto redraw rounds before the remaining showers are kept as they are


def energy_condition(e_inc: Tensor) -> Tensor:
    """ConvL2LFlow's condition ``2 log10(E_inc / GeV) - 3`` for ``e_inc`` in MeV, (N,)."""
    return 2.0 * torch.log10(torch.as_tensor(e_inc) / 1000.0) - 3.0


class L2LFlows(GeneratorModel):
    """L2LFlows / ConvL2LFlow (see the module docstring).

    Args:
        geometry: A geometry whose layers all have one (n_alpha, n_r) shape (datasets 2, 3).
        config: The recipe.
    """

    name = "l2lflows"
    sections = ("preprocessing", "energy_flow", "shower_flow", "sampling")

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        source = config.get("_source", "config")
        self.prep = _section(config, "preprocessing", PREPROCESSING_DEFAULTS)
        for key in ("shape_alpha", "energy_alpha", "floor"):
            if not self.prep[key] < (0.5 if key != "floor" else 1e-2):
                raise ConfigError(f"{source}[preprocessing.{key}]: expected a value in (0, "
                                  f"{0.5 if key != 'floor' else 1e-2}), found {self.prep[key]}")
        self.energy_cfg = _section(config, "energy_flow", FLOW1_DEFAULTS)
        self.shower_cfg = s = _section(config, "shower_flow", SHOWER_DEFAULTS)
        self.sampling_cfg = _section(config, "sampling", SAMPLING_DEFAULTS)
        if s["type"] not in ("conv", "maf"):
            raise ConfigError(f"{source}[shower_flow.type]: expected 'conv' or 'maf', found "
                              f"{s['type']!r}")
        if s["stages"] not in ("one", "per_layer") or (s["stages"] == "per_layer"
                                                        and s["shared"]):
            raise ConfigError(f"{source}[shower_flow.stages]: expected 'one' or (with shared: "
                              f"false) 'per_layer', found {s['stages']!r}")
        L = geometry.n_layers
        m = s["layers_per_step"]
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= L):
            raise ConfigError(f"{source}[shower_flow.layers_per_step]: expected null or an "
                              f"integer 1..{L}, found {m!r}")
        shapes = {layer.shape for layer in geometry.layers}
        if len(shapes) != 1:
            raise GeometryError(f"geometry {geometry.name}: expected layers of one (alpha, r) "
                                f"shape for l2lflows (datasets 2, 3), found {sorted(shapes)}")
        shape = shapes.pop()
        if s["type"] == "conv" and shape[0] % s["squeeze"]:
            raise ConfigError(f"{source}[shower_flow.squeeze]: expected a divisor of n_alpha "
                              f"{shape[0]}, found {s['squeeze']}")
        if s["type"] == "conv" and s["squeeze"] < 2:
            raise ConfigError(f"{source}[shower_flow.squeeze]: expected at least 2, found 1")
        if not isinstance(s["checkpoint"], bool):
            raise ConfigError(f"{source}[shower_flow.checkpoint]: expected true or false, "
                              f"found {s['checkpoint']!r}")
        self.energy_flow = _flow1(geometry, self.energy_cfg)
        self.layers = LayerFlows(shape, L, s)
        for unit in self.layers.units:  # training memory, not results
            unit.flow.checkpoint_blocks = s["checkpoint"]

    # -- preprocessing ------------------------------------------------------------------------
    def _u_logit(self, e_layer: Tensor, e_inc: Tensor) -> Tensor:
        u = pp.u_from_layer_energies(e_layer, e_inc, scale=self.prep["u_scale"])
        return pp.logit(u, self.prep["energy_alpha"])

    def _vector(self, e_inc: Tensor, e_layer: Tensor) -> Tensor:
        return torch.cat([energy_condition(e_inc)[:, None],
                          pp.layer_energy_condition(e_layer)], 1)

    def shapes_to_x(self, showers: Tensor, e_layer: Tensor,
                    generator: torch.Generator | None = None, noise: bool = True) -> Tensor:
        """Flow-space layers (N, L, V_layer) of showers (N, V) MeV with layer energies (N, L)
        MeV; ``noise=False`` uses the mean dequantisation noise (for :meth:`log_prob`)."""
        n, L = e_layer.shape
        floor = self.prep["floor"]
        frac = (showers.reshape(n, L, -1) / (e_layer[..., None] + 1e-16)).clamp(0.0, 1.0)
        u = (torch.rand(frac.shape, generator=generator, dtype=frac.dtype).to(frac.device)
             if noise else torch.full_like(frac, 0.5))
        t = 1.0 + torch.log10(frac + floor * (1.0 + u)) / -math.log10(floor)
        return pp.logit(t.clamp(0.0, 1.0), self.prep["shape_alpha"])

    def x_to_showers(self, x: Tensor, e_layer: Tensor) -> Tensor:
        """Inverse of :meth:`shapes_to_x`: voxels (N, V) MeV whose layer sums are ``e_layer``
        (before the clamp and the threshold)."""
        floor = self.prep["floor"]
        t = pp.inverse_logit(x, self.prep["shape_alpha"]).clamp(0.0, 1.0)
        frac = (torch.pow(10.0, (t - 1.0) * -math.log10(floor)) - 1.5 * floor).clamp_min(0.0)
        return finish_showers(frac.reshape(len(x), -1), e_layer, self.geometry, self.prep)

    def prepare(self, data: ShowerSet, generator: torch.Generator | None = None,
                showers: bool = True) -> dict[str, Tensor]:
        """Flow inputs (float64): ``x1`` (N, L) logit u, ``c1`` (N, 1) energy condition,
        ``e_inc`` (N,) MeV and, with ``showers``, ``x`` (N, L, V_layer) flow-space layers and
        ``vec`` (N, 1 + L) shower-flow condition vector."""
        e_inc = torch.as_tensor(np.asarray(data.e_inc, dtype=np.float64)).reshape(-1)
        vox = torch.as_tensor(np.asarray(data.showers, dtype=np.float64))
        e_layer = vox @ pp.layer_matrix(self.geometry, torch.float64)
        out = {"x1": self._u_logit(e_layer, e_inc), "c1": energy_condition(e_inc)[:, None],
               "e_inc": e_inc}
        if showers:
            out["x"] = self.shapes_to_x(vox, e_layer, generator)
            out["vec"] = self._vector(e_inc, e_layer)
        return out

    def _batch_fn(self, keys: tuple[str, ...], dtype: torch.dtype
                  ) -> Callable[[ShowerSet, torch.Generator], tuple[Tensor, ...]]:
        def fn(chunk: ShowerSet, gen: torch.Generator) -> tuple[Tensor, ...]:
            d = self.prepare(chunk, gen, showers="x" in keys)
            return tuple(d[k].to(dtype) for k in keys)
        return fn

    # -- training -----------------------------------------------------------------------------
    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            **options: Any) -> dict[str, list[float]]:
        """Train the energy flow (stage ``energy_flow``) then the shower flows
        (``shower_flow``) by maximum likelihood, reading batches from ``train`` (a ShowerSet,
        path(s) or a source: streamed in bounded memory)."""
        options = {k: v for k, v in options.items() if v is not None}
        if options:
            raise ConfigError(f"l2lflows.fit: expected no options, found {', '.join(options)}")
        cfg_e = train_config(self.config, "energy_flow", epochs, progress)
        cfg_s = train_config(self.config, "shower_flow", epochs, progress)
        if cfg_e.monitor != "loss":
            raise ConfigError("training.energy_flow[monitor]: expected 'loss' (the shower "
                              "flows are untrained while it trains), found "
                              f"{cfg_e.monitor!r}")
        for what, data in (("train", train), ("val", val)):
            geo = getattr(data, "geometry", None)
            if geo is not None and geo.n_voxels != self.geometry.n_voxels:
                raise GeometryError(f"{what}[showers]: expected {self.geometry.n_voxels} "
                                    f"voxels (geometry {self.geometry.name}), found "
                                    f"{geo.n_voxels}")
        source = (stream.as_source(train, self.geometry, seed=cfg_e.seed)
                  or stream.InMemorySource(train, seed=cfg_e.seed))
        val_src = stream.as_val_source(val, self.geometry, seed=cfg_e.seed + 1)
        score = monitor_score(cfg_s, self.sample,
                              stream.monitor_val(cfg_s.monitor, cfg_s.monitor_samples,
                                                 val_src if not isinstance(val, ShowerSet)
                                                 else val), "training.shower_flow")
        L, m = self.geometry.n_layers, self.shower_cfg["layers_per_step"]

        def energy_loss(flow: torch.nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
            x, c = batch
            return -flow.log_prob(x, c).mean()

        def shower_loss(flows: torch.nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
            x, vec = batch
            if m is None or m == L or not flows.training:
                return -flows.log_prob(x, vec).mean()
            layers = torch.randperm(L)[:m].sort().values.to(x.device)
            return -flows.log_prob(x, vec, layers).mean() * (L / m)

        def layer_loss(i: int) -> Callable[[torch.nn.Module, tuple[Tensor, ...]], Tensor]:
            sel = torch.tensor([i])

            def loss(unit: torch.nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
                x, vec = batch
                return -self.layers.log_prob(x, vec, sel.to(x.device)).mean()
            return loss

        stages: list[tuple[str, torch.nn.Module, Any, tuple[str, ...], Any, Any]] = [
            ("energy_flow", self.energy_flow, cfg_e, ("x1", "c1"), energy_loss, None)]
        if self.shower_cfg["stages"] == "per_layer":  # as published: flow i alone, in order
            stages += [(f"layer{i:02d}", self.layers.units[i], cfg_s, ("x", "vec"),
                        layer_loss(i), score if i == L - 1 else None) for i in range(L)]
        else:
            stages.append(("shower_flow", self.layers, cfg_s, ("x", "vec"), shower_loss, score))
        history: dict[str, list[float]] = {}
        for name, module, cfg, keys, loss, sc in stages:
            fn = self._batch_fn(keys, cfg.torch_dtype)
            va = stream.TensorBatches(val_src, fn, cfg.seed + 1) if val_src is not None else None
            h = train_stage(module, loss, stream.TensorBatches(source, fn, cfg.seed), va, cfg,
                            run_dir, tag=f"{name}_", val_score=sc, resume=resume, desc=name)
            history.update({f"{name}_{k}": v for k, v in h.items()})
        self.eval()
        return history

    def stage_tags(self) -> list[tuple[str, str]]:
        """``energy_flow_`` then ``shower_flow_`` (all layers in one stage) or, with
        ``shower_flow.stages: per_layer``, ``layer00_`` .. ``layer44_`` ("layer 0", ...)."""
        tags = [("energy_flow_", "energy flow")]
        if self.shower_cfg["stages"] == "per_layer":
            return tags + [(f"layer{i:02d}_", f"layer {i}")
                           for i in range(self.geometry.n_layers)]
        return [*tags, ("shower_flow_", "shower flows (all layers)")]

    # -- generation ---------------------------------------------------------------------------
    def sample_layer_energies(self, e_inc: Tensor) -> Tensor:
        """Layer energies (N, L) MeV from the energy flow, redrawing deposits above
        ``veto`` x E_inc (at most :data:`MAX_REDRAWS` rounds)."""
        dtype, device = _dtype_device(self.energy_flow)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=dtype)

        def draw(ee: Tensor) -> Tensor:
            u = pp.inverse_logit(self.energy_flow.sample(energy_condition(ee)[:, None]),
                                 self.prep["energy_alpha"])
            return pp.layer_energies_from_u(u, ee, scale=self.prep["u_scale"])

        e_layer = draw(e)
        for _ in range(MAX_REDRAWS):
            bad = e_layer.sum(1) > self.prep["veto"] * e
            if not bool(bad.any()):
                break
            e_layer[bad] = draw(e[bad])
        return e_layer

    def sample_showers(self, e_inc: Tensor, e_layer: Tensor, noise: Tensor | None = None
                       ) -> Tensor:
        """Voxels (N, V) MeV given E_inc (N,) and layer energies (N, L) MeV: the shower flows
        layer by layer (``noise`` (N, L, V_layer) fixes their base draws)."""
        dtype, device = _dtype_device(self.layers)
        e = torch.as_tensor(e_inc).reshape(-1).to(device=device, dtype=dtype)
        e_layer = torch.as_tensor(e_layer).to(device=device, dtype=dtype)
        if noise is not None:
            noise = noise.to(device=device, dtype=dtype)
        x = self.layers.sample(self._vector(e, e_layer), noise)
        return self.x_to_showers(x, e_layer)

    def generate(self, e_inc: Tensor) -> tuple[Tensor, Tensor]:
        """``(showers (N, V), energy-flow layer energies (N, L), in the showers' dtype)`` in
        MeV, in batches (:func:`~caloforge.models.caloflow.generate_in_batches`)."""
        return generate_in_batches(self, e_inc, _dtype_device(self.layers)[0],
                                   layers_as_showers=True)

    def sample(self, e_inc: Tensor) -> Tensor:
        """Showers (N, V) in MeV for incident energies ``e_inc`` (N,) in MeV."""
        self.eval()
        return self.generate(e_inc)[0]

    def compiled_sampler(self) -> Callable[[Tensor], Tensor]:
        """:meth:`sample` as is: a loop of L layer passes plus a MAF energy flow and veto
        redraws, which torch.compile would unroll; runs eagerly."""
        return self.sample

    def log_prob(self, showers: Tensor, e_inc: Tensor) -> Tensor:
        """``log p`` (N,) in the flows' space (logit u + flow-space layers, mean
        dequantisation noise): energy flow + every layer's shower flow."""
        data = ShowerSet(np.asarray(torch.as_tensor(e_inc).reshape(-1).cpu()),
                         np.asarray(torch.as_tensor(showers).cpu()), self.geometry)
        vox = torch.as_tensor(np.asarray(data.showers, dtype=np.float64))
        e = torch.as_tensor(np.asarray(data.e_inc, dtype=np.float64))
        e_layer = vox @ pp.layer_matrix(self.geometry, torch.float64)
        d1, dev = _dtype_device(self.energy_flow)
        lp1 = self.energy_flow.log_prob(self._u_logit(e_layer, e).to(dev, d1),
                                        energy_condition(e)[:, None].to(dev, d1))
        d2, dev2 = _dtype_device(self.layers)
        x = self.shapes_to_x(vox, e_layer, noise=False).to(dev2, d2)
        lp2 = self.layers.log_prob(x, self._vector(e, e_layer).to(dev2, d2))
        return lp1.to(lp2.dtype) + lp2
