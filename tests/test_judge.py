"""The judge sees: classifier power on known distortions of simulated showers, the learned
flag, bootstrap intervals, readings and the distortions themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_showers

from caloforge.data import ShowerSet
from caloforge.evaluation import evaluate
from caloforge.evaluation.classifier import classifier_test, split_sizes
from caloforge.evaluation.distortions import (
    DISTORTIONS,
    distort,
    drop_voxels,
    move_layer_energy,
    shuffle_energies,
    widen_lateral,
)
from caloforge.evaluation.gbdt import gbdt_test
from caloforge.evaluation.inputs import classifier_input
from caloforge.evaluation.verdict import (
    DID_NOT_LEARN,
    DISTINGUISHABLE,
    NOT_AT_THIS_SIZE,
    bootstrap_auc,
    has_learned,
    reading,
)
from caloforge.features import high_level_features
from caloforge.geometry import Geometry
from caloforge.simulate import simulate

N = 8000  # showers per side, as the power table


@pytest.fixture(scope="module")
def pair() -> tuple[ShowerSet, ShowerSet]:
    """Reference and a second, independent simulation (the null pair), 8k photons each."""
    return (simulate("1-photons", N, seed=101, progress=False),
            simulate("1-photons", N, seed=202, progress=False))


def judge(mode: str, gen: ShowerSet, ref: ShowerSet):
    thr = ref.geometry.eval_threshold
    return gbdt_test(classifier_input(mode, gen, thr), classifier_input(mode, ref, thr),
                     "1-photons", seed=0)


@pytest.mark.parametrize("name,low,high", [("null", 0.47, 0.53), ("scale 1.02", 0.6, 1.0),
                                           ("scale 1.10", 0.9, 1.0)])
def test_gbdt_high_sees_distortions_and_passes_the_null(pair, name, low, high) -> None:
    ref, other = pair
    r = judge("cls-gbdt-high", distort(other, name), ref)
    assert low < r.auc < high, (name, r.auc)
    if name == "null":
        assert not r.learned and r.reading == DID_NOT_LEARN
    else:
        assert r.learned and r.reading == DISTINGUISHABLE
        assert r.auc_interval[0] < r.auc < r.auc_interval[1] and 0 < r.auc_err < 0.02


@pytest.mark.parametrize("name,low,high", [("null", 0.47, 0.53), ("scale 1.10", 0.9, 1.0)])
def test_gbdt_low_sees_scale_and_passes_the_null(pair, name, low, high) -> None:
    ref, other = pair
    r = judge("cls-gbdt-low", distort(other, name), ref)
    assert low < r.auc < high, (name, r.auc)
    assert r.learned == (name != "null")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scale 1.02", "lateral +10%", "layer 5% to next",
                                  "5% voxels zeroed", "energies shuffled"])
def test_gbdt_low_sees_every_distortion(pair, name) -> None:
    ref, other = pair
    r = judge("cls-gbdt-low", distort(other, name), ref)
    assert r.auc > 0.6 and r.learned, (name, r.auc)


def test_dnn_stopped_after_one_step_did_not_learn(pair) -> None:
    ref, other = pair
    thr = ref.geometry.eval_threshold
    xg = classifier_input("cls-high", distort(other, "scale 1.10"), thr)
    xr = classifier_input("cls-high", ref, thr)
    r = classifier_test(xg, xr, "1-photons", epochs=1, width=32, batch_size=10 * N, min_steps=1,
                        progress=False, device="cpu")
    assert len(r.train_loss) == 1 and r.train_loss[0] > math.log(2) - 0.01
    assert not r.learned and r.reading == DID_NOT_LEARN


def test_quick_dnn_trains_enough_steps_to_see_a_gross_distortion(pair) -> None:
    """Quick settings get standardised inputs and >= 1000 steps: 10 epochs no longer means
    'untrained' (the issue measured AUC 0.508 for scale 1.10 before)."""
    ref, other = pair
    thr = ref.geometry.eval_threshold
    xg = classifier_input("cls-high", distort(other, "scale 1.10"), thr)
    xr = classifier_input("cls-high", ref, thr)
    r = classifier_test(xg, xr, "1-photons", epochs=10, width=64, lr=1e-3, progress=False,
                        device="cpu")
    steps_per_epoch = math.ceil(2 * split_sizes(N, "1-photons")[0] / 1000)
    assert len(r.train_loss) * steps_per_epoch >= 1000 and len(r.train_loss) > 10
    assert r.learned and r.auc > 0.7, r.auc


def test_learned_flag_and_readings_by_hand() -> None:
    # n_test = 10,000: binomial noise 0.005, so accuracy must exceed 0.51
    assert has_learned(0.60, 0.52, 10_000)
    assert not has_learned(0.60, 0.505, 10_000)
    assert not has_learned(math.log(2) - 0.005, 0.9, 10_000)
    assert reading(False, 0.9) == DID_NOT_LEARN
    assert reading(True, 0.51) == DISTINGUISHABLE
    assert reading(True, 0.49) == NOT_AT_THIS_SIZE


def test_bootstrap_interval_covers_a_known_auc() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 2000)
    s = rng.normal(size=4000) + y * 0.5  # AUC = Phi(0.5 / sqrt 2) = 0.638
    err, (lo, hi) = bootstrap_auc(y, s, seed=1)
    assert lo < 0.638 < hi and 0.003 < err < 0.02


def test_distortions_do_what_they_say(pair) -> None:
    ref, _ = pair
    ss = ShowerSet(ref.e_inc[:500], ref.showers[:500], ref.geometry)
    geo = ss.geometry
    x = np.asarray(ss.showers, dtype=np.float64)
    # lateral widening conserves energy and moves the energy-weighted radius outwards
    wide = widen_lateral(ss, 1.1)
    np.testing.assert_allclose(wide.showers.sum(1), x.sum(1), rtol=1e-9)
    f0, f1 = high_level_features(ss, 0.0), high_level_features(wide, 0.0)
    lid = geo.layers[2].id
    assert np.mean(f1[f"EC_r_{lid}"]) > 1.03 * np.mean(f0[f"EC_r_{lid}"])
    # 5 % of the most energetic layer moves to the next one, total conserved
    moved = move_layer_energy(ss, 0.05)
    el0, el1 = geo.layer_energies(x), geo.layer_energies(np.asarray(moved.showers))
    k = int(np.argmax(el0[:, :-1].mean(0)))
    ok = el0[:, k + 1] > 0
    np.testing.assert_allclose(el1[ok, k], 0.95 * el0[ok, k])
    np.testing.assert_allclose(el1[ok].sum(1), el0[ok].sum(1))
    # dropped voxels: about 5 % of all voxels are zero that were not
    dropped = drop_voxels(ss, 0.05)
    newly = (np.asarray(dropped.showers) == 0) & (x != 0)
    assert 0.04 < newly.sum() / (x != 0).sum() < 0.06
    # shuffled energies: same showers, same multiset of energies, other pairing
    sh = shuffle_energies(ss)
    assert sorted(sh.e_inc) == sorted(ss.e_inc) and np.mean(sh.e_inc != ss.e_inc) > 0.5


def test_evaluate_reports_gbdt_with_reading_and_official_mean(pair, tmp_path) -> None:
    ref, other = pair
    n = 3000
    gen = distort(ShowerSet(other.e_inc[:n], other.showers[:n], other.geometry), "scale 1.10")
    ref = ShowerSet(ref.e_inc[:n], ref.showers[:n], ref.geometry)
    m = evaluate(gen, ref, "hist,cls-gbdt-high", tmp_path / "e", progress=False)
    assert m["auc_gbdt_high"] > 0.85 and m["learned_gbdt_high"] is True
    assert m["reading_gbdt_high"] == DISTINGUISHABLE and m["auc_gbdt_high_err"] > 0
    assert m["classifier"]["cls-gbdt-high"]["protocol"] == "gbdt"
    assert 0 < m["mean_separation_power_official"] != m["mean_separation_power"]
    assert (tmp_path / "e" / "plots" / "cls-gbdt-high_weights.png").stat().st_size > 1000


def test_gbdt_low_input_columns() -> None:
    geo = Geometry.preset("1-photons")
    rng = np.random.default_rng(0)
    e = np.array([1024.0, 4096.0])
    x = rng.exponential(3.0, (2, geo.n_voxels))
    v = classifier_input("cls-gbdt-low", ShowerSet(e, x, geo), 0.0)
    assert v.shape == (2, 1 + geo.n_voxels + geo.n_layers + 2)
    np.testing.assert_allclose(v[:, 1:1 + geo.n_voxels], x / e[:, None], rtol=1e-6)
    np.testing.assert_allclose(v[:, -1], x.sum(1) / e, rtol=1e-6)
    np.testing.assert_allclose(v[:, -2], np.log10(x.sum(1) + 1e-8), rtol=1e-6)


def test_demo_summary_says_what_the_judge_saw() -> None:
    from caloforge.demo import summary_lines

    m = {"n_reference": 3000, "auc_gbdt_low": 0.93, "auc_gbdt_low_err": 0.01,
         "reading_gbdt_low": DISTINGUISHABLE, "auc_gbdt_high": 0.51, "auc_gbdt_high_err": 0.01,
         "reading_gbdt_high": DID_NOT_LEARN}
    text = "\n".join(summary_lines({"metrics": m, "seconds": {"x": 1.0}, "report": "r.html"}))
    assert "0.930 ± 0.010: distinguishable" in text
    assert "0.510 ± 0.010: classifier did not learn: no evidence either way" in text
    assert "indistinguishable" not in text


def test_official_protocol_is_left_as_it_is(monkeypatch) -> None:
    """Official settings: raw inputs, exactly the given epochs (no standardisation, no
    minimum of steps); anything else runs the quick protocol."""
    from caloforge.evaluation import classifier

    rng = np.random.default_rng(3)
    xg, xr = rng.normal(size=(600, 5)), rng.normal(0.3, 1.0, size=(600, 5))
    monkeypatch.setattr(classifier, "OFFICIAL_DNN", (2, 16, 100, 2e-4))
    official = classifier_test(xg, xr, "1-photons", epochs=2, width=16, batch_size=100,
                               progress=False, device="cpu")
    raw = classifier_test(xg, xr, "1-photons", epochs=2, width=16, batch_size=100,
                          progress=False, device="cpu", min_steps=0, standardize=False)
    assert len(official.train_loss) == 2 and official.auc == raw.auc
    assert np.array_equal(official.scores, raw.scores)
    quick = classifier_test(xg, xr, "1-photons", epochs=2, width=16, batch_size=101,
                            progress=False, device="cpu", min_steps=50)
    assert len(quick.train_loss) == 7  # 2 x 396 train rows: 8 steps per epoch, 50 steps


def test_distortions_keep_the_dtype_of_the_showers() -> None:
    """float32 showers stay float32: a float64 copy alone is visible to a judge (layer sums
    and widths in the file's dtype differ in their last bits)."""
    ss = make_showers("2", 20, dtype=np.float32, seed=3)
    for name in DISTORTIONS:
        out = distort(ss, name)
        assert out.showers.dtype == np.float32, name
    scaled = distort(ss, "scale 1.10").showers
    assert np.allclose(scaled, np.asarray(ss.showers, dtype=np.float64) * 1.1, rtol=1e-6)


def _subnormals(t: torch.Tensor) -> int:
    a = t.abs()
    return int(((a > 0) & (a < torch.finfo(torch.float32).tiny)).sum())


def test_tiny_logit_gradients_keep_subnormals_out_of_the_backward_pass() -> None:
    """A confident DNN's logit near -88 has a subnormal sigmoid; without drop_tiny_grads its
    gradient fills the hidden layers' gradients with subnormals (100x slower on x86), with it
    none enter, and the Adam updates are bitwise the same."""
    from caloforge.evaluation.classifier import drop_tiny_grads, make_dnn

    def run(drop: bool) -> tuple[int, list[torch.Tensor]]:
        torch.manual_seed(0)
        net = make_dnn(8, width=32)
        with torch.no_grad():
            net[-1].weight.mul_(0.01)
            net[-1].bias.fill_(-88.0)  # sigmoid(-88) = 6e-39 < float32 tiny
        opt = torch.optim.Adam(net.parameters(), lr=2e-4)
        x, y = torch.randn(100, 8, requires_grad=True), torch.zeros(100)
        hidden = []
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                layer.register_full_backward_hook(lambda m, gi, go: hidden.append(go[0]))
        for _ in range(3):
            z = net(x).reshape(-1)
            z = drop_tiny_grads(z) if drop else z
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return sum(_subnormals(g) for g in hidden), [p.detach().clone() for p in net.parameters()]

    n_plain, w_plain = run(False)
    n_drop, w_drop = run(True)
    assert n_plain > 1000 and n_drop == 0
    assert all(torch.equal(a, b) for a, b in zip(w_plain, w_drop, strict=True))


def test_dropping_tiny_gradients_leaves_the_official_numbers(monkeypatch) -> None:
    """The official protocol on raw inputs that drive some logits below -87 (subnormal
    sigmoid) gives the same scores with and without drop_tiny_grads."""
    from caloforge.evaluation import classifier

    rng = np.random.default_rng(5)
    xg, xr = rng.normal(size=(600, 5)), rng.normal(size=(600, 5))
    xg[:, 0], xr[:, 0] = rng.uniform(-9000, 0, 600), rng.uniform(0, 3000, 600)
    monkeypatch.setattr(classifier, "OFFICIAL_DNN", (3, 16, 100, 2e-4))
    kw = dict(epochs=3, width=16, batch_size=100, progress=False, device="cpu")
    drop, saturated = classifier.drop_tiny_grads, []

    def spy(z: torch.Tensor) -> torch.Tensor:
        saturated.append(int(((z > -104) & (z < -87)).sum()))
        return drop(z)

    monkeypatch.setattr(classifier, "drop_tiny_grads", spy)
    dropped = classifier_test(xg, xr, "1-photons", **kw)
    assert sum(saturated) > 10  # the case the function is for does occur here
    monkeypatch.setattr(classifier, "drop_tiny_grads", lambda z: z)
    plain = classifier_test(xg, xr, "1-photons", **kw)
    assert np.array_equal(dropped.scores, plain.scores) and dropped.auc == plain.auc
