"""Round trips of caloforge.preprocessing on simulator-like sparse showers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge import preprocessing as pp
from caloforge.geometry import Geometry

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def geo() -> Geometry:
    return Geometry.preset("1-photons")


def sparse_showers(geo: Geometry, n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sparse exponential showers (float64, MeV), ~70% zeros, one empty layer per row."""
    rng = np.random.default_rng(seed)
    e_inc = 2.0 ** rng.integers(8, 23, size=n)
    x = rng.exponential(1.0, size=(n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.3)
    x[np.arange(n), :] *= (e_inc / np.maximum(x.sum(1), 1e-12) * rng.uniform(0.3, 1.0, n))[:, None]
    x[: n // 4, geo.layer_slice(2)] = 0.0  # some empty layers
    return torch.tensor(x), torch.tensor(e_inc)


def test_u_variables_round_trip(geo):
    x, e_inc = sparse_showers(geo)
    _, e_layer = pp.normalise_layers(x, geo)
    u = pp.u_from_layer_energies(e_layer, e_inc)
    assert u.shape == e_layer.shape and (u >= 0).all() and (u <= 1).all()
    back = pp.layer_energies_from_u(u, e_inc)
    torch.testing.assert_close(back, e_layer, rtol=1e-10, atol=1e-9)
    # unclamped u_0 (CaloINN) also inverts with scale 1
    u1 = pp.u_from_layer_energies(e_layer, e_inc, scale=1.0, clamp=False)
    torch.testing.assert_close(pp.layer_energies_from_u(u1, e_inc, 1.0), e_layer, rtol=1e-10,
                               atol=1e-9)


def test_u_variables_known_values():
    e = torch.tensor([[10.0, 30.0, 60.0]])
    u = pp.u_from_layer_energies(e, torch.tensor([100.0]), scale=1.0)
    torch.testing.assert_close(u, torch.tensor([[1.0, 0.1, 30.0 / 90.0]]))


def test_logit_round_trip():
    x = torch.rand(1000, dtype=torch.float64)
    x[:10] = 0.0
    x[10:20] = 1.0
    z = pp.logit(x)
    assert torch.isfinite(z).all() and z.abs().max() < 14.0
    torch.testing.assert_close(pp.inverse_logit(z), x, rtol=0, atol=1e-12)


def test_layer_normalisation_round_trip(geo):
    x, _ = sparse_showers(geo)
    shapes, e_layer = pp.normalise_layers(x, geo)
    sums = shapes @ pp.layer_matrix(geo, shapes.dtype)
    full = e_layer > 0
    torch.testing.assert_close(sums[full], torch.ones_like(sums[full]))
    assert (sums[~full] == 0).all()
    torch.testing.assert_close(pp.denormalise_layers(shapes, e_layer, geo), x, rtol=1e-10,
                               atol=1e-10)


def test_denormalise_enforces_layer_energies(geo):
    shapes = torch.rand(5, geo.n_voxels, dtype=torch.float64) - 0.2
    e_layer = torch.rand(5, geo.n_layers, dtype=torch.float64) * 1000
    out = pp.denormalise_layers(shapes, e_layer, geo)
    assert (out >= 0).all()
    torch.testing.assert_close(geo.layer_energies(out.numpy()), e_layer.numpy())


def test_conditions():
    e = torch.tensor([33300.0, 1e6])
    torch.testing.assert_close(pp.energy_condition(e), torch.log10(e / 33300.0))
    assert pp.energy_condition(e)[0] == 0
    assert pp.log2_gev_condition(torch.tensor([1024.0e3]))[0] == 10.0
    assert torch.isfinite(pp.layer_energy_condition(torch.zeros(2, 5))).all()


def test_caloscore_round_trip(geo):
    x, e_inc = sparse_showers(geo)
    y = pp.caloscore_forward(x, e_inc)
    assert y.sum(1).max() < 1.0
    torch.testing.assert_close(pp.caloscore_inverse(y, e_inc), x)


def test_standardizer_round_trip_and_state_dict():
    x = torch.randn(500, 4) * torch.tensor([1.0, 10.0, 0.1, 0.0]) + 3
    s = pp.Standardizer(4).fit(x)
    z = s(x)
    torch.testing.assert_close(z[:, :3].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.inverse(z), x, atol=1e-5, rtol=1e-5)
    t = pp.Standardizer(4)
    t.load_state_dict(s.state_dict())
    torch.testing.assert_close(t(x), z)


def test_dequantize_threshold_round_trip(geo):
    x, _ = sparse_showers(geo)
    noise = 1e-3
    gen = torch.Generator().manual_seed(1)
    y = pp.dequantize(x, noise, gen)
    assert (y > x).sum() > 0.99 * y.numel() and ((y - x) <= noise).all()
    back = pp.threshold(y, noise)
    # exact on empty voxels, within the noise level elsewhere (voxels below it are cut)
    assert (back[x == 0] == 0).all()
    assert (back - x).abs().max() <= noise
    same = torch.Generator().manual_seed(1)
    torch.testing.assert_close(pp.dequantize(x, noise, same), y)


def test_caloinn_pipeline_round_trip(geo):
    """shapes + appended u -> log(x + alpha) -> standardise, and back."""
    x, e_inc = sparse_showers(geo)
    shapes, e_layer = pp.normalise_layers(x, geo)
    u = pp.u_from_layer_energies(e_layer, e_inc, scale=1.0, clamp=False)
    v = pp.log_alpha(torch.cat([shapes, u], 1), 1e-8)
    s = pp.Standardizer(v.shape[1]).fit(v)
    w = s.inverse(s(v))
    back = pp.inverse_log_alpha(w, 1e-8)
    e_back = pp.layer_energies_from_u(back[:, geo.n_voxels:], e_inc, 1.0)
    out = pp.denormalise_layers(back[:, :geo.n_voxels], e_back, geo)
    torch.testing.assert_close(out, x, rtol=1e-6, atol=1e-6)
