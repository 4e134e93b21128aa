"""``caloforge info`` on run directories and checkpoints: which stages are done."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_showers, run_cli

from caloforge import runinfo
from caloforge.errors import DataError

TINY_CALOFLOW = {
    "model": "caloflow", "dataset": "1-photons",
    "flow1": {"transforms": 1, "hidden": [8], "bins": 4},
    "flow2": {"transforms": 1, "hidden": [8], "bins": 4},
    "training": {"flow1": {"epochs": 3, "batch_size": 100},
                 "flow2": {"epochs": 2, "batch_size": 100}},
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from caloforge.data import write_showers

    tmp = tmp_path_factory.mktemp("runinfo")
    write_showers(tmp / "d.h5", make_showers(n=200))
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY_CALOFLOW))
    r = run_cli("train", "--model", "caloflow", "--config", tmp / "tiny.yaml", "--data",
                tmp / "d.h5", "-o", tmp / "run", "--quiet")
    assert r.returncode == 0, r.stderr
    return tmp / "run"


def test_finished_run_lists_every_stage_done(trained_run: Path) -> None:
    r = run_cli("info", trained_run)
    assert r.returncode == 0, r.stderr
    assert "stages:      2 of 2 done; model.pt written" in r.stdout
    flow1 = next(line for line in r.stdout.splitlines() if line.strip().startswith("flow1"))
    assert "done" in flow1 and "epochs 3/3" in flow1


def test_checkpoint_reports_model_parameters_and_stages(trained_run: Path) -> None:
    r = run_cli("info", trained_run / "model.pt")
    assert r.returncode == 0, r.stderr
    assert "model:       caloflow (caloforge checkpoint)" in r.stdout
    assert "368 voxels" in r.stdout
    assert "flow2" in r.stdout and "2 of 2 done" in r.stdout


def test_interrupted_and_unstarted_stages(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    for name in ("config.yaml", "flow1_final.pt", "flow1_metrics.csv", "flow2_metrics.csv"):
        (run / name).write_bytes((trained_run / name).read_bytes())
    _, stages, complete = runinfo.run_state(run)
    assert not complete
    assert [(s.label, s.status, s.epochs_done, s.epochs_planned) for s in stages] == [
        ("flow1", "done", 3, 3), ("flow2", "in progress", 2, 2)]
    (run / "flow2_metrics.csv").unlink()
    _, stages, _ = runinfo.run_state(run)
    assert stages[1].status == "not started" and stages[1].epochs_done == 0


def test_directory_without_recipe_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_cli("info", tmp_path)
    assert r.returncode != 0
    assert "config.yaml: expected the run's recipe" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "config.yaml").write_text("model: no-such-model\ndataset: '2'\n")
    with pytest.raises(DataError, match="expected a recipe this caloforge can build"):
        runinfo.run_state(tmp_path)
