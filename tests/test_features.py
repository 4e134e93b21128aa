"""High-level features equal hand computations on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import caloforge.features as features
from caloforge.data import ShowerSet
from caloforge.errors import DataError
from caloforge.features import feature_names, high_level_features
from caloforge.geometry import Geometry, Layer

H = math.sqrt(0.5)


def tiny_geometry() -> Geometry:
    """Layer 0: two radial bins (mids 0.5, 2 mm); layer 5: one radial bin (mid 1 mm) x 4 angles."""
    return Geometry(name="tiny", particle="photon", eval_threshold=0.5,
                    layers=(Layer(id=0, r_edges=(0.0, 1.0, 3.0)),
                            Layer(id=5, r_edges=(0.0, 2.0), n_alpha=4)))


def test_hand_computed_features():
    g = tiny_geometry()
    # layer 0: [1, 3]; layer 5 (alpha = -3pi/4, -pi/4, pi/4, 3pi/4): [2, 0.4, 2, 0]
    ss = ShowerSet(np.array([10.0]), np.array([[1.0, 3.0, 2.0, 0.4, 2.0, 0.0]]), g)
    f = {k: float(v[0]) for k, v in high_level_features(ss).items()}  # threshold 0.5 drops 0.4
    assert list(f) == feature_names(g)
    assert f["E_tot"] == pytest.approx(8.0)
    assert f["E_ratio"] == pytest.approx(0.8)
    assert f["E_layer_0"] == pytest.approx(4.0)
    assert f["E_layer_5"] == pytest.approx(4.0)
    assert f["EC_r_0"] == pytest.approx((0.5 * 1 + 2 * 3) / 4)
    assert f["Width_r_0"] == pytest.approx(math.sqrt((0.25 + 12) / 4 - 1.625**2))
    assert f["EC_eta_5"] == pytest.approx(0.0, abs=1e-12)
    assert f["EC_phi_5"] == pytest.approx(0.0, abs=1e-12)
    assert f["Width_eta_5"] == pytest.approx(H)
    assert f["Width_phi_5"] == pytest.approx(H)
    assert f["EC_r_5"] == pytest.approx(1.0)
    assert f["Width_r_5"] == pytest.approx(0.0, abs=1e-6)
    assert f["sparsity_0"] == 0.0
    assert f["sparsity_5"] == 0.5
    assert "EC_eta_0" not in f  # layer 0 is not binned in angle


def test_threshold_argument_and_empty_layer():
    g = tiny_geometry()
    ss = ShowerSet(np.array([4.0]), np.array([[0.0, 0.0, 0.0, 0.4, 0.0, 0.0]]), g)
    f0 = high_level_features(ss, threshold=0.0)
    assert f0["E_tot"][0] == pytest.approx(0.4)
    assert f0["EC_eta_5"][0] == pytest.approx(H)  # alpha = -pi/4: eta = r cos
    assert f0["EC_phi_5"][0] == pytest.approx(-H)
    assert f0["sparsity_5"][0] == 0.75
    f = high_level_features(ss)  # geometry threshold 0.5: everything dropped
    assert f["E_tot"][0] == 0.0
    for key in ("EC_r_0", "Width_r_0", "EC_eta_5", "Width_phi_5"):
        assert f[key][0] == 0.0
    assert f["sparsity_0"][0] == 1.0 and f["sparsity_5"][0] == 1.0
    with pytest.raises(DataError, match="threshold"):
        high_level_features(ss, threshold=-1.0)


def test_official_vector_sizes_and_chunking(monkeypatch):
    g = Geometry.preset("1-pions")
    rng = np.random.default_rng(1)
    e = 2.0 ** rng.integers(8, 23, 37)
    x = rng.exponential(5.0, (37, g.n_voxels)).astype(np.float32)
    ss = ShowerSet(e, x, g)
    full = high_level_features(ss)
    # pions: E_tot, E_ratio, 7 E_layer, 4 alpha-binned layers x 4, 7 x (EC_r, Width_r, sparsity)
    assert len(full) == 2 + 7 + 16 + 21
    assert sorted(k[7:] for k in full if k.startswith("EC_eta_")) == ["1", "12", "13", "2"]
    monkeypatch.setattr(features, "CHUNK_VALUES", 5 * g.n_voxels)  # chunks of 5 showers
    chunked = high_level_features(ss)
    for k in full:
        np.testing.assert_allclose(chunked[k], full[k], rtol=1e-12, atol=1e-12)
    # default: sums in the file's dtype (float32 here), as the official evaluate.py
    x32 = np.where(x < 1.0, np.float32(0), x)
    np.testing.assert_array_equal(full["E_tot"], x32.sum(1).astype(np.float64))
    np.testing.assert_array_equal(full["E_layer_13"], x32[:, 363:523].sum(1).astype(np.float64))
    xt = x32.astype(np.float64)
    eta = g.centres()[0][8:108]
    el32 = x32[:, 8:108].sum(1).astype(np.float64)
    np.testing.assert_allclose(full["EC_eta_1"], xt[:, 8:108] @ eta / (el32 + 1e-16), rtol=1e-10)
    # sums="float64": double-precision sums
    exact = high_level_features(ss, sums="float64")
    np.testing.assert_allclose(exact["E_tot"], xt.sum(1), rtol=1e-12)
    np.testing.assert_allclose(exact["E_layer_13"], xt[:, 363:523].sum(1), rtol=1e-12)
    np.testing.assert_allclose(exact["EC_eta_1"],
                               xt[:, 8:108] @ eta / (xt[:, 8:108].sum(1) + 1e-16), rtol=1e-10)
    assert not np.array_equal(exact["E_tot"], full["E_tot"])


def test_pair_sums_compares_mixed_dtypes_in_the_reference_dtype():
    """A float64 copy of float32 showers must give the float32 features exactly: summing each
    side in its own dtype let boosted trees tell identical dataset-2 showers apart (AUC 0.91)."""
    from conftest import make_showers

    from caloforge.features import pair_sums

    ref = make_showers("2", n=20, dtype=np.float32, seed=3)
    copy = ShowerSet(ref.e_inc, ref.showers.astype(np.float64), ref.geometry)
    assert pair_sums(ref, ref) == "file"
    assert pair_sums(copy, ref) == "float32" and pair_sums(ref, copy) == "float64"
    assert pair_sums(copy, ref, "float64") == "float64"
    fr = high_level_features(ref)
    fc = high_level_features(copy, sums=pair_sums(copy, ref))
    for k in fr:
        np.testing.assert_array_equal(fc[k], fr[k], err_msg=k)
    own = high_level_features(copy)  # its own dtype: the sums differ in the last bits
    assert any(not np.array_equal(own[k], fr[k]) for k in fr)
