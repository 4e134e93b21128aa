"""CaloMan: density estimation on learned manifolds (and VAE+INN as a configuration of it).

A two-step generator (Loaiza-Ganem et al.; Cresswell et al., CaloMan):

1. a *generalized autoencoder* (AE or VAE, MLP encoder/decoder, conditioned on E_inc and, in
   the CaloFlow-style schemes, on the layer energies) learns the shower manifold;
2. a conditional RQS *coupling flow* (4 blocks, 8 bins, residual hyper-networks) learns the
   density of the standardised latents.

In the CaloFlow-style schemes a step-0 flow ("energy flow", coupling or autoregressive RQS)
learns the layer energies p(E_1..E_L | E_inc) through CaloFlow's u-variables; at generation
the decoder output is renormalised layer by layer to the sampled layer energies.

Preprocessing schemes (``preprocessing:``):

* ``caloscore``: x = E_vox / (3.1 E_inc) (CaloScore, arXiv:2106.05285 style), no energy flow;
* ``caloflow``: x = logit(E_vox / E_layer) (alpha = 1e-6) + energy flow (seed setup (b));
* ``caloflow-nolog``: x = E_vox / E_layer + energy flow (seed setup (c), pions).

The latent size is ``latent_dim`` or ``auto`` (Levina–Bickel estimate on the training set, see
:mod:`caloforge.intrinsic_dim`).

**The fidelity fix** (``decoder_noise:``; see :mod:`caloforge.models.autoencoder` and
BENCHMARKS.md, section ``caloman_fidelity``): the original CaloMan decodes the latent with a
deterministic decoder, i.e. generates the *mean* shower of a latent neighbourhood. Those
showers have no empty voxels and no voxel-level fluctuations, so a classifier separates them
from Geant4 almost perfectly (challenge AUC 0.9997, recall 0.01). With
``decoder_noise: zero-inflated`` the decoder predicts for every voxel the probability of being
hit and a log-normal energy fraction, and generation *samples* both before renormalising to
the energy-flow layer energies.

Sampling is one batched pass (energy flow -> latent flow -> decoder -> postprocessing, all in
torch under ``inference_mode``), no per-shower Python loop.

References:
    J. Cresswell, B. Ross, G. Loaiza-Ganem, H. Reyes-Gonzalez, M. Letizia, A. Caterini,
    "CaloMan: Fast generation of calorimeter showers with density estimation on learned
    manifolds", arXiv:2211.15380.
    G. Loaiza-Ganem et al., "Diagnosing and fixing manifold overfitting in deep generative
    models", arXiv:2204.07172.
    C. Krause, D. Shih, "CaloFlow", arXiv:2106.05285 (u-variables, layer normalisation).
    F. Ernst et al., "Normalizing flows for high-dimensional detector simulations" (VAE+INN),
    arXiv:2312.09290.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from caloforge import preprocessing as pp
from caloforge import stream
from caloforge.config import check_values
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError
from caloforge.geometry import Geometry
from caloforge.models.autoencoder import AE_KINDS, NOISE_MODELS, ConditionalAutoencoder
from caloforge.models.base import GeneratorModel
from caloforge.models.geometric_ae import NETWORKS, LayeredAutoencoder, layer_grid
from caloforge.training import TrainConfig
from caloforge.training import fit as train_stage

SCHEMES = ("caloscore", "caloflow", "caloflow-nolog")
#: Stage names (keys of the config's ``training:`` mapping), in training order.
STAGES = ("energy_flow", "autoencoder", "latent_flow")
#: CaloScore scale factor f.
CALOSCORE_F = 3.1
#: Uniform noise (MeV) added to layer energies before the u-variables (removes the point
#: mass of empty layers at u = 0, like CaloFlow's voxel noise).
LAYER_NOISE_MEV = 1e-3

DEFAULTS: dict[str, Any] = {
    "preprocessing": "caloflow",
    "autoencoder": "vae",
    "latent_dim": 20,
    "hidden": [512, 512, 512],
    "network": {"type": "mlp", "hidden": [64], "code": 8, "embed": 8, "channels": 8},
    "beta": 1.0,
    "decoder_noise": "none",
    "condition_on_layers": True,
    "latent_encoding": "mean",
    "latent_noise": 0.0,
    "threshold_mev": 0.01,
    "latent_flow": {"type": "coupling", "transforms": 4, "bins": 8, "hidden": [256, 256, 256],
                    "residual": True, "bound": 5.0},
    "energy_flow": {"type": "coupling", "transforms": 4, "bins": 8, "hidden": [128, 128, 128],
                    "residual": True, "bound": 5.0},
    "intrinsic_dim": {"n": 5000, "k": [5, 20]},
    "sample_batch": 50_000,
}
#: Upper bound on N x V of one sampling pass (float32 temporaries of ~8 MB each), so that
#: passes stay in the CPU caches (~300 showers on dataset 2, ~50 on dataset 3).
SAMPLE_VOXELS = 2_000_000


def _merged(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in defaults.items()}
    for k, v in config.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "training":
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


class _ZukoAutoregressive(nn.Module):
    """Autoregressive RQS flow (MAF) from zuko with the caloforge flow interface
    (``log_prob(x, c)``, ``sample(c)``); used for the pion energy flow (few dimensions, so
    the sequential inverse is cheap)."""

    def __init__(self, features: int, context: int, transforms: int, bins: int,
                 hidden: list[int]) -> None:
        super().__init__()
        import zuko

        self.features = features
        self.flow = zuko.flows.NSF(features, context, transforms=transforms, bins=bins,
                                   hidden_features=tuple(hidden))

    def log_prob(self, x: Tensor, c: Tensor) -> Tensor:
        return self.flow(c).log_prob(x)

    def sample(self, c: Tensor) -> Tensor:
        return self.flow(c).sample()

    def inverse(self, z: Tensor, c: Tensor) -> Tensor:
        """Noise -> data (a sequential pass per feature; not ONNX-exportable)."""
        return self.flow(c).transform.inv(z)


def _build_flow(features: int, context: int, cfg: dict[str, Any], seed: int,
                where: str = "config[flow.type]") -> nn.Module:
    kind = cfg.get("type", "coupling")
    hidden = [int(h) for h in cfg.get("hidden", [256, 256])]
    if kind == "autoregressive":
        return _ZukoAutoregressive(features, context, int(cfg.get("transforms", 8)),
                                   int(cfg.get("bins", 8)), hidden)
    if kind != "coupling":
        raise ConfigError(f"{where}: expected 'coupling' or 'autoregressive', found "
                          f"{kind!r}")
    from caloforge.flows.coupling import CouplingRQSFlow

    residual = bool(cfg.get("residual", False)) and len(set(hidden)) == 1
    return CouplingRQSFlow(features, context, transforms=int(cfg.get("transforms", 4)),
                           bins=int(cfg.get("bins", 8)), hidden=tuple(hidden),
                           residual=residual, bound=float(cfg.get("bound", 5.0)), seed=seed)


class CaloMan(GeneratorModel):
    """CaloMan two-step generator (see the module docstring for the configuration keys).

    Args:
        geometry: The calorimeter geometry.
        config: The recipe: ``preprocessing``, ``autoencoder`` (ae|vae), ``latent_dim`` (int or
            ``auto``), ``hidden``, ``beta``, ``decoder_noise`` (none|gaussian|zero-inflated),
            ``condition_on_layers``, ``latent_encoding`` (mean|sample), ``latent_noise``
            (std of Gaussian noise added to standardised latents when the flow is fitted),
            ``threshold_mev``, ``latent_flow``/``energy_flow`` (flow settings), ``training``
            ({stage: TrainConfig fields}).
    """

    name = "caloman"
    defaults: dict[str, Any] = DEFAULTS

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        src = self.src = str(self.config.get("_source", "config"))
        allowed = set(self.defaults) | {"model", "dataset", "training", "description"}
        for k in self.config:
            if k not in allowed and not str(k).startswith("_"):
                raise ConfigError(f"{src}[{k}]: expected one of {', '.join(sorted(allowed))}, "
                                  f"found unknown key {k!r}")
        # every key and value at every nesting level (energy_flow.hidden, intrinsic_dim.k...)
        cfg = check_values({k: v for k, v in self.config.items() if k in self.defaults},
                           self.defaults, src, skip=("latent_dim",))
        self.cfg = cfg
        self.scheme = cfg["preprocessing"]
        if self.scheme not in SCHEMES:
            raise ConfigError(f"{src}[preprocessing]: expected one of {', '.join(SCHEMES)}, "
                              f"found {self.scheme!r}")
        if cfg["autoencoder"] not in AE_KINDS:
            raise ConfigError(f"{src}[autoencoder]: expected 'ae' or 'vae', found "
                              f"{cfg['autoencoder']!r}")
        if cfg["decoder_noise"] not in NOISE_MODELS:
            raise ConfigError(f"{src}[decoder_noise]: expected one of {', '.join(NOISE_MODELS)}"
                              f", found {cfg['decoder_noise']!r}")
        if cfg["network"]["type"] not in NETWORKS:
            raise ConfigError(f"{src}[network.type]: expected one of {', '.join(NETWORKS)}, "
                              f"found {cfg['network']['type']!r}")
        self.grid = (layer_grid(geometry, f"{src}[network.type]")
                     if cfg["network"]["type"] != "mlp" else None)
        if cfg["latent_encoding"] not in ("mean", "sample"):
            raise ConfigError(f"{src}[latent_encoding]: expected 'mean' or 'sample', found "
                              f"{cfg['latent_encoding']!r}")
        self.n_layers = geometry.n_layers
        self.n_voxels = geometry.n_voxels
        self.uses_energy_flow = self.scheme != "caloscore"
        self.n_cond = 1 + (self.n_layers if self.uses_energy_flow and
                           cfg["condition_on_layers"] else 0)
        self.register_buffer("layer_mat", pp.layer_matrix(geometry), persistent=False)
        #: every layer has as many voxels (datasets 2 and 3): layer sums and per-layer scaling
        #: are reshapes, not (N, V) x (V, L) matmuls (~60 % of the streamed preprocessing)
        self.equal_layers = len({layer.n_voxels for layer in geometry.layers}) == 1
        self.cond_norm = pp.Standardizer(self.n_cond)
        self.x_norm = pp.Standardizer(self.n_voxels)
        if self.uses_energy_flow:
            if self.n_layers < 2:
                raise ConfigError(f"{src}[preprocessing]: {self.scheme!r} needs >= 2 layers, "
                                  f"found {self.n_layers}")
            self.u_norm = pp.Standardizer(self.n_layers)
            self.energy_flow = _build_flow(self.n_layers, 1, cfg["energy_flow"], seed=1,
                                           where=f"{src}[energy_flow.type]")
        self._build_latent(cfg["latent_dim"])

    # -- construction ---------------------------------------------------------------------------
    def _build_latent(self, latent: Any) -> None:
        """(Re)build the autoencoder and the latent flow for latent size ``latent``."""
        cfg = self.cfg
        if latent == "auto":  # placeholder until fit() estimates it
            latent = 2
        if not isinstance(latent, int) or isinstance(latent, bool) or not (
                2 <= latent <= self.n_voxels):
            raise ConfigError(f"{self.src}[latent_dim]: expected an integer 2..{self.n_voxels} "
                              f"(the voxel count) or 'auto', found {latent!r}")
        self.latent_dim = latent
        net = cfg["network"]
        hidden = [int(h) for h in cfg["hidden"]]
        if self.grid is None:
            self.autoencoder = ConditionalAutoencoder(
                self.n_voxels, self.n_cond, latent, hidden, kind=cfg["autoencoder"],
                noise=cfg["decoder_noise"], beta=float(cfg["beta"]))
        else:
            self.autoencoder = LayeredAutoencoder(
                self.grid, self.n_cond, latent, hidden, kind=cfg["autoencoder"],
                noise=cfg["decoder_noise"], beta=float(cfg["beta"]), cell=net["type"],
                cell_hidden=net["hidden"], code=int(net["code"]), embed=int(net["embed"]),
                channels=int(net["channels"]))
        self.z_norm = pp.Standardizer(latent)
        self.latent_flow = _build_flow(latent, self.n_cond, cfg["latent_flow"], seed=2,
                                       where=f"{self.src}[latent_flow.type]")

    # -- preprocessing --------------------------------------------------------------------------
    def _layer_e(self, showers: Tensor) -> Tensor:
        return self._layer_sums(showers)

    def _condition(self, e_inc: Tensor, e_layer: Tensor | None) -> Tensor:
        """Raw condition features: log10(E_inc/33.3 GeV) [, log10((E_l + 1 keV)/100 GeV)]."""
        parts = [pp.energy_condition(e_inc).reshape(-1, 1)]
        if self.n_cond > 1:
            parts.append(torch.log10((e_layer + 1e-3) / 1e5))
        return torch.cat(parts, dim=1)

    def _fractions(self, showers: Tensor, e_inc: Tensor, e_layer: Tensor) -> Tensor:
        """Non-negative per-voxel fractions: E/E_layer (CaloFlow schemes) or E/(3.1 E_inc)."""
        if self.uses_energy_flow:
            if self.equal_layers:
                n = showers.shape[0]
                return (showers.reshape(n, self.n_layers, -1) / (e_layer.unsqueeze(2) + 1e-16)
                        ).reshape(n, self.n_voxels)
            return showers / (e_layer @ self.layer_mat.to(showers.dtype).T + 1e-16)
        return showers / (CALOSCORE_F * e_inc.reshape(-1, 1))

    def _to_x(self, frac: Tensor) -> Tensor:
        """Encoder-input space (before standardisation) from fractions."""
        return pp.logit(frac.clamp(0.0, 1.0)) if self.scheme == "caloflow" else frac

    def _from_x(self, x: Tensor) -> Tensor:
        return pp.inverse_logit(x) if self.scheme == "caloflow" else x

    def _u(self, e_layer: Tensor, e_inc: Tensor) -> Tensor:
        """Logit u-variables of the layer energies (CaloFlow flow I inputs)."""
        return pp.logit(pp.u_from_layer_energies(e_layer, e_inc))

    def _prepare(self, data: ShowerSet, gen: torch.Generator | None = None
                 ) -> dict[str, Tensor]:
        """Tensors of the three stages for a shower set (float64 until stored)."""
        showers = torch.as_tensor(np.asarray(data.showers, dtype=np.float64))
        e_inc = torch.as_tensor(np.asarray(data.e_inc, dtype=np.float64))
        e_layer = self._layer_e(showers)
        frac = self._fractions(showers, e_inc, e_layer)
        out = {"x": self._to_x(frac), "frac": frac, "c": self._condition(e_inc, e_layer),
               "e_inc": e_inc}
        if self.uses_energy_flow:
            noisy = e_layer + LAYER_NOISE_MEV * torch.rand(e_layer.shape, generator=gen,
                                                           dtype=e_layer.dtype)
            out["u"] = self._u(noisy, e_inc)
            out["c_e"] = pp.energy_condition(e_inc).reshape(-1, 1)
        return out

    def _ae_inputs(self, data: ShowerSet, dtype: torch.dtype,
                   gen: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The autoencoder's inputs of one batch (standardised x, standardised condition,
        fractions) in ``dtype``: :meth:`_prepare` followed by the standardisers. The streamed
        autoencoder stage runs it on every batch, so its cost is part of every training step.

        For a float32 stage on datasets 2/3 (CaloFlow scheme, equal layers) the voxel work is
        done in one fused float32 pass (0.036 instead of 0.15 ms per dataset-2 shower at 2
        threads; the float64 route rounded to float32 agrees to ~4e-5 in standardised units):
        the layer energies are summed in float64 and the logit is taken as
        ``log(y / (1 - y))`` with ``1 - y = alpha + (1 - 2 alpha)(1 - f)``, exact near
        ``f = 1`` where ``1 - y`` computed from ``y`` would lose every digit in float32.
        Otherwise :meth:`_prepare` itself (``gen`` draws its layer-energy noise)."""
        if dtype == torch.float32 and self.scheme == "caloflow" and self.equal_layers:
            return self._ae_inputs_f32(data)
        t = self._prepare(data, gen)
        return (self.x_norm(t["x"].to(torch.float32)).to(dtype),
                self.cond_norm(t["c"].to(torch.float32)).to(dtype), t["frac"].to(dtype))

    def _ae_inputs_f32(self, data: ShowerSet) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`_ae_inputs` in float32 (see there)."""
        f32, a = torch.float32, pp.LOGIT_ALPHA
        showers = torch.tensor(np.asarray(data.showers), dtype=f32)  # a copy
        e_inc = torch.as_tensor(np.asarray(data.e_inc, dtype=np.float64))
        n = showers.shape[0]
        per_layer = showers.view(n, self.n_layers, -1)
        e_layer = per_layer.sum(2, dtype=torch.float64)
        frac = per_layer.div_((e_layer + 1e-16).to(f32).unsqueeze(2)).view(n, self.n_voxels)
        f = frac.clamp(0.0, 1.0)
        one_minus_y = torch.sub(1.0, f).mul_(1 - 2 * a).add_(a)
        x = f.mul_(1 - 2 * a).add_(a).div_(one_minus_y).log_()
        c = self._condition(e_inc, e_layer)
        return self.x_norm(x), self.cond_norm(c.to(f32)), frac

    # -- training -------------------------------------------------------------------------------
    def _train_config(self, stage: str, epochs: int | None, progress: bool) -> TrainConfig:
        tr = self.config.get("training", {}) or {}
        if not isinstance(tr, dict):
            raise ConfigError(f"{self.src}[training]: expected a mapping of stages, found "
                              f"{type(tr).__name__}")
        for k in tr:
            if k not in STAGES:
                raise ConfigError(f"{self.src}[training]: expected stages "
                                  f"{', '.join(STAGES)}, found {k!r}")
        d = dict(tr.get(stage) or {})
        if epochs is not None:
            d["epochs"] = int(epochs)
        d.setdefault("progress", progress)
        d["progress"] = d["progress"] and progress
        return TrainConfig.from_dict(d, source=f"{self.src}[training.{stage}]")

    def _estimate_latent(self, x: Tensor, progress: bool) -> int:
        from caloforge.intrinsic_dim import estimate

        ic = self.cfg.get("intrinsic_dim", {})
        n = min(int(ic.get("n", 5000)), len(x))
        k_min, k_max = (int(v) for v in ic.get("k", [5, 20]))
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
        est = estimate(x[idx].numpy(), k_min, min(k_max, max(k_min, n - 2)))
        latent = max(2, int(math.ceil(est.dimension)))
        if progress:
            print(f"caloman: intrinsic dimension {est.dimension:.1f} -> latent_dim {latent}")
        return latent

    def fit(self, train: ShowerSet, val: ShowerSet | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            **options: Any) -> dict[str, list[float]]:
        """Train energy flow (CaloFlow schemes), autoencoder, then latent flow.

        Each stage is one :func:`caloforge.training.fit` call with tag ``{stage}_`` in
        ``run_dir``; with ``resume`` finished stages are loaded instead of retrained.
        ``train``/``val`` are in-memory sets, or files / sources (streamed, bounded memory;
        see :mod:`caloforge.stream`).
        Returns the histories, keys prefixed by the stage name.
        """
        source = stream.as_source(train, self.geometry, seed=int(options.get("seed", 0)))
        if len(source if source is not None else train) < 2:
            raise ConfigError(f"train: expected at least 2 showers, found {len(train)}")
        run_dir = Path(run_dir) if run_dir is not None else None
        if source is not None:  # files: streamed, bounded memory
            return self._fit_streamed(source, val, run_dir, resume, epochs, progress,
                                      int(options.get("seed", 0)))
        gen = torch.Generator().manual_seed(int(options.get("seed", 0)))
        tr = self._prepare(train, gen)
        va = self._prepare(val, gen) if val is not None and len(val) > 0 else None
        history: dict[str, list[float]] = {}

        def record(stage: str, h: dict[str, list[float]]) -> None:
            history.update({f"{stage}_{k}": v for k, v in h.items()})

        def f32(t: Tensor) -> Tensor:
            return t.to(torch.float32)

        # fitted standardisations (deterministic given the data, so resume recomputes them)
        self.cond_norm.fit(f32(tr["c"]))
        self.x_norm.fit(f32(tr["x"]))
        if self.uses_energy_flow:
            self.u_norm.fit(f32(tr["u"]))

        # stage 0: layer energies
        if self.uses_energy_flow:
            cfg = self._train_config("energy_flow", epochs, progress)
            dt = cfg.torch_dtype
            u_tr = (self.u_norm(f32(tr["u"])).to(dt), tr["c_e"].to(dt))
            u_va = (self.u_norm(f32(va["u"])).to(dt), va["c_e"].to(dt)) if va else None
            record("energy_flow", train_stage(
                self.energy_flow, lambda m, b: -m.log_prob(b[0], b[1]).mean(), u_tr, u_va, cfg,
                run_dir, tag="energy_flow_", resume=resume, desc="energy flow"))

        # stage 1: autoencoder (latent size from the intrinsic dimension if asked)
        if self.cfg["latent_dim"] == "auto":
            latent = self._estimate_latent(f32(self.x_norm(f32(tr["x"]))), progress)
            self.config["latent_dim"] = latent
            self.cfg["latent_dim"] = latent
            self._build_latent(latent)
        cfg = self._train_config("autoencoder", epochs, progress)
        ae_tr = tuple(t.to(cfg.torch_dtype) for t in
                      (self.x_norm(f32(tr["x"])), self.cond_norm(f32(tr["c"])), tr["frac"]))
        ae_va = tuple(t.to(cfg.torch_dtype) for t in
                      (self.x_norm(f32(va["x"])), self.cond_norm(f32(va["c"])), va["frac"])
                      ) if va else None
        record("autoencoder", train_stage(
            self.autoencoder, lambda m, b: m.loss(*b), ae_tr, ae_va, cfg, run_dir,
            tag="autoencoder_", resume=resume, desc="autoencoder"))

        # stage 2: density of the standardised latents
        z_tr = self._encode(ae_tr[0], ae_tr[1], gen)
        self.z_norm.fit(z_tr.float())
        cfg = self._train_config("latent_flow", epochs, progress)
        zs_tr = (self.z_norm(z_tr.float()).to(cfg.torch_dtype), ae_tr[1].to(cfg.torch_dtype))
        zs_va = None
        if va:
            z_va = self._encode(ae_va[0], ae_va[1], gen)
            zs_va = (self.z_norm(z_va.float()).to(cfg.torch_dtype),
                     ae_va[1].to(cfg.torch_dtype))
        noise = float(self.cfg["latent_noise"])

        def flow_loss(m: nn.Module, b: tuple[Tensor, ...]) -> Tensor:
            z = b[0] + noise * torch.randn_like(b[0]) if noise > 0 and m.training else b[0]
            return -m.log_prob(z, b[1]).mean()

        record("latent_flow", train_stage(
            self.latent_flow, flow_loss, zs_tr, zs_va, cfg, run_dir, tag="latent_flow_",
            resume=resume, desc="latent flow"))
        self.to(torch.float32)
        self.eval()
        return history

    def _fit_streamed(self, source: stream.ShowerSource, val: Any, run_dir: Path | None,
                      resume: bool, epochs: int | None, progress: bool, seed: int
                      ) -> dict[str, list[float]]:
        """:meth:`fit` from a :class:`~caloforge.stream.ShowerSource`.

        Pass 1 fits the standardisers of conditions, voxels and u-variables and keeps the
        energy flow's inputs (L + 1 numbers a shower); the autoencoder, the only stage that
        needs the voxels, trains on per-batch preprocessed shuffled chunks; pass 2 encodes
        every shower and keeps the latents and conditions (latent + 1 + L numbers a shower).
        The two small flows then train from memory (~25 MB per 100k showers at latent 16,
        gathered over ``torchrun`` ranks)."""
        history: dict[str, list[float]] = {}
        val_src = stream.as_val_source(val, self.geometry, seed=seed + 1)

        def record(stage: str, h: dict[str, list[float]]) -> None:
            history.update({f"{stage}_{k}": v for k, v in h.items()})

        def f32(t: Tensor) -> Tensor:
            return t.to(torch.float32)

        # pass 1: the standardisers, and the small energy-flow inputs (46 numbers a shower)
        moments = {k: stream.Moments() for k in ("c", "x", "u")}
        u_rows = stream.Rows(len(source))
        for k, chunk in enumerate(stream.stats_chunks(source)):
            t = self._prepare(chunk, torch.Generator().manual_seed(seed * 1_000_003 + k))
            for key, m in moments.items():
                if key in t:
                    m.update(f32(t[key]))
            if self.uses_energy_flow:
                u_rows.add(torch.cat([f32(t["u"]), f32(t["c_e"])], 1))
        for key, norm in (("c", self.cond_norm), ("x", self.x_norm), ("u", getattr(
                self, "u_norm", None))):
            if norm is not None:
                m = moments[key].all_reduce()
                norm.fit_moments(m.mean, m.std)

        def batches(fn: Any, src: stream.ShowerSource | None, s: int
                    ) -> stream.TensorBatches | None:
            return stream.TensorBatches(src, fn, s) if src is not None else None

        def val_rows(fn: Any) -> Tensor | None:
            """``fn(chunk, gen)`` over the whole validation source, concatenated."""
            if val_src is None:
                return None
            return stream.collect_rows(
                (fn(chunk, torch.Generator().manual_seed(seed + 7 + k))
                 for k, chunk in enumerate(val_src.chunks())), len(val_src))

        if self.uses_energy_flow:  # small inputs: trained from memory like the in-memory path
            cfg = self._train_config("energy_flow", epochs, progress)
            dt = cfg.torch_dtype
            n_l = self.n_layers

            def prep_u(chunk: ShowerSet, gen: torch.Generator) -> Tensor:
                t = self._prepare(chunk, gen)
                return torch.cat([f32(t["u"]), f32(t["c_e"])], 1)

            u_all = stream.gather_rows(u_rows.tensor())
            del u_rows
            u_va = val_rows(prep_u)
            record("energy_flow", train_stage(
                self.energy_flow, lambda m, b: -m.log_prob(b[0], b[1]).mean(),
                (self.u_norm(u_all[:, :n_l]).to(dt), u_all[:, n_l:].to(dt)),
                (self.u_norm(u_va[:, :n_l]).to(dt), u_va[:, n_l:].to(dt))
                if u_va is not None else None,
                cfg, run_dir, tag="energy_flow_", resume=resume, desc="energy flow"))
            del u_all, u_va

        if self.cfg["latent_dim"] == "auto":
            n = int(self.cfg.get("intrinsic_dim", {}).get("n", 5000))
            first = self._prepare(stream.head(source, n))
            latent = self._estimate_latent(f32(self.x_norm(f32(first["x"]))), progress)
            del first
            self.config["latent_dim"] = latent
            self.cfg["latent_dim"] = latent
            self._build_latent(latent)
        cfg = self._train_config("autoencoder", epochs, progress)
        dt = cfg.torch_dtype

        def prep_ae(chunk: ShowerSet, gen: torch.Generator) -> tuple[Tensor, ...]:
            return self._ae_inputs(chunk, dt, gen)

        record("autoencoder", train_stage(
            self.autoencoder, lambda m, b: m.loss(*b), batches(prep_ae, source, cfg.seed),
            batches(prep_ae, val_src, cfg.seed + 1), cfg, run_dir, tag="autoencoder_",
            resume=resume, desc="autoencoder"))

        # pass 2: the latents (a few numbers a shower) through the trained encoder, kept in
        # memory: the latent flow then trains like the in-memory path
        cfg = self._train_config("latent_flow", epochs, progress)
        dt_z = cfg.torch_dtype
        noise = float(self.cfg["latent_noise"])

        def prep_z(chunk: ShowerSet, gen: torch.Generator) -> Tensor:
            x, c, _ = prep_ae(chunk, gen)
            z = self._encode(x, c, gen).to("cpu", torch.float32)
            return torch.cat([z, c.to("cpu", torch.float32)], 1)

        z_all = stream.gather_rows(stream.collect_rows(
            (prep_z(chunk, torch.Generator().manual_seed(seed * 1_000_003 + k))
             for k, chunk in enumerate(stream.stats_chunks(source))), len(source)))
        d = self.latent_dim
        self.z_norm.fit(z_all[:, :d])
        z_va = val_rows(prep_z)

        def flow_loss(m: nn.Module, b: tuple[Tensor, ...]) -> Tensor:
            z = b[0] + noise * torch.randn_like(b[0]) if noise > 0 and m.training else b[0]
            return -m.log_prob(z, b[1]).mean()

        record("latent_flow", train_stage(
            self.latent_flow, flow_loss,
            (self.z_norm(z_all[:, :d]).to(dt_z), z_all[:, d:].to(dt_z)),
            (self.z_norm(z_va[:, :d]).to(dt_z), z_va[:, d:].to(dt_z))
            if z_va is not None else None,
            cfg, run_dir, tag="latent_flow_", resume=resume, desc="latent flow"))
        self.to(torch.float32)
        self.eval()
        return history

    @torch.no_grad()
    def _encode(self, x: Tensor, c: Tensor, gen: torch.Generator, batch: int = 10_000
                ) -> Tensor:
        """Latents of standardised inputs: posterior mean, or a posterior sample."""
        self.autoencoder.eval()
        p = next(self.autoencoder.parameters())
        out = []
        for lo in range(0, len(x), batch):
            mu, logvar = self.autoencoder.encode(x[lo:lo + batch].to(p), c[lo:lo + batch].to(p))
            if logvar is not None and self.cfg["latent_encoding"] == "sample":
                eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
                mu = mu + torch.exp(0.5 * logvar) * eps
            out.append(mu)
        return torch.cat(out)

    # -- generation -----------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, e_inc: Tensor, stochastic: bool = True) -> Tensor:
        """Showers (N, V) in MeV for incident energies ``e_inc`` (N,) in MeV.

        One batched pass per ``sample_batch`` showers: energy flow -> latent flow -> decoder
        -> inverse preprocessing -> threshold. ``stochastic=False`` uses the decoder mean
        (the original CaloMan behaviour for every noise model).
        """
        p = next(self.parameters())
        e_inc = torch.as_tensor(e_inc).reshape(-1).to(device=p.device, dtype=p.dtype)
        step = int(self.cfg["sample_batch"])
        return torch.cat([self._sample(e_inc[lo:lo + step], stochastic)
                          for lo in range(0, len(e_inc), step)]) if len(e_inc) else \
            torch.zeros(0, self.n_voxels, dtype=p.dtype, device=p.device)

    @property
    def noise_dim(self) -> int:
        """Standard-normal numbers one shower is generated from: L (energy flow) + latent +
        0, 1 or 2 per voxel (none, gaussian, zero-inflated decoder); see :meth:`from_noise`."""
        return ((self.n_layers if self.uses_energy_flow else 0) + self.latent_dim
                + self.autoencoder.voxel_noise * self.n_voxels)

    def export_blocker(self) -> str | None:
        """Why :func:`caloforge.export.export_onnx` cannot export this model, or None."""
        if self.uses_energy_flow and isinstance(self.energy_flow, _ZukoAutoregressive):
            return (f"{self.src}[energy_flow.type]: expected 'coupling' for an ONNX export, "
                    f"found 'autoregressive' (a sequential inverse)")
        return None

    def _sample(self, e_inc: Tensor, stochastic: bool) -> Tensor:
        chunk = max(1, SAMPLE_VOXELS // self.n_voxels)
        return self._generate(e_inc, None, stochastic=stochastic, chunk=chunk)

    def from_noise(self, noise: Tensor, e_inc: Tensor) -> Tensor:
        """Deterministic sampler: standard-normal ``noise`` (N, noise_dim) and ``e_inc`` (N,)
        MeV -> showers (N, V) MeV; :meth:`sample` is this with ``torch.randn`` noise and
        :func:`caloforge.export.export_onnx` exports it.

        The noise columns are, in order: L for the energy flow (CaloFlow schemes), d for the
        latent flow, then the decoder's voxel noise (:meth:`ConditionalAutoencoder.from_noise`).
        """
        return self._generate(e_inc, noise, stochastic=True)

    def _layer_sums(self, x: Tensor) -> Tensor:
        """(N, V) -> (N, L) sums over each layer's voxels."""
        if self.equal_layers:  # equal contiguous layers: a reshape, no V x L matmul
            return x.reshape(x.shape[0], self.n_layers, -1).sum(dim=2)
        return x @ self.layer_mat.to(x.dtype)

    def _spread_mul(self, x: Tensor, y: Tensor) -> Tensor:
        """(N, V) x (N, L) -> (N, V): every voxel times its layer's value."""
        if self.equal_layers:  # broadcast over (N, L, A R): no (N, V) copy of y
            n = x.shape[0]
            return (x.reshape(n, self.n_layers, -1) * y.unsqueeze(2)).reshape(n, self.n_voxels)
        return x * (y @ self.layer_mat.to(y.dtype).T)

    def _generate(self, e_inc: Tensor, noise: Tensor | None, stochastic: bool,
                  chunk: int | None = None) -> Tensor:
        """Energy flow -> latent flow -> decoder -> inverse preprocessing -> threshold; the
        flows and the decoder draw their own noise when ``noise`` is None.

        The flows run on the whole batch (few numbers a shower, many small ops); with
        ``chunk`` the decoder and the voxel arithmetic run ``chunk`` showers at a time, so
        their (chunk, V) temporaries stay in the CPU caches."""
        n_e = self.n_layers if self.uses_energy_flow else 0
        d = self.latent_dim
        e_layer = None
        if self.uses_energy_flow:
            c_e = pp.energy_condition(e_inc).reshape(-1, 1)
            u = (self.energy_flow.sample(c_e) if noise is None
                 else self.energy_flow.inverse(noise[:, :n_e], c_e))
            u = self.u_norm.inverse(u)
            e_layer = pp.layer_energies_from_u(pp.inverse_logit(u).clamp(0.0, 1.0), e_inc)
        c = self.cond_norm(self._condition(e_inc, e_layer))
        z = (self.latent_flow.sample(c) if noise is None
             else self.latent_flow.inverse(noise[:, n_e:n_e + d], c))
        z = self.z_norm.inverse(z)
        if chunk is not None and len(z) > chunk:
            return torch.cat([self._decode_showers(
                z[lo:lo + chunk], c[lo:lo + chunk], e_inc[lo:lo + chunk],
                e_layer[lo:lo + chunk] if e_layer is not None else None,
                None if noise is None else noise[lo:lo + chunk, n_e + d:], stochastic)
                for lo in range(0, len(z), chunk)])
        return self._decode_showers(z, c, e_inc, e_layer,
                                    None if noise is None else noise[:, n_e + d:], stochastic)

    def _decode_showers(self, z: Tensor, c: Tensor, e_inc: Tensor, e_layer: Tensor | None,
                        noise: Tensor | None, stochastic: bool) -> Tensor:
        """Latents and conditions -> showers (MeV): decoder, inverse preprocessing, layer
        energies, threshold (``noise``: the decoder's voxel noise, or None to draw it)."""
        if noise is None:
            out, is_frac, fallback = self.autoencoder.generate(z, c, stochastic=stochastic)
        else:
            out, is_frac, fallback = self.autoencoder.from_noise(z, c, noise)
        # zero-inflated fractions are >= 0 already
        frac = out if is_frac else self._from_x(self.x_norm.inverse(out)).clamp_min(0.0)
        if self.uses_energy_flow:
            sums = self._layer_sums(frac)
            if fallback is not None and stochastic:  # an empty sampled layer: the fallback
                frac = frac + self._spread_mul(fallback, (sums <= 0).to(frac.dtype))
                sums = self._layer_sums(frac)
            showers = self._spread_mul(frac, e_layer / (sums + 1e-16))
        else:
            showers = frac * (CALOSCORE_F * e_inc.reshape(-1, 1))
        # y = x if x > cut else 0: one pass with threshold (a mask product takes two), which
        # ONNX cannot export for a non-zero cut
        cut = float(self.cfg["threshold_mev"])
        if torch.onnx.is_in_onnx_export():
            return showers * (showers > cut).to(showers.dtype)
        return nn.functional.threshold(showers, cut, 0.0)

    @torch.inference_mode()
    def reconstruct(self, data: ShowerSet, stochastic: bool = False) -> Tensor:
        """Encode and decode real showers (MeV -> MeV), with their true layer energies: the
        autoencoder's reconstruction diagnostic."""
        t = self._prepare(data)
        p = next(self.parameters())
        x = self.x_norm(t["x"].float()).to(p)
        c = self.cond_norm(t["c"].float()).to(p)
        mu, _ = self.autoencoder.encode(x, c)
        out, is_frac, _ = self.autoencoder.generate(mu, c, stochastic=stochastic)
        frac = (out if is_frac else self._from_x(self.x_norm.inverse(out))).clamp_min(0.0)
        if self.uses_energy_flow:
            m = self.layer_mat.to(frac.dtype)
            e_layer = self._layer_e(torch.as_tensor(data.showers).to(frac))
            return frac / ((frac @ m) @ m.T + 1e-16) * (e_layer @ m.T)
        return frac * (CALOSCORE_F * torch.as_tensor(data.e_inc).to(frac).reshape(-1, 1))

    # -- persistence ----------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True,
                        assign: bool = False):
        """Rebuild the latent networks first if the checkpoint's latent size differs (e.g. a
        model whose ``latent_dim: auto`` was resolved during training)."""
        key = "z_norm.mean"
        if key in state_dict and state_dict[key].shape[0] != self.latent_dim:
            self._build_latent(int(state_dict[key].shape[0]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class VAEINN(CaloMan):
    """VAE+INN (Ernst et al., arXiv:2312.09290): an invertible network (RQS coupling flow) on
    the latent space of a VAE. The same machinery as :class:`CaloMan` with VAE defaults:
    CaloFlow-style layer normalisation with logit, latent 50, a larger coupling INN."""

    name = "vae-inn"
    defaults: dict[str, Any] = _merged({
        "preprocessing": "caloflow",
        "autoencoder": "vae",
        "latent_dim": 50,
        "beta": 1e-2,
        "decoder_noise": "gaussian",
        "latent_encoding": "sample",
        "latent_flow": {"type": "coupling", "transforms": 8, "bins": 10,
                        "hidden": [256, 256, 256], "residual": True, "bound": 5.0},
    }, DEFAULTS)
