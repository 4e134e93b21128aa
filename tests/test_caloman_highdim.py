"""CaloMan on datasets 2 and 3: the geometric autoencoders, the noise-as-input sampler, the
ONNX export and the streamed CLI round trip with the ``-cpu`` recipe."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from caloforge.data import read_showers, write_showers
from caloforge.errors import CaloforgeError
from caloforge.geometry import Geometry
from caloforge.models import model_class
from caloforge.models.geometric_ae import (
    CircularConvStack,
    LayeredAutoencoder,
    circular_pad_alpha,
)
from caloforge.simulate import simulate
from tests.conftest import run_cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DS2 = (45, 16, 9)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_caloman(dataset: str = "2", network: str = "layered", **extra) -> torch.nn.Module:
    """An untrained, small CaloMan with the geometric autoencoder (fitted-state defaults)."""
    cfg = {"autoencoder": "ae", "latent_dim": 6, "hidden": [32], "decoder_noise":
           "zero-inflated", "network": {"type": network, "hidden": [16], "code": 4,
                                        "embed": 4, "channels": 4},
           "energy_flow": {"transforms": 2, "hidden": [16, 16]},
           "latent_flow": {"transforms": 2, "hidden": [16, 16]}} | extra
    torch.manual_seed(0)
    return model_class("caloman")(Geometry.preset(dataset), cfg).eval()


@pytest.mark.parametrize("cell", ["layered", "conv"])
def test_geometric_autoencoder_shapes_and_shared_cells(cell: str) -> None:
    torch.manual_seed(0)
    ae = LayeredAutoencoder(DS2, 46, 8, [32], kind="vae", cell=cell, cell_hidden=[16],
                            code=4, embed=4, channels=4)
    x, c = torch.randn(5, 6480), torch.randn(5, 46)
    mu, logvar = ae.encode(x, c)
    assert mu.shape == (5, 8) and logvar is not None and logvar.shape == (5, 8)
    params = ae.decode_params(mu, c)
    assert len(params) == 3 and all(p.shape == (5, 6480) for p in params)
    loss = ae.loss(x, c, torch.rand(5, 6480) * (torch.rand(5, 6480) < 0.3))
    assert torch.isfinite(loss)
    # one cell for all layers: the cells' parameter count does not depend on L
    few = LayeredAutoencoder((5, 16, 9), 6, 8, [32], kind="vae", cell=cell, cell_hidden=[16],
                             code=4, embed=4, channels=4)

    def cell_params(m: LayeredAutoencoder) -> int:
        return sum(p.numel() for n, p in m.named_parameters()
                   if n.split(".")[0] in ("enc_cell", "dec_cell", "enc_conv", "dec_conv"))

    assert cell_params(ae) == cell_params(few)
    # a layer's code sees only that layer's voxels
    x2 = x.clone()
    x2[:, 7 * 144:8 * 144] += 1.0
    with torch.no_grad():
        diff = (ae.encode_layers(x2, c) - ae.encode_layers(x, c)).abs().amax(dim=(0, 2))
    assert diff[7] > 1e-4 and float(diff[torch.arange(45) != 7].max()) == 0.0


def test_parameters_scale_like_a_layer_not_like_the_calorimeter() -> None:
    geo = Geometry.preset("3")
    mlp = small_caloman("3", "mlp", hidden=[64])
    lay = small_caloman("3", "layered", hidden=[64])
    n_mlp = sum(p.numel() for p in mlp.autoencoder.parameters())
    n_lay = sum(p.numel() for p in lay.autoencoder.parameters())
    assert n_mlp > 4 * 40500 * 64 and n_lay < n_mlp / 20
    assert lay.autoencoder.grid == (45, 50, 18) and geo.n_voxels == 40500


def test_circular_padding_and_rotation_equivariance() -> None:
    x = torch.randn(3, 2, 16, 9)
    padded = circular_pad_alpha(x)
    assert padded.shape == (3, 2, 18, 11)
    assert torch.equal(padded[:, :, 0, 1:-1], x[:, :, -1])  # alpha wraps around
    assert torch.equal(padded[:, :, -1, 1:-1], x[:, :, 0])
    assert float(padded[..., 0].abs().max()) == 0.0 and float(padded[..., -1].abs().max()) == 0
    torch.manual_seed(1)
    conv = CircularConvStack(2, 5, 3)
    with torch.no_grad():
        rolled = conv(torch.roll(x, 5, dims=2))
        ref = torch.roll(conv(x), 5, dims=2)
        torch.testing.assert_close(rolled, ref, atol=1e-5, rtol=1e-5)
        # not equivariant along r (zero padding at the calorimeter's inner and outer edge)
        assert not torch.allclose(conv(torch.roll(x, 1, dims=3)), torch.roll(conv(x), 1, 3),
                                  atol=1e-3)


def test_zero_inflated_noise_input_is_a_bernoulli_times_lognormal() -> None:
    ae = LayeredAutoencoder(DS2, 1, 4, [8], cell_hidden=[8], code=2, embed=2)
    n, v = 20000, 3
    logit_p = torch.tensor([-1.0, 0.0, 2.0]).expand(n, v)
    mu = torch.tensor([-3.0, -1.0, 0.5]).expand(n, v)
    ls = torch.log(torch.tensor([0.2, 0.5, 1.0])).expand(n, v)
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(n, 2 * v, generator=gen)
    u = 0.5 * (1 + torch.erf(eps[:, :v] / math.sqrt(2)))
    frac, is_frac, _ = ae._zero_inflated(logit_p, mu, ls, u, eps[:, v:])
    assert is_frac and (frac >= 0).all()
    p = torch.sigmoid(logit_p[0])
    occ = (frac > 0).double().mean(0)
    assert torch.all((occ - p).abs() < 4 * torch.sqrt(p * (1 - p) / n))
    for k in range(v):
        logs = torch.log(frac[frac[:, k] > 0, k]).double()
        assert abs(float(logs.mean()) - float(mu[0, k])) < 0.05
        assert abs(float(logs.std()) / float(ls[0, k].exp()) - 1) < 0.05


def test_from_noise_and_sample_agree_in_distribution() -> None:
    model = small_caloman()
    e = torch.full((3000,), 50_000.0)
    torch.manual_seed(3)
    a = model.sample(e)
    with torch.no_grad():
        b = model.from_noise(torch.randn(3000, model.noise_dim), e)
    assert model.noise_dim == 45 + 6 + 2 * 6480
    for stat in (lambda x: x.sum(1), lambda x: (x > 0).float().sum(1)):
        sa, sb = stat(a), stat(b)
        assert abs(float(sa.mean() - sb.mean())) < 5 * float(sa.std()) / math.sqrt(3000) + 1e-3
    # same noise, same showers; noise changes the showers
    z = torch.randn(4, model.noise_dim)
    with torch.no_grad():
        assert torch.equal(model.from_noise(z, e[:4]), model.from_noise(z, e[:4]))
        assert not torch.equal(model.from_noise(z, e[:4]), model.from_noise(-z, e[:4]))


def test_dataset1_refuses_geometric_networks_and_keeps_mlp() -> None:
    with pytest.raises(CaloforgeError, match="network.type"):
        model_class("caloman")(Geometry.preset("1-photons"), {"network": {"type": "layered"}})
    with pytest.raises(CaloforgeError, match="network.type"):
        model_class("caloman")(Geometry.preset("2"), {"network": {"type": "transformer"}})
    m = model_class("caloman")(Geometry.preset("1-photons"), {})
    assert type(m.autoencoder).__name__ == "ConditionalAutoencoder"


@pytest.mark.parametrize("name", ["caloman/2-cpu", "caloman/3-cpu", "caloman/2", "caloman/3",
                                  "vae-inn/2-cpu", "vae-inn/3-cpu", "vae-inn/2", "vae-inn/3"])
def test_recipes_build_geometric_models(name: str) -> None:
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    model = model_class(config["model"])(Geometry.preset(config["dataset"]), config)
    assert isinstance(model.autoencoder, LayeredAutoencoder)
    assert model.autoencoder.noise == "zero-inflated" and model.export_blocker() is None


@pytest.mark.parametrize("dataset, preprocessing, dtype", [
    ("2", "caloflow", torch.float32), ("2", "caloflow", torch.float64),
    ("1-photons", "caloflow", torch.float32), ("1-photons", "caloscore", torch.float32)])
def test_streamed_autoencoder_inputs_equal_prepare(dataset: str, preprocessing: str,
                                                   dtype: torch.dtype) -> None:
    """The per-batch inputs of the streamed autoencoder stage are what the in-memory path
    (``_prepare`` then the standardisers) gives: to float32 rounding on the fused float32
    route of datasets 2/3 (including voxels holding their whole layer, where 1 - y must not
    be computed from y), bit for bit elsewhere; the batch is left untouched."""
    network = "layered" if dataset == "2" else "mlp"
    m = small_caloman(dataset, network=network, preprocessing=preprocessing)
    data = simulate(dataset, 64, seed=3)
    data.showers = data.showers.astype(np.float32)
    data.showers[0] = 0.0
    data.showers[0, ::m.n_voxels // m.n_layers] = 1234.5  # one voxel per layer: fraction 1
    before = data.showers.copy()
    t = m._prepare(data)
    m.x_norm.fit(t["x"].to(torch.float32))
    m.cond_norm.fit(t["c"].to(torch.float32))
    want = (m.x_norm(t["x"].to(torch.float32)), m.cond_norm(t["c"].to(torch.float32)),
            t["frac"].to(torch.float32))
    got = m._ae_inputs(data, dtype)
    exact = dtype == torch.float64 or dataset != "2"
    for a, b in zip(got, want, strict=True):
        assert a.dtype == dtype
        if exact:
            assert torch.equal(a.to(torch.float32), b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    assert np.array_equal(data.showers, before)


@pytest.fixture(scope="module")
def ds2_run(tmp_path_factory):
    """A DS2 simulator file and a CaloMan trained on it by the CLI with the -cpu recipe."""
    tmp = tmp_path_factory.mktemp("ds2")
    write_showers(tmp / "ds2.h5", simulate("2", 400, seed=5))
    res = run_cli("train", "--model", "caloman", "--config", CONFIGS / "caloman/2-cpu.yaml",
                  "--data", tmp / "ds2.h5", "--epochs", "1", "--quiet", "-o", tmp / "run",
                  timeout=300)
    assert res.returncode == 0, res.stderr
    return tmp


def test_cli_train_generate_export_roundtrip(ds2_run: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    run = ds2_run / "run"
    res = run_cli("generate", "--checkpoint", run / "model.pt", "--energies-from",
                  ds2_run / "ds2.h5", "-n", "300", "--seed", "1", "--quiet", "-o",
                  ds2_run / "gen.h5", timeout=300)
    assert res.returncode == 0, res.stderr
    gen = read_showers(ds2_run / "gen.h5")
    ref = read_showers(ds2_run / "ds2.h5")
    assert gen.showers.shape == (300, 6480) and np.all(np.isfinite(gen.showers))
    assert np.all(gen.showers >= 0) and np.all(gen.showers[gen.showers > 0] >= 0.0151)
    ratio = gen.showers.sum(1) / gen.e_inc
    assert 0.1 < float(np.median(ratio)) < 1.5  # energy flow: deposits of the right scale
    assert abs(float((gen.showers > 0).mean()) - float((ref.showers > 0).mean())) < 0.2
    res = run_cli("export", "--checkpoint", run / "model.pt", "-o", ds2_run / "m.onnx",
                  timeout=300)
    assert res.returncode == 0, res.stderr
    assert "max relative deviation" in res.stdout
    from caloforge.models.base import load_model

    model = load_model(run / "model.pt").float().eval()
    sess = ort.InferenceSession(str(ds2_run / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 257):
        gen_t = torch.Generator().manual_seed(batch)
        z = torch.randn(batch, model.noise_dim, generator=gen_t)
        e = 2.0 ** torch.randint(8, 23, (batch,), generator=gen_t).float()
        with torch.no_grad():
            want = model.from_noise(z, e).numpy()
        got = sess.run(None, {"noise": z.numpy(), "e_inc": e.numpy()})[0]
        assert got.shape == (batch, 6480)
        # float32 rounding differs between the two runtimes and the layer-energy chain (a
        # product of 45 (1 - u) factors) amplifies it: ~1e-4 relative, a few 1e-4 at worst
        scale = max(float(np.abs(want).max()), 1e-30)
        assert float(np.abs(got - want).max()) / scale < 1e-3
        hit = (got > 0) & (want > 0)
        rel = np.abs(got[hit] - want[hit]) / want[hit]
        assert float(np.median(rel)) < 1e-4 and float(np.quantile(rel, 0.99)) < 1e-3
        # the occupancy decisions agree voxel by voxel (noise far from the threshold p)
        assert float(((got > 0) != (want > 0)).mean()) < 1e-3


def test_vae_inn_streams_and_exports(tmp_path: Path) -> None:
    """VAE+INN on dataset 2: the streamed CLI path, then the noise-as-input sampler."""
    write_showers(tmp_path / "ds2.h5", simulate("2", 200, seed=6))
    res = run_cli("train", "--model", "vae-inn", "--config", CONFIGS / "vae-inn/2-cpu.yaml",
                  "--data", tmp_path / "ds2.h5", "--stream", "on", "--epochs", "1", "--quiet",
                  "-o", tmp_path / "run", timeout=300)
    assert res.returncode == 0, res.stderr
    from caloforge.models.base import load_model

    model = load_model(tmp_path / "run" / "model.pt")
    x = model.sample(torch.full((20,), 1e4))
    assert x.shape == (20, 6480) and torch.isfinite(x).all() and (x >= 0).all()


@pytest.mark.slow
def test_caloman_ds2_learns(tmp_path: Path) -> None:
    """The -cpu recipe's training beats the untrained model of the same recipe under the
    boosted-tree classifier on the high-level features (cls-gbdt-high). On the voxels
    (cls-gbdt-low) both are still near 1 (0.992 vs 0.994 measured): see the notes."""
    from caloforge.evaluation import evaluate
    from caloforge.models.base import load_model

    write_showers(tmp_path / "train.h5", simulate("2", 6000, seed=21))
    ref = simulate("2", 3000, seed=22)
    res = run_cli("train", "--model", "caloman", "--config", CONFIGS / "caloman/2-cpu.yaml",
                  "--data", tmp_path / "train.h5", "--quiet", "--threads", "1", "-o",
                  tmp_path / "run", timeout=3000)
    assert res.returncode == 0, res.stderr
    model = load_model(tmp_path / "run" / "model.pt")
    config = yaml.safe_load((CONFIGS / "caloman/2-cpu.yaml").read_text())
    untrained = model_class("caloman")(Geometry.preset("2"), config).eval()
    e = torch.as_tensor(ref.e_inc)
    aucs = {}
    for name, m in (("trained", model), ("untrained", untrained)):
        torch.manual_seed(0)
        gen = type(ref)(ref.e_inc, m.sample(e).numpy(), ref.geometry)
        aucs[name] = evaluate(gen, ref, modes="cls-gbdt-high",
                              progress=False)["auc_gbdt_high"]
    # measured (20k training showers, 2000 held out): 0.974 +- 0.005 vs 1.000 untrained
    assert aucs["untrained"] > 0.99, aucs
    assert aucs["trained"] < aucs["untrained"] - 0.01, aucs
