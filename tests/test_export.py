"""ONNX export: the exported sampler runs in a real ONNX Runtime session and matches torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from caloforge.errors import ConfigError
from caloforge.export import check_onnx, export_onnx
from caloforge.geometry import Geometry
from caloforge.models.caloinn import CaloINN
from caloforge.simulate import simulate

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    showers = simulate("1-photons", 300, seed=3)
    model = CaloINN(showers.geometry, {
        "flow": {"transforms": 2, "hidden": [32], "bins": 4},
        "training": {"epochs": 1, "batch_size": 100, "progress": False}})
    model.fit(showers, None, progress=False)
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.pt")
    return model.eval(), run


@pytest.mark.parametrize("batch", [1, 1000])
def test_onnx_matches_torch_at_any_batch(trained, tmp_path, batch):
    model, _ = trained
    path = export_onnx(model, tmp_path / "m.onnx")
    gen = torch.Generator().manual_seed(batch)
    z = torch.randn(batch, model.noise_dim, generator=gen)
    e = 2.0 ** torch.randint(8, 23, (batch,), generator=gen).float()
    model.float()
    with torch.no_grad():
        ref = model.from_noise(z, e).numpy()
    out = ort.InferenceSession(str(path)).run(None, {"noise": z.numpy(), "e_inc": e.numpy()})[0]
    assert out.shape == (batch, 368)
    assert np.all(out >= 0)
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    assert check_onnx(model, path) < 1e-4


def test_export_cli(trained, tmp_path):
    _, run = trained
    out = tmp_path / "caloinn.onnx"
    cmd = [sys.executable, "-m", "caloforge.cli", "export", "--checkpoint", str(run / "model.pt"),
           "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.exists() and "max relative deviation" in res.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr


def test_models_without_one_pass_sampler_are_refused(tmp_path):
    from caloforge.models.caloflow import CaloFlow

    model = CaloFlow(Geometry.preset("1-photons"), {})  # MAF teacher: D sequential passes
    with pytest.raises(ConfigError, match="one-pass sampler"):
        export_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_caloman_with_sequential_energy_flow_is_refused(tmp_path):
    from caloforge.models.caloman import CaloMan

    model = CaloMan(Geometry.preset("2"), {"network": {"type": "layered"},
                                           "energy_flow": {"type": "autoregressive"}})
    with pytest.raises(ConfigError, match="energy_flow.type"):
        export_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_caloman_ds2_sampler_matches_torch(tmp_path):
    """The zero-inflated decoder's per-voxel draws are graph inputs: same noise, same showers."""
    from caloforge.models.caloman import CaloMan

    torch.manual_seed(0)
    model = CaloMan(Geometry.preset("2"), {
        "autoencoder": "ae", "latent_dim": 4, "hidden": [16], "decoder_noise": "zero-inflated",
        "network": {"type": "layered", "hidden": [8], "code": 2, "embed": 2},
        "energy_flow": {"transforms": 2, "hidden": [8, 8]},
        "latent_flow": {"transforms": 2, "hidden": [8, 8]}}).eval()
    path = export_onnx(model, tmp_path / "cm.onnx")
    assert model.noise_dim == 45 + 4 + 2 * 6480
    assert check_onnx(model, path, n=64) < 1e-3
