"""The dataset-2/3 sampling benchmark (benchmarks/sampling.py --datasets, implemented in
benchmarks/sampling_layerwise.py) cannot rot: a toy run through the real entry point times a
real model, skips what does not fit with a stated reason, and the issue's reference figures are
those of the CaloChallenge table."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_benchmark, run_benchmark


def test_issue_targets_are_the_challenge_figures() -> None:
    sl = load_benchmark("sampling_layerwise")
    figs = sl.challenge_figures()
    if not figs:  # the shared results table is not part of the repository
        return
    assert figs[("3", "iCaloFlow student")]["cpu 10000"] == sl.DS3_CPU_MS["icaloflow-student"]
    assert figs[("3", "conv. L2LFlows")]["cpu 10000"] == sl.DS3_CPU_MS["l2lflows"]
    for key, (_, _, _, _, names) in sl.ROWS.items():
        for name in names:  # every challenge name a row points to exists on some dataset
            assert any((d, name) in figs for d in ("2", "3")), (key, name)


def test_toy_run_through_sampling_py(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = run_benchmark("sampling", "--datasets", "2", "--rows", "caloman", "--scales", "cpu",
                         "--threads-list", "1", "--sizes", "1,10,100000", "--min-time", "0",
                         "--no-write", "--output", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(out.read_text())
    (row,) = run["rows"]
    assert row["recipe"] == "configs/caloman/2-cpu.yaml" and row["params"] > 0
    t = row["t"]["1"]
    assert all(isinstance(t[b], float) and t[b] > 0 for b in ("1", "10"))
    assert t["100000"].startswith("memory:")  # 100k x 6480 voxels does not fit in 2.5 GiB
    text = proc.stdout
    assert "| DS2 | CaloMan |" in text and "memory:" in text
    assert "no dataset-2/3 entry" in text  # CaloMan has no challenge figures there


def test_memory_allowance_skips_a_model_with_its_reason(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = run_benchmark("sampling_layerwise", "--datasets", "2", "--rows", "caloman",
                         "--scales", "cpu", "--threads-list", "1", "--sizes", "1",
                         "--memory-gb", "0.0001", "--no-write", "--output", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert "allowance" in row["skipped"] and "t" not in row
    assert "allowance" in proc.stdout
