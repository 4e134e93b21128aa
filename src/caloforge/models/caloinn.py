"""CaloINN: one conditional RQS coupling INN on the whole shower (dataset 1).

Preprocessing (MODELS.md §1.4, Ernst et al. 2312.09290), all invertible and stored as buffers:

1. uniform dequantisation noise U[0, ``noise_mev``] on every voxel (training only);
2. each layer divided by its energy (``layer_eps``) -> per-layer shapes (V values);
3. the layer energies as u-variables ``u_0 = sum E_i / E_inc``, ``u_n = E_n / sum_{k>=n} E_k``
   appended (L values; ``u0_scale`` 1 as in CaloINN, no clamp on u_0);
4. ``log(x + alpha)`` on the whole (V + L) vector;
5. a fitted :class:`~caloforge.preprocessing.Standardizer`, so that the spline bound applies
   in standardised units.

Condition: ``log2(E_inc / GeV)``, standardised. Flow: [ActNorm -> RQS coupling ->
permutation] x ``transforms`` with LeakyReLU MLP hyper-networks (zero-initialised last layer).

Sampling inverts the chain: flow inverse -> un-standardise -> ``exp(.) - alpha`` -> layer
energies from the u-variables (with ``E_inc``) -> every layer renormalised to exactly its
energy -> clamp >= 0 -> voxels below ``threshold_mev`` set to 0.

Training events are cut on ``u_0 < u0_max`` (3.5 for pions in CaloINN) to drop the rare
showers with E_dep >> E_inc.

Reference:
    F. Ernst, L. Favaro, C. Krause, T. Plehn, D. Shih, "Normalizing flows for high-dimensional
    detector simulations", arXiv:2312.09290 (code: heidelberg-hepml/CaloINN).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor

from caloforge import preprocessing as pp
from caloforge import stream
from caloforge.config import check_values, section, train_config
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError
from caloforge.flows import ContextEmbedding, CouplingRQSFlow
from caloforge.geometry import Geometry
from caloforge.models.base import GeneratorModel
from caloforge.monitor import monitor_score
from caloforge.training import fit

#: Defaults of the ``flow`` section (the CaloINN pion card where it gives a value).
FLOW_DEFAULTS: dict[str, Any] = {
    "transforms": 12, "bins": 10, "hidden": [256, 256, 256], "bound": 5.0, "act": "leaky_relu",
    "residual": False, "actnorm": True, "permute": True, "dropout": 0.0, "embedding": 0,
    "seed": 0,
}
#: Defaults of the ``preprocessing`` section (MeV).
PREP_DEFAULTS: dict[str, Any] = {
    "alpha": 1e-8, "noise_mev": 5e-3, "layer_eps": 1e-10, "u0_max": 3.5,
    "threshold_mev": 5e-3, "noise_seed": 0,
}


def _merged(config: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``config[name]``, every key and value checked."""
    return check_values(section(config, name), defaults, f"{config.get('_source', 'config')}"
                                                          f"[{name}]")


class CaloINN(GeneratorModel):
    """CaloINN generator (see the module docstring). ``config`` sections: ``flow``,
    ``preprocessing``, ``training`` (a single stage)."""

    name = "caloinn"
    sections = ("flow", "preprocessing")

    def __init__(self, geometry: Geometry, config: dict[str, Any]) -> None:
        super().__init__(geometry, config)
        self.flow_cfg = _merged(config, "flow", FLOW_DEFAULTS)
        self.prep = _merged(config, "preprocessing", PREP_DEFAULTS)
        f = self.flow_cfg
        self.n_features = geometry.n_voxels + geometry.n_layers
        from caloforge.flows.embedding import ACTIVATIONS

        if f["act"] not in ACTIVATIONS:
            raise ConfigError(f"{config.get('_source', 'config')}[flow.act]: expected one of "
                              f"{', '.join(ACTIVATIONS)}, found {f['act']!r}")
        emb = int(f["embedding"])
        embedding = ContextEmbedding(1, emb, hidden=(64,)) if emb > 0 else None
        try:
            self.flow = CouplingRQSFlow(
                self.n_features, 1, transforms=int(f["transforms"]), bins=int(f["bins"]),
                hidden=tuple(int(h) for h in f["hidden"]), residual=bool(f["residual"]),
                bound=float(f["bound"]), actnorm=bool(f["actnorm"]), permute=bool(f["permute"]),
                context_embedding=embedding, act=str(f["act"]), dropout=float(f["dropout"]),
                seed=int(f["seed"]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config.get('_source', 'config')}[flow]: expected numbers and "
                              f"lists of widths, found {exc}") from None
        self.scaler = pp.Standardizer(self.n_features)
        self.cond_scaler = pp.Standardizer(1)

    # -- preprocessing --------------------------------------------------------------------
    def condition(self, e_inc: Tensor) -> Tensor:
        """Standardised ``log2(E_inc / GeV)`` (N, 1) for ``e_inc`` in MeV."""
        return self.cond_scaler(pp.log2_gev_condition(e_inc).reshape(-1, 1))

    def _to_log_space(self, showers: Tensor, e_inc: Tensor) -> Tensor:
        shapes, e_layer = pp.normalise_layers(showers, self.geometry, self.prep["layer_eps"])
        u = pp.u_from_layer_energies(e_layer, e_inc, scale=1.0, clamp=False)
        return pp.log_alpha(torch.cat([shapes, u], 1), self.prep["alpha"])

    def preprocess(self, data: ShowerSet, fit_scalers: bool = False) -> tuple[Tensor, Tensor]:
        """``(x (N, V+L) standardised, c (N, 1))`` in float64 on the CPU, with noise."""
        showers = torch.as_tensor(data.showers, dtype=torch.float64)
        e_inc = torch.as_tensor(data.e_inc, dtype=torch.float64)
        gen = torch.Generator().manual_seed(int(self.prep["noise_seed"]))
        noisy = pp.dequantize(showers, float(self.prep["noise_mev"]), gen)
        v = self._to_log_space(noisy, e_inc)
        if fit_scalers:
            self.scaler.double().fit(v)
            self.cond_scaler.double().fit(pp.log2_gev_condition(e_inc).reshape(-1, 1))
        self.scaler.double()
        self.cond_scaler.double()
        return self.scaler(v), self.condition(e_inc)

    def postprocess(self, x: Tensor, e_inc: Tensor) -> Tensor:
        """Flow-space samples (N, V+L) -> voxel energies (N, V) in MeV."""
        v = self.scaler.inverse(x)
        v = v.clamp(max=math.log(float(self.prep["u0_max"]) + self.prep["alpha"]))
        y = pp.inverse_log_alpha(v, self.prep["alpha"]).clamp_min(0.0)
        n_vox = self.geometry.n_voxels
        e_layer = pp.layer_energies_from_u(y[:, n_vox:], e_inc, scale=1.0)
        showers = pp.denormalise_layers(y[:, :n_vox], e_layer, self.geometry)
        return pp.threshold(showers.clamp_min(0.0), float(self.prep["threshold_mev"]))

    def _cut(self, data: ShowerSet) -> ShowerSet:
        u0 = data.showers.sum(1) / data.e_inc
        keep = u0 < float(self.prep["u0_max"])
        return data if keep.all() else data.subset(keep)

    # -- the contract ---------------------------------------------------------------------
    def fit(self, train: ShowerSet | stream.ShowerSource | str | os.PathLike | list,
            val: ShowerSet | stream.ShowerSource | str | os.PathLike | list | None,
            run_dir: str | os.PathLike | None = None, *, resume: bool = False,
            epochs: int | None = None, progress: bool = True,
            **options: Any) -> dict[str, list[float]]:
        """Maximum-likelihood training with :func:`caloforge.training.fit` (one stage, tag
        ``""``: ``run_dir/last.pt``, ``final.pt``, ``metrics.csv``). ``train``/``val`` are
        in-memory sets or files / sources (streamed, see :mod:`caloforge.stream`)."""
        if options.get("teacher") is not None:
            raise ConfigError("--teacher: expected no teacher for caloinn (only "
                              "caloflow-student takes one), found a teacher checkpoint")
        cfg = train_config(self.config, epochs=epochs, progress=progress)
        source = stream.as_source(train, self.geometry, seed=cfg.seed)
        if source is not None:  # files: streamed, bounded memory
            return self._fit_streamed(source, val, cfg, run_dir, resume)
        x, c = self.preprocess(self._cut(train), fit_scalers=True)
        val_t = self.preprocess(self._cut(val)) if val is not None and len(val) else None

        def loss_fn(module: CaloINN, batch: tuple[Tensor, ...]) -> Tensor:
            return -module.flow.log_prob(batch[0], batch[1]).mean() / module.n_features

        return fit(self, loss_fn, (x, c), val_t, cfg, run_dir,
                   val_score=monitor_score(cfg, self.sample, val), resume=resume,
                   desc="caloinn")

    def _fit_streamed(self, source: stream.ShowerSource, val: Any, cfg: Any,
                      run_dir: str | os.PathLike | None, resume: bool
                      ) -> dict[str, list[float]]:
        """:meth:`fit` from a :class:`~caloforge.stream.ShowerSource`: the standardisers in
        one streaming pass, then per-batch preprocessing (fresh dequantisation noise per
        batch, seeded) in the source's background thread."""
        noise, seed = float(self.prep["noise_mev"]), int(self.prep["noise_seed"])
        x_m, c_m = stream.Moments(), stream.Moments()
        for k, chunk in enumerate(stream.stats_chunks(source)):
            chunk = self._cut(chunk)
            e = torch.as_tensor(chunk.e_inc, dtype=torch.float64)
            gen = torch.Generator().manual_seed(seed + 7919 * k)
            showers = pp.dequantize(torch.as_tensor(chunk.showers, dtype=torch.float64),
                                    noise, gen)
            x_m.update(self._to_log_space(showers, e))
            c_m.update(pp.log2_gev_condition(e).reshape(-1, 1))
        x_m.all_reduce()
        c_m.all_reduce()
        self.scaler.double().fit_moments(x_m.mean, x_m.std)
        self.cond_scaler.double().fit_moments(c_m.mean, c_m.std)
        mx, sx = self.scaler.mean.clone(), self.scaler.std.clone()  # float64 snapshots
        mc, sc = self.cond_scaler.mean.clone(), self.cond_scaler.std.clone()

        def prep(chunk: ShowerSet, gen: torch.Generator) -> tuple[Tensor, Tensor]:
            chunk = self._cut(chunk)
            e = torch.as_tensor(chunk.e_inc, dtype=torch.float64)
            showers = pp.dequantize(torch.as_tensor(chunk.showers, dtype=torch.float64),
                                    noise, gen)
            x = (self._to_log_space(showers, e) - mx) / sx
            return x, (pp.log2_gev_condition(e).reshape(-1, 1) - mc) / sc

        def loss_fn(module: CaloINN, batch: tuple[Tensor, ...]) -> Tensor:
            return -module.flow.log_prob(batch[0], batch[1]).mean() / module.n_features

        val_src = stream.as_val_source(val, self.geometry, seed=cfg.seed + 1)
        val_b = stream.TensorBatches(val_src, prep, cfg.seed + 1) if val_src else None
        score = monitor_score(cfg, self.sample,
                              stream.monitor_val(cfg.monitor, cfg.monitor_samples, val_src))
        return fit(self, loss_fn, stream.TensorBatches(source, prep, cfg.seed), val_b, cfg,
                   run_dir, val_score=score, resume=resume, desc="caloinn")

    @property
    def noise_dim(self) -> int:
        """Size of the Gaussian noise vector one shower is generated from."""
        return self.n_features

    def from_noise(self, z: Tensor, e_inc: Tensor) -> Tensor:
        """Deterministic sampler: noise ``z`` (N, noise_dim) and ``e_inc`` (N,) MeV -> showers
        (N, V) MeV. This is the graph :func:`caloforge.export.export_onnx` exports."""
        return self.postprocess(self.flow.inverse(z, self.condition(e_inc)), e_inc)

    @torch.inference_mode()
    def sample(self, e_inc: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Showers (N, V) in MeV for ``e_inc`` (N,) in MeV, on the model's device."""
        ref = self.scaler.mean
        e_inc = torch.as_tensor(e_inc, dtype=ref.dtype).reshape(-1).to(ref.device)
        return self.from_noise(self.flow.noise(len(e_inc), ref, generator), e_inc)

    @torch.inference_mode()
    def log_prob(self, showers: Tensor, e_inc: Tensor) -> Tensor:
        """``log p`` (N,) of showers in the standardised preprocessing space (nats; the
        Jacobian of the preprocessing is not included; no dequantisation noise)."""
        ref = self.scaler.mean
        showers = torch.as_tensor(showers, dtype=ref.dtype, device=ref.device)
        e_inc = torch.as_tensor(e_inc, dtype=ref.dtype, device=ref.device).reshape(-1)
        x = self.scaler(self._to_log_space(showers, e_inc))
        return self.flow.log_prob(x, self.condition(e_inc))
