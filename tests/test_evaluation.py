"""Evaluation units: separation power, binnings, inputs, splits, FPD/KPD, PRDC, checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caloforge.data import ShowerSet
from caloforge.errors import ConfigError, DataError, GeometryError
from caloforge.evaluation import evaluate, mean_separation_power, separation_power
from caloforge.evaluation.classifier import split_sizes
from caloforge.evaluation.fpd import fpd, kpd, mmd_poly_unbiased, normalise_features
from caloforge.evaluation.histograms import (
    feature_edges,
    hlf_histograms,
    per_energy_histograms,
    voxel_histogram,
)
from caloforge.evaluation.inputs import classifier_input
from caloforge.evaluation.prdc import prdc
from caloforge.evaluation.runner import parse_modes
from caloforge.features import high_level_features
from caloforge.geometry import Geometry, Layer


def toy(geo: Geometry, n: int, seed: int = 0, scale: float = 1.0) -> ShowerSet:
    rng = np.random.default_rng(seed)
    e = 2.0 ** rng.integers(8, 23, n)
    x = rng.exponential(1.0, (n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.4)
    return ShowerSet(e, x * e[:, None] / (0.4 * geo.n_voxels) * scale, geo)


@pytest.fixture(scope="module")
def photons() -> Geometry:
    return Geometry.preset("1-photons")


def test_separation_power_by_hand():
    assert separation_power([1, 3], [3, 1]) == pytest.approx(0.5 * (0.25 + 0.25))
    assert separation_power([5, 0, 5], [1, 0, 1]) == 0.0
    assert separation_power([1, 0], [0, 7]) == pytest.approx(1.0)
    assert separation_power([0, 0], [0, 0]) == 0.0
    with pytest.raises(DataError):
        separation_power([1, 2], [1, 2, 3])


def test_e_ratio_histogram_by_hand(photons):
    # E_tot/E_inc: reference 0.555, 0.555, 0.655; generated 0.555, 0.655, 0.655 (+ out of range)
    ref = {"E_ratio": np.array([0.555, 0.555, 0.655])}
    gen = {"E_ratio": np.array([0.555, 0.655, 0.655, 1.7])}
    h = hlf_histograms(gen, ref, photons, 1.0)["E_ratio"]
    np.testing.assert_allclose(h.edges, np.linspace(0.5, 1.5, 101))
    assert h.ref.sum() == 3 and h.gen.sum() == 3  # 1.7 dropped
    # p = (2/3, 1/3), q = (1/3, 2/3): S = 1/2 * 2 * (1/3)^2 / 1 = 1/9
    assert h.separation == pytest.approx(1 / 9)


def test_official_binnings(photons):
    pions, ds2 = Geometry.preset("1-pions"), Geometry.preset("2")
    ref = np.array([0.0, 2.0, 50.0])
    assert feature_edges("EC_eta_12", pions, ref, 1.0)[0][[0, -1]].tolist() == [-500, 500]
    assert feature_edges("EC_phi_1", pions, ref, 1.0)[0][[0, -1]].tolist() == [-100, 100]
    assert feature_edges("Width_eta_13", pions, ref, 1.0)[0][[0, -1]].tolist() == [0, 400]
    assert feature_edges("EC_r_14", pions, ref, 1.0)[0][[0, -1]].tolist() == [0, 1500]
    assert feature_edges("Width_r_2", pions, ref, 1.0)[0][[0, -1]].tolist() == [0, 500]
    assert feature_edges("EC_eta_7", ds2, ref, 0.01)[0][[0, -1]].tolist() == [-30, 30]
    assert feature_edges("Width_phi_7", ds2, ref, 0.01)[0][[0, -1]].tolist() == [0, 30]
    assert feature_edges("EC_r_7", ds2, ref, 0.01)[0][[0, -1]].tolist() == [0, 42]
    assert feature_edges("Width_r_7", ds2, ref, 0.01)[0][[0, -1]].tolist() == [0, 20]
    edges, log = feature_edges("E_layer_12", photons, ref, 1.0)
    assert log and len(edges) == 40
    np.testing.assert_allclose(edges[[0, -1]], [1.0, 50.0])
    edges, _ = feature_edges("sparsity_3", photons, ref, 1.0)
    assert len(edges) == 21 and edges[-1] == 1.0
    assert len(feature_edges("EC_eta_1", photons, ref, 1.0)[0]) == 101


def test_per_energy_and_voxel_histograms(photons):
    e = np.array([256.0, 256.0, 8192.0, 8192.0])
    ratio = np.array([0.95, 0.99, 0.95, 0.99])
    hs = per_energy_histograms(ratio, e, ratio, e, photons)
    assert sorted(hs) == ["E_ratio_E256", "E_ratio_E8192"]
    np.testing.assert_allclose(hs["E_ratio_E256"].edges[[0, -1]], [0.4, 1.4])
    np.testing.assert_allclose(hs["E_ratio_E8192"].edges[[0, -1]], [0.9, 1.1])
    assert all(h.separation == 0 for h in hs.values())
    assert per_energy_histograms(ratio, e, ratio, e, Geometry.preset("2")) == {}
    ref = np.array([[0.5, 2.0, 100.0]])
    gen = np.array([[0.9, 3.0, 0.0]])
    h = voxel_histogram(gen, ref, 1.0)
    assert len(h.edges) == 50 and h.edges[0] == pytest.approx(1.0)
    assert h.edges[-1] == pytest.approx(100.0)
    assert h.ref.sum() == 2 and h.gen.sum() == 1  # below-threshold voxels dropped


def test_mean_separation_power(photons):
    a, b = toy(photons, 500, 0), toy(photons, 500, 0, scale=1.3)
    assert mean_separation_power(a, a) == 0.0
    assert mean_separation_power(b, a) > 0.01
    m = evaluate(b, a, "hist", progress=False)
    assert m["mean_separation_power"] == pytest.approx(mean_separation_power(b, a))
    seps = m["separation_power"]
    assert type(seps["E_ratio"]) is float and seps["E_ratio"] > 0.05
    assert {"E_layer_12", "EC_eta_1", "Width_r_3", "sparsity_0", "voxel", "E_ratio_E256",
            "E_ratio_E4194304"} <= set(seps)


def test_pictures_and_report(tmp_path):
    geo = Geometry(name="tiny", particle="photon", eval_threshold=0.01,
                   layers=(Layer(id=0, r_edges=(0.0, 1.0, 3.0)),
                           Layer(id=5, r_edges=(0.0, 2.0, 4.0), n_alpha=4)))
    out = tmp_path / "report"
    gen, ref = toy(geo, 200, 1, scale=1.1), toy(geo, 200, 2)
    m = evaluate(gen, ref, "hist", out, progress=False, plots="all")
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"E_ratio.png", "EC_eta_5.png", "voxel.png", "average_shower.png"} <= set(pngs)
    assert len(pngs) == len(m["separation_power"]) + 1 + sum(
        n.startswith("average_shower_E") for n in pngs)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "Separation power per histogram" in html
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["separation_power"] == pytest.approx(m["separation_power"])
    # default pictures: every histogram as inline SVG, average showers as PNG mosaics
    summary = evaluate(gen, ref, "hist", tmp_path / "summary", progress=False)
    assert summary["separation_power"] == pytest.approx(m["separation_power"])
    html = (tmp_path / "summary" / "report.html").read_text()
    assert html.count("<svg") == len(m["separation_power"])
    for name, value in m["separation_power"].items():
        assert f"<title>{name}  S = {value:.4f}</title>" in html
    n_avg = 1 + sum(n.startswith("average_shower_E") for n in pngs)
    assert html.count("data:image/png;base64,") == n_avg == html.count("<figcaption>")
    assert "top block reference, bottom block generated" in html
    assert not (tmp_path / "summary" / "plots").exists()
    evaluate(gen, ref, "hist", tmp_path / "none", progress=False, plots="none")
    html = (tmp_path / "none" / "report.html").read_text()
    assert "<svg" not in html and "data:image/png" not in html
    assert "Separation power per histogram" in html
    with pytest.raises(ConfigError, match="--plots: expected one of summary, all, none"):
        evaluate(gen, ref, "hist", tmp_path / "bad", progress=False, plots="some")


def test_other_geometries_get_automatic_binnings():
    geo = Geometry.preset("calogan")
    m = evaluate(toy(geo, 300, 1, scale=1.2), toy(geo, 300, 2), "hist", progress=False)
    assert m["threshold_mev"] == 0.0 and m["separation_power"]["E_ratio"] > 0.05
    assert "EC_eta_2" in m["separation_power"] and "voxel" in m["separation_power"]


def test_classifier_inputs_and_splits(photons):
    ss = toy(photons, 4)
    assert classifier_input("cls-high", ss, 1.0).shape == (4, 30)
    assert classifier_input("cls-high", toy(Geometry.preset("1-pions"), 3), 1.0).shape == (3, 46)
    assert classifier_input("cls-high", toy(Geometry.preset("2"), 2), 0.0151).shape == (2, 362)
    low = classifier_input("cls-low", ss, 1.0)
    x = np.where(ss.showers < 1.0, 0.0, ss.showers)
    np.testing.assert_allclose(low[:, 0], np.log10(ss.e_inc), rtol=1e-6)
    np.testing.assert_allclose(low[:, 1:], x / ss.e_inc[:, None], rtol=1e-5)
    normed = classifier_input("cls-low-normed", ss, 1.0)
    assert normed.shape == (4, 1 + 368 + 5)
    el = photons.layer_energies(x)
    np.testing.assert_allclose(normed[:, 1:9], x[:, :8] / (el[:, :1] + 1e-16), rtol=1e-5)
    np.testing.assert_allclose(normed[:, -5:], np.log10(el + 1e-8), rtol=1e-5)
    f = high_level_features(ss)
    high = classifier_input("cls-high", ss, 1.0)
    np.testing.assert_allclose(high[:, 14], np.log10(f["E_tot"] + 1e-8))
    np.testing.assert_allclose(high[:, 5], np.log10(f["E_layer_12"] + 1e-8))
    assert split_sizes(121_000, "1-photons") == (80_000, 20_000, 21_000)
    assert split_sizes(100_000, "2") == (60_000, 20_000, 20_000)
    assert split_sizes(12_100, "1-photons") == (8_000, 2_000, 2_100)
    assert split_sizes(1000, "calogan") == (600, 200, 200)
    with pytest.raises(DataError):
        split_sizes(3, "1-photons")


def test_fpd_kpd():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 6))
    b = rng.normal(size=(2000, 6)) + 0.3
    same, err = fpd(a, a, min_samples=1000, max_samples=5000, num_batches=4)
    assert abs(same) < 1e-3 and err >= 0
    diff, _ = fpd(a, b, min_samples=1000, max_samples=5000, num_batches=4)
    x, y = normalise_features(a, b)
    assert diff == pytest.approx(np.sum((x.mean(0) - y.mean(0)) ** 2), rel=0.2)
    x, y = a[:300], b[:200]
    k = lambda p, q: (p @ q.T / 6 + 1) ** 4  # noqa: E731
    xx, yy, xy = k(x, x), k(y, y), k(x, y)
    brute = ((xx.sum() - np.trace(xx)) / (300 * 299) + (yy.sum() - np.trace(yy)) / (200 * 199)
             - 2 * xy.mean())
    assert mmd_poly_unbiased(x, y) == pytest.approx(brute, rel=1e-9)
    med, _ = kpd(a, a, num_batches=3, batch_size=500)
    assert abs(med) < 1e-3
    assert kpd(a, b, num_batches=3, batch_size=500)[0] > 10 * abs(med)


def test_prdc_matches_brute_force():
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 5)), rng.normal(size=(250, 5)) + 0.3
    r = np.partition(pairwise_distances(real), 5, axis=1)[:, 5]
    f = np.partition(pairwise_distances(fake), 5, axis=1)[:, 5]
    d = pairwise_distances(real, fake)
    want = {"precision": (d < r[:, None]).any(0).mean(), "recall": (d < f[None]).any(1).mean(),
            "density": (d < r[:, None]).sum(0).mean() / 5, "coverage": (d.min(1) < r).mean()}
    got = prdc(real, fake, k=5)
    for key, value in want.items():
        assert got[key] == pytest.approx(value)
    assert prdc(real, real)["precision"] == 1.0


def test_evaluate_refuses_mismatches(photons, tmp_path):
    a = toy(photons, 50)
    with pytest.raises(GeometryError, match="geometry"):
        evaluate(toy(Geometry.preset("1-pions"), 50), a, "hist")
    with pytest.raises(DataError, match="--subsample"):
        evaluate(toy(photons, 40), a, "hist")
    with pytest.raises(ConfigError, match="--mode"):
        parse_modes("hist,bogus")
    assert parse_modes("all") == ["hist", "cls-low", "cls-high", "fpd", "kpd", "prdc"]
    assert parse_modes(["fpd", "hist"]) == ["hist", "fpd"]
    m = evaluate(toy(photons, 60, 1), a, "prdc", subsample=True, progress=False)
    assert m["n_generated"] == m["n_reference"] == 50
    assert m["auc_low"] is None and m["fpd"] is None and set(m["prdc"]) == {
        "precision", "recall", "density", "coverage"}
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="--overwrite"):
        evaluate(a, a, "prdc", tmp_path)


def test_fpd_of_identical_samples_is_zero(photons):
    a = toy(photons, 3000, 2)
    m = evaluate(a, a, "fpd", progress=False)
    assert abs(m["fpd"]) < 0.05  # x 1e3
    assert m["separation_power"] is None


def test_jetnet_cross_check():
    """Same algorithm as jetnet: equal values where the random streams agree (jetnet HEAD),
    within the quoted errors otherwise (older releases drew batches differently)."""
    jetnet_eval = pytest.importorskip("jetnet.evaluation")
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3000, 5)), rng.normal(size=(3000, 5)) * 1.1 + 0.05
    for ours, theirs in ((fpd(a, b, min_samples=1000, max_samples=3000),
                          jetnet_eval.fpd(a, b, min_samples=1000, max_samples=3000)),
                         (kpd(a, b, batch_size=1000), jetnet_eval.kpd(a, b, batch_size=1000))):
        value, err = float(theirs[0]), float(theirs[1])
        assert abs(ours[0] - value) <= 3 * (ours[1] + err) + 1e-9 * abs(value)
