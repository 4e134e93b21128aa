"""``caloforge demo``: the pipeline on a tiny configuration, reruns, and the full demo (slow)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import torch
import yaml

from caloforge.demo import DEMO_CONFIG, DemoSettings, run_demo, summary_lines
from caloforge.errors import CaloforgeError

ROOT = Path(__file__).resolve().parents[1]


def toy_simulate(dataset: str, n: int, *, seed: int = 0, progress: bool = False, **_):
    from test_caloman import toy_showers

    from caloforge.geometry import Geometry

    return toy_showers(Geometry.preset(dataset), n, seed=seed)


def tiny_settings(**kw) -> DemoSettings:
    cfg = copy.deepcopy(DEMO_CONFIG)
    cfg["hidden"] = [32, 32]
    cfg["latent_dim"] = 4
    cfg["energy_flow"]["hidden"] = [16, 16]
    cfg["latent_flow"]["hidden"] = [16, 16]
    for stage in cfg["training"].values():
        stage["epochs"] = 1
    return DemoSettings(n_train=300, n_test=150, cls_epochs=1, modes=("prdc",), config=cfg,
                        **kw)


@pytest.fixture(autouse=True)
def _threads(thread_settings):
    torch.set_num_threads(1)
    yield


def test_demo_config_file_matches_code() -> None:
    assert yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text()) == DEMO_CONFIG


def test_demo_pipeline_tiny_and_rerun(tmp_path: Path) -> None:
    pytest.importorskip("caloforge.evaluation.runner")
    out = tmp_path / "demo"
    res = run_demo(out, settings=tiny_settings(), progress=False, simulate_fn=toy_simulate)
    report = Path(res["report"])
    assert report.is_file() and (out / "evaluation" / "metrics.json").is_file()
    for name in ("simulated.h5", "generated.h5", "run/model.pt", "demo.json"):
        assert (out / name).exists(), name
    assert any("report:" in line for line in summary_lines(res))
    # no temporary leftovers (all outputs atomic)
    assert not [p for p in out.rglob("*.tmp")]
    # a rerun reuses every finished step
    mtime = (out / "generated.h5").stat().st_mtime_ns
    t0 = time.perf_counter()
    run_demo(out, settings=tiny_settings(), progress=False, simulate_fn=toy_simulate)
    assert (out / "generated.h5").stat().st_mtime_ns == mtime
    assert time.perf_counter() - t0 < 30
    # other settings need --overwrite, which redoes everything
    with pytest.raises(CaloforgeError):
        run_demo(out, settings=tiny_settings(seed=1), progress=False,
                 simulate_fn=toy_simulate)
    run_demo(out, settings=tiny_settings(seed=1), overwrite=True, progress=False,
             simulate_fn=toy_simulate)
    assert (out / "generated.h5").stat().st_mtime_ns != mtime


def test_demo_resumes_after_a_kill(tmp_path: Path) -> None:
    """A demo killed after simulating and mid-training finishes on the next run."""
    pytest.importorskip("caloforge.evaluation.runner")
    out = tmp_path / "demo"
    settings = tiny_settings()
    run_demo(out, settings=settings, progress=False, simulate_fn=toy_simulate)
    (out / "run" / "model.pt").unlink()
    (out / "run" / "latent_flow_final.pt").unlink()
    (out / "generated.h5").unlink()
    res = run_demo(out, settings=settings, progress=False, simulate_fn=toy_simulate)
    assert (out / "run" / "model.pt").exists() and Path(res["report"]).exists()


def test_demo_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CaloforgeError):
        run_demo(tmp_path, settings=tiny_settings(), progress=False, simulate_fn=toy_simulate)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_full_demo_cli(tmp_path: Path) -> None:
    from caloforge.cli import main

    t0 = time.perf_counter()
    assert main(["demo", "-o", str(tmp_path / "d"), "--threads", "2"]) == 0
    assert time.perf_counter() - t0 < 600
    assert (tmp_path / "d" / "evaluation" / "report.html").is_file()
