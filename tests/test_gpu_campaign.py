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
    assert [s["name"] for s in res["steps"]] == ["data", "judge", "sampling", "train-caloinn",
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
    # the judge step: every cell, on the smoke sizes (cells measured before are not skipped)
    gc = _module()
    assert [j["key"] for j in res["judge"]] == [f"{s}|500|{d}" for s, d in gc.JUDGE_CELLS]
    for j in res["judge"]:
        assert 0.0 <= j["auc"] <= 1.0 and j["device"] == "cpu" and "seeds 1 and 2" in j["data"]
    md = (tmp_path / "campaign.md").read_text()
    assert "| CPU (no GPU) | CaloINN (RQS coupling) | fp32 |" in md
    assert "| CPU (no GPU) | dnn-official-low | 500 | lateral +10% |" in md
    assert res["wall_s"] <= res["budget_s"], f"smoke took {wall:.0f} s"
    # smoke numbers never reach BENCHMARKS.md's GPU section
    render = subprocess.run([sys.executable, str(SCRIPT), "--render",
                             str(tmp_path / "campaign.json")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert render.returncode == 2 and "expected the JSON of a GPU run" in render.stderr
    # ... nor judge_power's table
    jp = _judge_power()
    with pytest.raises(SystemExit, match="expected the JSON of a GPU campaign"):
        jp.import_campaign(tmp_path / "campaign.json", {})


def _judge_power():
    spec = importlib.util.spec_from_file_location("judge_power",
                                                  ROOT / "benchmarks" / "judge_power.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_judge_power_imports_gpu_cells_and_marks_them(tmp_path):
    """A GPU campaign's judge cells fill judge_power's missing cells (a cell measured before is
    kept), render with the GPU mark, and stay out of the CPU timing column."""
    jp = _judge_power()
    cell = {"auc": 0.9, "auc_err": 0.001, "learned": True, "learned_rule": "val",
            "reading": "distinguishable", "steps_or_iterations": 30, "seconds": 20.0,
            "threads": 16, "device": "cuda", "gpu": "NVIDIA H200",
            "data": "simulated 1-photons, seeds 1 and 2 (121,000 / 121,000)"}
    camp = {"smoke": False, "device": "cuda", "judge": [
        {**cell, "key": "dnn-official-low|121000|lateral +10%"},
        {**cell, "key": "dnn-official-low|121000|scale 1.10", "auc": 0.5}]}
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(camp))
    cpu = {**{k: cell[k] for k in ("auc", "auc_err", "learned", "learned_rule", "reading",
                                   "steps_or_iterations", "threads")},
           "auc": 0.95, "seconds": 2700.0}
    results = {"dnn-official-low|121000|scale 1.10": cpu}
    assert jp.import_campaign(path, results) == 1
    assert results["dnn-official-low|121000|scale 1.10"]["auc"] == 0.95  # kept
    assert results["dnn-official-low|121000|lateral +10%"]["device"] == "cuda"
    plan = [(121000, "dnn-official-low", ["scale 1.10", "lateral +10%"])]
    md, failures = jp.render(results, plan)
    row = next(line for line in md.splitlines() if line.startswith("| dnn-official-low"))
    assert "| 0.950 | 0.900ᴳ |" in row and row.endswith("| 2700.0 |") and not failures
    camp["judge"][0]["data"] = "files"
    path.write_text(json.dumps(camp))
    with pytest.raises(SystemExit, match="seeds 1 and 2"):
        jp.import_campaign(path, {})


def test_step_caps_follow_the_options():
    gc = _module()
    assert gc.parse_args([]).plan["judge"] == 80 and sum(gc.parse_args([]).plan.values()) == 520
    assert gc.parse_args(["--judge-budget", "400"]).plan["judge"] == 400
    assert sum(gc.parse_args(["--smoke"]).plan.values()) <= gc.parse_args(["--smoke"]).budget


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
