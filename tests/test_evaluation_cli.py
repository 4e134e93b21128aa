"""``caloforge evaluate`` end to end on small files: outputs, report, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caloforge.cli import main
from caloforge.data import ShowerSet, write_showers
from caloforge.geometry import Geometry


def sample(n: int, seed: int, scale: float = 1.0) -> ShowerSet:
    """Photon-geometry showers at two incident energies (keeps the per-energy plots few)."""
    geo = Geometry.preset("1-photons")
    rng = np.random.default_rng(seed)
    e = rng.choice([1024.0, 65536.0], n)
    x = rng.exponential(1.0, (n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.3)
    return ShowerSet(e, (x * e[:, None] * scale / (0.3 * geo.n_voxels)).astype(np.float32), geo)


@pytest.fixture(autouse=True)
def restore_threads(thread_settings):
    """``--threads 1`` changes this process's thread settings: put them back afterwards."""
    yield


@pytest.fixture()
def files(tmp_path):
    paths = {}
    for name, ss in (("gen", sample(400, 1, 1.05)), ("ref", sample(400, 2)),
                     ("short", sample(300, 3))):
        paths[name] = write_showers(tmp_path / f"{name}.h5", ss)
    return paths


def test_cli_writes_metrics_report_and_plots(files, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "-g", str(files["gen"]), "-r", str(files["ref"]), "-m", "cls-high",
            "-m", "prdc", "--epochs", "1", "--width", "16", "--threads", "1", "--quiet",
            "-o", str(out)]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("auc_low", "auc_high", "jsd_low", "jsd_high", "fpd", "kpd", "prdc",
                "separation_power"):
        assert key in m
    assert m["auc_low"] is None and m["fpd"] is None and m["separation_power"] is None
    assert 0 <= m["auc_high"] <= 1 and 0 <= m["prdc"]["coverage"] <= 1
    assert m["settings"]["split_per_class"] == [264, 66, 70]  # 400 x (80, 20, 21) / 121
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # outputs and the w = p/(1-p) picture
    assert (out / "plots" / "cls-high.png").exists()
    assert (out / "plots" / "cls-high_weights.png").exists()
    c = m["classifier"]["cls-high"]
    assert c["protocol"] == "quick" and len(c["train_loss"][0]) >= 1 and m["learned_high"] in (
        True, False)
    assert m["reading_high"] in html and 0 < m["auc_high_err"] < 0.5
    printed = capsys.readouterr().out
    assert "cls-high" in printed and m["reading_high"] in printed
    assert main(args) == 2  # outputs exist and no --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_cli_refuses_unequal_counts_unless_subsampled(files, tmp_path, capsys):
    base = ["evaluate", "-g", str(files["short"]), "-r", str(files["ref"]), "-m", "prdc",
            "--quiet", "-o", str(tmp_path / "e")]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "expected as many showers as the reference (400), found 300" in err
    assert main([*base, "--subsample"]) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["n_reference"] == 300 and m["prdc"]["coverage"] > 0
