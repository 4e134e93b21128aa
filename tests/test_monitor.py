"""Training monitors (caloforge.monitor): the "mean histogram difference" (``monitor:
histogram``) and the boosted-tree AUC (``monitor: classifier``)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import run_cli

from caloforge.config import train_config
from caloforge.data import subsample, write_showers
from caloforge.errors import ConfigError
from caloforge.monitor import classifier_score, every, histogram_score
from caloforge.simulate import simulate


@pytest.fixture(scope="module")
def val():
    return simulate("1-photons", 600, seed=5)


def test_score_is_zero_for_the_validation_showers_and_grows_with_distortion(val) -> None:
    ref = subsample(val, 300, seed=1)  # the subset histogram_score draws

    def replay(scale: float):
        def sample(e_inc: torch.Tensor) -> torch.Tensor:
            assert np.array_equal(e_inc.numpy(), ref.e_inc)
            return torch.as_tensor(ref.showers * scale)
        return sample

    same = histogram_score(replay(1.0), val, 300, seed=1)(torch.nn.Linear(1, 1))
    hot = histogram_score(replay(1.5), val, 300, seed=1)(torch.nn.Linear(1, 1))
    assert same == pytest.approx(0.0, abs=1e-12)
    assert hot > 0.05


def test_score_restores_the_global_rng_and_needs_validation_data(val) -> None:
    def noisy(e_inc: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(e_inc), val.geometry.n_voxels, dtype=torch.float64) * 100
    score = histogram_score(noisy, val, 200, seed=3)
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    a, b = score(None), score(None)
    assert a == b  # the same sampling noise every call
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is untouched
    with pytest.raises(ConfigError, match=r"training\[monitor\].*--val"):
        histogram_score(noisy, None, 200)


def test_config_values_are_checked() -> None:
    cfg = train_config({"training": {"monitor": "histogram", "monitor_samples": 500}})
    assert cfg.monitor == "histogram" and cfg.monitor_samples == 500
    with pytest.raises(ConfigError,
                       match=r"monitor\]: expected 'loss', 'histogram' or 'classifier'"):
        train_config({"training": {"monitor": "auc"}})
    cfg = train_config({"training": {"monitor": "classifier", "monitor_every": 3}})
    assert cfg.monitor == "classifier" and cfg.monitor_every == 3
    with pytest.raises(ConfigError, match=r"monitor_every\]"):
        train_config({"training": {"monitor_every": 0}})
    with pytest.raises(ConfigError, match=r"monitor_samples\]"):
        train_config({"training": {"monitor_samples": 10}})


def test_train_cli_scores_epochs_by_histograms(tmp_path, val) -> None:
    """A real `caloforge train` run (tiny CaloINN): the per-epoch score in metrics.csv is the
    mean separation power (between 0 and 1), not the validation loss."""
    (tmp_path / "tiny.yaml").write_text(
        "model: caloinn\ndataset: 1-photons\n"
        "flow: {transforms: 2, bins: 4, hidden: [32]}\n"
        "training: {epochs: 3, batch_size: 128, lr: 1.0e-3, device: cpu, "
        "monitor: histogram, monitor_samples: 100}\n")
    write_showers(tmp_path / "train.h5", val)
    r = run_cli("train", "--model", "caloinn", "--config", tmp_path / "tiny.yaml", "--data",
                tmp_path / "train.h5", "--quiet", "-o", tmp_path / "run", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    scores = np.array([float(row["score"]) for row in rows])
    losses = np.array([float(row["val_loss"]) for row in rows])
    assert len(rows) == 3 and ((scores > 0) & (scores < 1)).all()
    assert not np.allclose(scores, losses)  # not the likelihood


def test_teacher_flow1_cannot_monitor_histograms(val) -> None:
    from caloforge.models import model_class
    cfg = {"model": "caloflow", "dataset": "1-photons",
           "training": {"flow1": {"monitor": "histogram"}}}
    model = model_class("caloflow")(val.geometry, cfg)
    with pytest.raises(ConfigError, match=r"training.flow1\[monitor\]"):
        model.fit(val, val, None, progress=False)


def test_teacher_flow2_histograms_need_validation_before_training(val) -> None:
    from caloforge.models import model_class
    cfg = {"model": "caloflow", "dataset": "1-photons",
           "training": {"flow2": {"monitor": "histogram"}}}
    model = model_class("caloflow")(val.geometry, cfg)
    with pytest.raises(ConfigError, match=r"training.flow2\[monitor\].*--val"):
        model.fit(val, None, None, progress=False)  # raised before flow I trains


def test_classifier_score_sees_a_distortion_and_not_the_showers_themselves(val) -> None:
    ref = subsample(val, 400, seed=2)

    def replay(scale: float):
        def sample(e_inc: torch.Tensor) -> torch.Tensor:
            assert np.array_equal(e_inc.numpy(), ref.e_inc)
            return torch.as_tensor(ref.showers * scale)
        return sample

    hot = classifier_score(replay(1.5), val, 400, seed=2)(None)
    same = classifier_score(replay(1.0), val, 400, seed=2)(None)
    assert hot > 0.9 and abs(same - 0.5) < 0.1
    with pytest.raises(ConfigError, match=r"\[monitor\]: 'classifier'.*--val"):
        classifier_score(replay(1.0), None, 400)


def test_every_k_epochs_repeats_the_last_score() -> None:
    calls = []

    def score(_m) -> float:
        calls.append(1)
        return float(len(calls))

    sparse = every(score, 3)
    assert [sparse(None) for _ in range(7)] == [1, 1, 1, 2, 2, 2, 3]
    assert every(score, 1) is score


def test_train_cli_scores_epochs_by_a_classifier(tmp_path, val) -> None:
    """`monitor: classifier` in a real `caloforge train` run: the per-epoch score is a
    boosted-tree AUC (between 0 and 1), computed every 2nd epoch."""
    (tmp_path / "tiny.yaml").write_text(
        "model: caloinn\ndataset: 1-photons\n"
        "flow: {transforms: 2, bins: 4, hidden: [32]}\n"
        "training: {epochs: 3, batch_size: 128, lr: 1.0e-3, device: cpu, "
        "monitor: classifier, monitor_samples: 200, monitor_every: 2}\n")
    write_showers(tmp_path / "train.h5", val)
    r = run_cli("train", "--model", "caloinn", "--config", tmp_path / "tiny.yaml", "--data",
                tmp_path / "train.h5", "--quiet", "-o", tmp_path / "run", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    scores = [float(row["score"]) for row in rows]
    assert len(scores) == 3 and all(0.4 <= s <= 1.0 for s in scores)
    assert scores[1] == scores[0]  # epoch 2 keeps epoch 1's score (every 2nd epoch)
