"""CaloMan / VAE+INN: tiny configs train, sample finite non-negative showers, round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from caloforge.data import ShowerSet
from caloforge.errors import CaloforgeError
from caloforge.geometry import Geometry
from caloforge.models import model_class
from caloforge.models.base import load_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"epochs": 1, "batch_size": 100}


def toy_showers(geo: Geometry, n: int, seed: int = 0) -> ShowerSet:
    """Sparse random showers with E_dep ~ (0.5..1) E_inc (no simulator needed)."""
    rng = np.random.default_rng(seed)
    e = 2.0 ** rng.integers(8, 23, n)
    s = rng.gamma(0.3, 1.0, (n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.4)
    s[:, geo.layer_slice(0)] *= rng.random((n, 1)) < 0.8  # some empty layers
    s = s / np.maximum(s.sum(1, keepdims=True), 1e-12) * e[:, None] * rng.uniform(0.5, 1, (n, 1))
    return ShowerSet(e, s, geo)


def tiny(config: dict) -> dict:
    """Shrink a config to test size, keeping its scheme and model choices."""
    cfg = dict(config)
    cfg["hidden"] = [32, 32]
    cfg["latent_dim"] = 4 if cfg.get("latent_dim") != "auto" else "auto"
    for key in ("latent_flow", "energy_flow"):
        if key in cfg:
            cfg[key] = {**cfg[key], "hidden": [16, 16], "transforms": 2}
    cfg["training"] = {k: TINY for k in ("energy_flow", "autoencoder", "latent_flow")}
    return cfg


@pytest.fixture(scope="module", autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("caloman/*.yaml"))
                         + sorted(CONFIGS.glob("vae-inn/*.yaml")), ids=lambda p: p.stem)
def test_configs_fit_sample_roundtrip(path: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    geo = Geometry.preset(config["dataset"])
    data = toy_showers(geo, 300)
    model = model_class(config["model"])(geo, tiny(config))
    hist = model.fit(data.subset(slice(0, 250)), data.subset(slice(250, 300)), tmp_path,
                     progress=False)
    assert any(k.startswith("latent_flow_") for k in hist)
    e = torch.tensor(data.e_inc[:40])
    x = model.sample(e)
    assert x.shape == (40, geo.n_voxels)
    assert torch.isfinite(x).all() and (x >= 0).all()
    model.save(tmp_path / "model.pt")
    again = load_model(tmp_path / "model.pt")
    torch.manual_seed(7)
    a = model.sample(e)
    torch.manual_seed(7)
    b = again.sample(e)
    assert torch.equal(a, b)


def test_energy_flow_layer_sums_and_resume(tmp_path: Path) -> None:
    geo = Geometry.preset("1-photons")
    data = toy_showers(geo, 200, seed=1)
    cfg = tiny({"preprocessing": "caloflow", "decoder_noise": "zero-inflated",
                "autoencoder": "ae", "latent_flow": {}, "energy_flow": {}})
    model = model_class("caloman")(geo, cfg)
    model.fit(data, None, tmp_path, progress=False)
    assert (tmp_path / "latent_flow_final.pt").exists()
    x = model.sample(torch.full((30,), 5000.0))
    assert torch.isfinite(x).all() and (x >= 0).all()
    assert float(x.sum(1).max()) < 2.42 * 5000.0 * 1.0001  # u_0 <= 1
    # a resumed fit loads the finished stages and gives the same weights
    again = model_class("caloman")(geo, cfg)
    again.fit(data, None, tmp_path, resume=True, progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    recon = model.reconstruct(data.subset(slice(0, 10)))
    assert recon.shape == (10, geo.n_voxels)


def test_latent_auto_from_intrinsic_dimension(tmp_path: Path) -> None:
    geo = Geometry.preset("1-photons")
    data = toy_showers(geo, 200, seed=2)
    cfg = tiny({"preprocessing": "caloscore", "latent_dim": "auto",
                "intrinsic_dim": {"n": 200, "k": [5, 10]}, "latent_flow": {}})
    model = model_class("vae-inn")(geo, cfg)
    model.fit(data, None, None, progress=False)
    assert isinstance(model.config["latent_dim"], int) and model.latent_dim >= 2
    model.save(tmp_path / "m.pt")
    assert load_model(tmp_path / "m.pt").latent_dim == model.latent_dim


@pytest.mark.parametrize("bad", [{"preprocessing": "x"}, {"autoencoder": "gan"},
                                 {"decoder_noise": "poisson"}, {"latent_dim": 1},
                                 {"bogus_key": 1}])
def test_bad_config_raises(bad: dict) -> None:
    with pytest.raises(CaloforgeError):
        model_class("caloman")(Geometry.preset("1-photons"), bad)


def test_bad_training_stage_raises() -> None:
    geo = Geometry.preset("1-photons")
    model = model_class("caloman")(geo, tiny({"preprocessing": "caloscore"}) |
                                   {"training": {"decoder": {}}})
    with pytest.raises(CaloforgeError):
        model.fit(toy_showers(geo, 50), None, None, progress=False)
