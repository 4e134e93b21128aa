"""Slow: a few minutes of CaloINN training on simulator showers beats an untrained model in
the CaloChallenge high-level classifier test (lower AUC)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def _auc(model, ref, dataset: str) -> float:
    from caloforge.data import ShowerSet
    from caloforge.evaluation.classifier import classifier_test
    from caloforge.evaluation.inputs import classifier_input

    torch.manual_seed(0)
    gen = ShowerSet(ref.e_inc, model.sample(torch.as_tensor(ref.e_inc)).numpy(), ref.geometry)
    thr = ref.geometry.eval_threshold
    res = classifier_test(classifier_input("cls-high", gen, thr),
                          classifier_input("cls-high", ref, thr), dataset, epochs=15,
                          width=256, progress=False, device="cpu")
    return float(res.auc)


def test_trained_caloinn_beats_untrained():
    from caloforge.models.caloinn import CaloINN
    from caloforge.simulate import simulate

    torch.set_num_threads(2)
    train = simulate("1-photons", 4000, seed=1)
    val = simulate("1-photons", 500, seed=2)
    ref = simulate("1-photons", 3000, seed=3)
    cfg = {"model": "caloinn", "dataset": "1-photons",
           "flow": {"transforms": 6, "bins": 8, "hidden": [96, 96]},
           "training": {"epochs": 12, "batch_size": 256, "lr": 1e-5, "max_lr": 1e-3,
                        "scheduler": "onecycle", "optimizer": "adamw", "weight_decay": 0.01,
                        "grad_clip": 10.0, "device": "cpu", "progress": False}}
    torch.manual_seed(0)
    untrained = CaloINN(train.geometry, cfg)
    untrained.preprocess(train, fit_scalers=True)  # fitted preprocessing, untrained flow
    untrained.float().eval()
    torch.manual_seed(0)
    trained = CaloINN(train.geometry, cfg)
    trained.fit(train, val, None, progress=False)
    trained.eval()
    auc_untrained = _auc(untrained, ref, "1-photons")
    auc_trained = _auc(trained, ref, "1-photons")
    print(f"high-level classifier AUC: untrained {auc_untrained:.3f}, trained {auc_trained:.3f}")
    assert np.isfinite(auc_trained)
    assert auc_trained < auc_untrained - 0.05
