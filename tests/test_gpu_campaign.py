"""The GPU campaign script (benchmarks/gpu_campaign.py) cannot rot: its --smoke run (the same
steps at toy sizes on the CPU) passes in the default suite, and its time limits fail loudly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_campaign.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_campaign", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_time_limit_fires_and_nests():
    gc = _module()
    t = time.monotonic()
    with pytest.raises(gc.StepTimeout, match="inner"), gc.time_limit(5.0, "outer"), \
            gc.time_limit(0.2, "inner"):
        time.sleep(3)
    assert time.monotonic() - t < 2
    # the outer limit is re-armed after an inner block that finished in time
    with pytest.raises(gc.StepTimeout, match="outer"), gc.time_limit(0.5, "outer"):
        with gc.time_limit(5.0, "inner"):
            pass
        time.sleep(3)
    with pytest.raises(gc.StepTimeout, match="no time left"), gc.time_limit(-1.0, "x"):
        pass


def test_step_that_runs_out_of_time_is_recorded_as_a_failure(tmp_path):
    gc = _module()
    camp = gc.Campaign(tmp_path, 30.0, {"gpu": "test", "sizes": [1]})
    assert camp.step("fast", lambda b: 42, cap=5.0) == 42
    assert camp.step("slow", lambda b: time.sleep(5), cap=0.3) is None
    res = json.loads((tmp_path / "campaign.json").read_text())
    assert [s["status"] for s in res["steps"]] == ["ok", "timeout"]
    assert res["failures"] and "slow" in res["failures"][0]
    assert "| slow | timeout |" in (tmp_path / "campaign.md").read_text()


def test_smoke_run(tmp_path):
    """--smoke: every step runs and succeeds at toy sizes on the CPU (about a minute when the
    machine is idle; its budget allows for a shared one)."""
    t = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    wall = time.monotonic() - t
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "campaign.json").read_text())
    assert res["smoke"] and res["device"] == "cpu" and not res["failures"]
    assert [s["name"] for s in res["steps"]] == ["data", "sampling", "train-caloinn",
                                                 "eval-caloinn", "train-caloman", "eval-caloman"]
    assert all(s["status"] == "ok" for s in res["steps"])
    rows = {r["key"]: r for r in res["sampling"]}
    assert {"teacher-full", "teacher", "student", "caloinn", "caloman"} <= set(rows)
    for key in ("teacher-full", "teacher", "student", "caloinn", "caloman"):
        fp32 = rows[key]["variants"]["fp32"]
        assert fp32["ms"] and all(v > 0 for v in fp32["ms"].values()), key
        assert rows[key]["params"] > 0
    assert rows["caloinn"]["variants"]["compile"]["ms"]  # torch.compile path (eager backend)
    assert "not_applicable" in rows["teacher"]["variants"]["compile"]
    assert {(r["fast"], r["slow"]) for r in res["ratios"]} >= {("student", "teacher"),
                                                               ("caloinn", "teacher-full")}
    assert [t["model"] for t in res["training"]] == ["caloinn", "caloman"]
    assert all(t["epochs"] >= 1 for t in res["training"])
    for e in res["evaluation"]:
        assert 0.0 <= e["auc_low"] <= 1.0 and 0.0 <= e["auc_high"] <= 1.0
        assert e["n"] == 1000
    md = (tmp_path / "campaign.md").read_text()
    assert "| CPU (no GPU) | CaloINN (RQS coupling) | fp32 |" in md
    assert res["wall_s"] <= res["budget_s"], f"smoke took {wall:.0f} s"
    # smoke numbers never reach BENCHMARKS.md's GPU section
    render = subprocess.run([sys.executable, str(SCRIPT), "--render",
                             str(tmp_path / "campaign.json")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert render.returncode == 2 and "expected the JSON of a GPU run" in render.stderr


def test_inner_handler_tells_which_limit_fired():
    gc = _module()
    with pytest.raises(gc.StepTimeout) as info, gc.time_limit(0.3, "step"):
        try:
            with gc.time_limit(5.0, "measurement"):
                time.sleep(3)
        except gc.StepTimeout as exc:  # a measurement's handler must not swallow the step's
            assert exc.what == "step"
            raise
    assert info.value.what == "step"
