"""cls-resnet: the 3D ResNet classifier of datasets 2 and 3 (shape, conditioning, power, CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_showers, run_cli

from caloforge.data import write_showers
from caloforge.errors import ConfigError
from caloforge.evaluation import evaluate
from caloforge.evaluation.classifier import PairRows
from caloforge.evaluation.distortions import scale_voxels
from caloforge.evaluation.inputs import classifier_input, input_blocks
from caloforge.evaluation.resnet import (
    ResNet3d,
    grid_shape,
    image_standardizer,
    resnet_store_test,
    resnet_test,
)
from caloforge.evaluation.scratch import scratch_file, write_scratch
from caloforge.evaluation.verdict import DISTINGUISHABLE
from caloforge.geometry import Geometry
from caloforge.simulate import simulate

QUICK = {"epochs": 1, "width": 4, "batch_size": 64, "lr": 1e-3, "min_steps": 100,
         "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def ds2() -> tuple:
    """Two independent simulations of 500 dataset-2 showers (reference seed 1, other seed 2)."""
    torch.set_num_threads(1)
    return (simulate("2", 500, seed=1, progress=False),
            simulate("2", 500, seed=2, progress=False))


def test_grids_of_the_geometries() -> None:
    assert grid_shape(Geometry.preset("2")) == (45, 16, 9)
    assert grid_shape(Geometry.preset("3")) == (45, 50, 18)
    for name in ("1-photons", "1-pions", "calogan"):
        with pytest.raises(ConfigError, match="cls-resnet: expected a geometry whose layers"):
            grid_shape(Geometry.preset(name))


def test_forward_shape_on_a_tiny_grid() -> None:
    from caloforge.evaluation.resnet import native_convolutions

    torch.manual_seed(0)
    net = ResNet3d((5, 4, 3), width=2)
    x = torch.randn(7, 1 + 5 * 4 * 3)
    with native_convolutions(net.grid):  # oneDNN's backward of this grid hangs (see there)
        out = net(x)
        assert out.shape == (7, 1)
        assert net.head.in_features == 4 * 2 + 1  # pooled channels of the last stage + E_inc
        out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ConfigError, match="expected 1 \\+ 60 columns"):
        net(torch.randn(2, 60))


def test_voxels_are_read_on_the_layer_alpha_r_grid() -> None:
    """The image is the geometry's voxel order reshaped: a voxel at (layer l, alpha a, r j)
    lands at image[l, a, j]."""
    net = ResNet3d((3, 4, 2), width=2)
    seen = {}
    net.stem.register_forward_hook(lambda m, inp, out: seen.update(image=inp[0]))
    x = torch.zeros(1, 1 + 24)
    x[0, 1 + (2 * 4 + 1) * 2 + 1] = 1.0  # layer 2, alpha 1, r 1
    net.eval()
    net(x)
    assert seen["image"].shape == (1, 1, 3, 4, 2)
    assert seen["image"][0, 0, 2, 1, 1] == 1.0 and seen["image"].sum() == 1.0


def test_incident_energy_enters_before_the_last_layer() -> None:
    """Showers that differ only in E_inc get different logits, through the BatchNorm'd
    energy feature alone (the image branch gives both the same features)."""
    torch.manual_seed(0)
    net = ResNet3d((5, 4, 3), width=2)
    net.train()
    net(torch.randn(64, 61) * 3.0)  # move the running statistics away from 0 / 1
    net.eval()
    x = torch.randn(1, 61).repeat(2, 1)
    x[1, 0] += 2.0
    features = []
    net.pool.register_forward_hook(lambda m, inp, out: features.append(out.flatten(1)))
    with torch.no_grad():
        out = net(x)
    assert torch.equal(features[0][0], features[0][1])
    w_energy = float(net.head.weight[0, -1].detach())
    bn = net.energy_norm
    scale = float(bn.weight[0].detach() / torch.sqrt(bn.running_var[0] + bn.eps))
    assert float(out[1, 0] - out[0, 0]) == pytest.approx(2.0 * scale * w_energy, rel=1e-4)
    assert abs(float(out[1, 0] - out[0, 0])) > 1e-3


def test_image_standardizer_pools_all_voxels() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, size=(50, 13)) * np.arange(1, 14)
    store = PairRows(x[:25], x[25:])
    prep = image_standardizer(store, np.arange(50))
    z = prep(x)
    assert z[:, 0].mean() == pytest.approx(0.0, abs=1e-6)
    assert z[:, 0].std() == pytest.approx(1.0, rel=1e-5)
    assert z[:, 1:].mean() == pytest.approx(0.0, abs=1e-5)
    assert z[:, 1:].std() == pytest.approx(1.0, rel=1e-5)
    # one scale for all voxels: ratios between voxels are kept
    d = (x[:, 1:] - x[:, 1:].mean())
    assert np.allclose(z[:, 1:] * d.std(), d, rtol=1e-4, atol=1e-4)


def test_sees_a_gross_distortion_and_not_a_null_pair(ds2) -> None:
    ref, other = ds2
    thr = ref.geometry.eval_threshold
    xr = classifier_input("cls-resnet", ref, thr)
    gross = resnet_test(classifier_input("cls-resnet", scale_voxels(other, 1.5), thr), xr,
                        ref.geometry, **QUICK)
    assert gross.kind == "resnet" and gross.learned
    assert gross.auc > 0.8 and gross.reading == DISTINGUISHABLE
    null = resnet_test(classifier_input("cls-resnet", other, thr), xr, ref.geometry, **QUICK)
    assert null.reading != DISTINGUISHABLE
    assert abs(null.auc - 0.5) < 0.1
    assert len(null.train_loss) == len(null.test_curve) >= 1
    assert null.n_test == 2 * 100  # official 60/20/20 proportions of 500 per class


def test_streamed_from_scratch_equals_in_memory(tmp_path, ds2) -> None:
    ref, other = ds2
    ref, other = ref.subset(slice(0, 120)), other.subset(slice(0, 120))
    thr = ref.geometry.eval_threshold
    opts = {**QUICK, "min_steps": 4}
    mem = resnet_test(classifier_input("cls-resnet", other, thr),
                      classifier_input("cls-resnet", ref, thr), ref.geometry, **opts)
    with scratch_file(tmp_path, "resnet") as path:
        store = write_scratch(path, (input_blocks("cls-resnet", other, thr),
                                     input_blocks("cls-resnet", ref, thr)))
        disk = resnet_store_test(store, ref.geometry, **opts)
    assert disk.auc == pytest.approx(mem.auc, abs=1e-9)
    assert np.allclose(disk.train_loss, mem.train_loss, rtol=1e-6)


def test_evaluate_refuses_dataset_1() -> None:
    a, b = make_showers("1-photons", 40, seed=0), make_showers("1-photons", 40, seed=1)
    with pytest.raises(ConfigError, match="cls-resnet: expected a geometry.*'1-photons'"):
        evaluate(a, b, "cls-resnet", progress=False)


def test_cli_round_trip_on_dataset_2_files(tmp_path, ds2) -> None:
    ref, other = ds2
    ref, other = ref.subset(slice(0, 200)), other.subset(slice(0, 200))
    write_showers(tmp_path / "ref.h5", ref)
    write_showers(tmp_path / "gen.h5", scale_voxels(other, 1.5))
    out = tmp_path / "eval"
    res = run_cli("evaluate", "-g", tmp_path / "gen.h5", "-r", tmp_path / "ref.h5", "-d", "2",
                  "-m", "cls-resnet", "--epochs", "1", "--resnet-width", "4", "--resnet-batch",
                  "64", "--min-steps", "60", "--quiet", "--device", "cpu", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "cls-resnet" in res.stdout and "AUC" in res.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["modes"] == ["cls-resnet"]
    assert m["classifier"]["cls-resnet"]["kind"] == "resnet"
    assert m["classifier"]["cls-resnet"]["protocol"] == "quick"
    assert m["settings"]["resnet"] == {"width": 4, "batch_size": 64, "lr": 1e-3}
    assert m["auc_resnet"] > 0.7 and m["learned_resnet"] is True
    assert m["reading_resnet"] == DISTINGUISHABLE
    assert not list(out.glob(".*.tmp"))  # the scratch file is gone
    html = (out / "report.html").read_text()
    assert "cls-resnet" in html
    bad = run_cli("evaluate", "-g", tmp_path / "gen.h5", "-r", tmp_path / "ref.h5", "-d", "2",
                  "-m", "cls-resnet", "--resnet-width", "0", "-o", tmp_path / "bad")
    assert bad.returncode != 0 and "--resnet-width" in bad.stderr
