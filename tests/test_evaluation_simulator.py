"""Metrics on the reference simulator: independent samples look alike, scaled voxels do not.

The classifier is reduced for speed (width 64, 5 epochs, batch 100, Adam lr 1e-3) instead of
the official (2048, 50 epochs, batch 1000, lr 2e-4); the splits scale to 10,000 showers per
class (6,611 / 1,652 / 1,737).
"""

from __future__ import annotations

import pytest
import torch

from caloforge.data import ShowerSet
from caloforge.evaluation import evaluate

simulate = pytest.importorskip("caloforge.simulate").simulate

QUICK = {"epochs": 5, "width": 64, "batch_size": 100, "lr": 1e-3, "progress": False,
         "device": "cpu"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small networks train fastest on one thread, above all on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference() -> ShowerSet:
    return simulate("1-photons", 10_000, seed=11)


def test_independent_samples_are_indistinguishable(reference):
    other = simulate("1-photons", 10_000, seed=12)
    m = evaluate(other, reference, "hist,cls-low,cls-high", **QUICK)
    assert abs(m["auc_low"] - 0.5) < 0.03
    assert abs(m["auc_high"] - 0.5) < 0.03
    assert m["separation_power"]["E_ratio"] < 0.05
    assert m["mean_separation_power"] < 0.05


def test_voxels_scaled_by_1_1_are_detected(reference):
    scaled = ShowerSet(reference.e_inc, reference.showers * 1.1, reference.geometry)
    m = evaluate(scaled, reference, "hist,cls-low", **QUICK)
    assert m["auc_low"] > 0.9
    assert m["separation_power"]["E_ratio"] > 0.3
