"""The dataset-2/3 quality benchmark (benchmarks/layerwise_quality.py) cannot rot: its --smoke
run goes through the whole pipeline (simulate, train under a time limit, the untrained twin,
generate, evaluate, render) with the real CLI at toy size, and bad requests fail up front."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from conftest import ROOT, load_benchmark, run_benchmark


def test_unknown_mode_is_an_error_before_any_work(tmp_path: Path) -> None:
    proc = run_benchmark("layerwise_quality", "--smoke", "--no-write", "--modes",
                         "cls-gbdt-low,cls-bogus", "--scratch", tmp_path, timeout=120)
    assert proc.returncode != 0 and "cls-bogus" in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing simulated


def test_derived_recipe_splits_the_budget_over_the_stages(tmp_path: Path) -> None:
    lq = load_benchmark("layerwise_quality")
    src = ROOT / "configs" / "caloman" / "2-cpu.yaml"
    split = lq.derived_recipe(src, 90.0, tmp_path / "r.yaml")
    import yaml

    recipe = yaml.safe_load((tmp_path / "r.yaml").read_text())
    stages = recipe["training"]
    assert split["stages"] == list(stages) and split["fits"] == len(stages) == 3
    assert all(math.isclose(s["time_limit"], 30.0) for s in stages.values())
    assert {k: v["epochs"] for k, v in stages.items()} == split["epochs"]
    lq.derived_recipe(src, 0.0, tmp_path / "u.yaml")
    assert all(s["time_limit"] == 0 for s in
               yaml.safe_load((tmp_path / "u.yaml").read_text())["training"].values())


def test_smoke_run(tmp_path: Path) -> None:
    """--smoke: CaloMan 2-cpu and its untrained twin end to end (meant to take under 2
    minutes on an idle 2-core machine; the timeout allows for a heavily shared one)."""
    t0 = time.monotonic()
    proc = run_benchmark("layerwise_quality", "--smoke", "--no-write", "--scratch", tmp_path,
                         "--threads", "1", timeout=1500)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = json.loads((tmp_path / "results.json").read_text())
    rows = run["rows"]
    assert set(rows) == {"caloman/2-cpu", "caloman/2-cpu (untrained)"}
    trained, untrained = rows["caloman/2-cpu"], rows["caloman/2-cpu (untrained)"]
    for r in (trained, untrained):
        assert "error" not in r
        assert r["n_evaluated"] == 150 and r["n_generated"] == 150
        for tag in ("gbdt_low", "gbdt_high", "resnet"):
            assert 0.0 <= r[f"auc_{tag}"] <= 1.0
        assert 0.0 <= r["recall"] <= 1.0 and r["sep_mean"] >= 0.0
        assert set(r["stages"]) == {"energy_flow", "autoencoder", "latent_flow"}
    # the untrained twin took no optimiser step: every stage's train loss is NaN
    for tag in untrained["stages"]:
        csv = (tmp_path / "caloman_2_cpu_untrained" / "run" / f"{tag}_metrics.csv").read_text()
        assert csv.splitlines()[1].split(",")[1] == "nan"
    assert untrained["budget"]["minutes"] == 0 and trained["budget"]["minutes"] == 0.05
    # a random decoder's showers are easy to tell from simulated ones
    assert untrained["auc_gbdt_high"] > 0.8
    # the section renders from the cache alone, with the stated reductions
    text = load_benchmark("layerwise_quality").render(run)
    assert "| **caloman/2-cpu** |" in text and "| caloman/2-cpu (untrained) |" in text
    assert "N = 300 training showers" in text and "150 held-out" in text
    assert proc.stdout.count("## Layer-by-layer") == 1
    print(f"smoke wall {wall:.0f} s")


@pytest.mark.parametrize("dataset", ["2", "3"])
def test_default_recipes_exist(dataset: str) -> None:
    """The default model list names recipes of this checkout (the MAF L2LFlows twin of dataset
    3 may be absent: the run then says so)."""
    lq = load_benchmark("layerwise_quality")
    present = [r for r in lq.RECIPES[dataset] if (ROOT / "configs" / r).exists()]
    assert len(present) >= 4
    assert (ROOT / "configs" / lq.STUDENT[dataset]).exists()
