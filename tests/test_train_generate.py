"""`caloforge train` and `caloforge generate` end to end (real CLI subprocesses, tiny CaloINN)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import caloforge_exe, make_showers, run_cli, run_cli_many

from caloforge.cli import main
from caloforge.data import read_showers, write_showers
from caloforge.models.base import load_model

TINY = """\
model: caloinn
dataset: 1-photons
flow: {transforms: 2, bins: 4, hidden: [32]}
preprocessing: {noise_mev: 1.0e-3, threshold_mev: 1.0e-3}
training: {epochs: 2, batch_size: 128, lr: 1.0e-3, device: cpu}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train")
    (d / "tiny.yaml").write_text(TINY)
    write_showers(d / "train.h5", make_showers(n=600, sparsity=0.7, seed=1))
    write_showers(d / "pions.h5", make_showers("1-pions", n=20, seed=2))
    return d


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    run = workdir / "run"
    r = run_cli("train", "--model", "caloinn", "--config", workdir / "tiny.yaml", "--data",
                workdir / "train.h5", "--quiet", "-o", run, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    return run


def test_train_writes_run_directory(trained):
    for name in ("model.pt", "last.pt", "final.pt", "metrics.csv", "config.yaml"):
        assert (trained / name).is_file(), name
    rows = list(csv.DictReader(open(trained / "metrics.csv")))
    assert len(rows) == 2 and "val_loss" in rows[0]  # 10% validation split by default
    model = load_model(trained / "model.pt")
    assert model.name == "caloinn" and model.geometry.name == "1-photons"


def test_generate_writes_valid_reproducible_files(trained, workdir):
    out1, out2, out3 = workdir / "gen1.h5", workdir / "gen2.h5", workdir / "gen3.h5"
    common = ["--checkpoint", trained / "model.pt", "--device", "cpu", "--quiet"]
    res = run_cli_many({
        "official": ["generate", *common, "-n", "300", "--batch-size", "128", "--seed", "3",
                     "-o", out1],
        "again": ["generate", *common, "-n", "300", "--batch-size", "128", "--seed", "3",
                  "-o", out2],
        "ref": ["generate", *common, "--energies-from", workdir / "train.h5", "-n", "50",
                "-o", out3],
    }, timeout=300)
    for k, r in res.items():
        assert r.returncode == 0, (k, r.stderr)
    assert "time per shower" in res["official"].stdout and " ms" in res["official"].stdout
    a, b, c = read_showers(out1), read_showers(out2), read_showers(out3)
    assert len(a) == 300 and a.geometry.name == "1-photons" and (a.showers >= 0).all()
    assert set(np.unique(a.e_inc)) <= {2.0 ** k for k in range(8, 23)}
    np.testing.assert_array_equal(a.showers, b.showers)  # same seed -> same file
    np.testing.assert_array_equal(c.e_inc, read_showers(workdir / "train.h5").e_inc[:50])
    assert (a.showers.sum(1) > 0).mean() > 0.9
    # an existing output is refused without --overwrite
    r = run_cli("generate", *common, "-n", "5", "-o", out1)
    assert r.returncode == 2 and "--overwrite" in r.stderr


def test_kill_and_resume(workdir, capsys):
    run = workdir / "resume"
    args = ["train", "--model", "caloinn", "--config", workdir / "tiny.yaml", "--data",
            workdir / "train.h5", "--epochs", "12", "--quiet", "-o", run]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*caloforge_exe(), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert (run / "last.pt").exists() and not (run / "model.pt").exists()
    done = torch.load(run / "last.pt", weights_only=False)["epoch"]
    assert 1 <= done < 12
    assert main([str(a) for a in args]) == 2  # without --resume: refused
    assert "--resume" in capsys.readouterr().err
    r = run_cli(*args, "--resume", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 12  # the resumed run continued from epoch `done`, not from scratch
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 12


def test_errors_are_one_line(workdir, trained, capsys):
    bad_yaml = workdir / "bad.yaml"
    bad_yaml.write_text("model: caloinn\nflow: [unclosed\n")
    listy = workdir / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    pions = workdir / "pions.yaml"
    pions.write_text(TINY.replace("1-photons", "1-pions"))
    unknown = workdir / "unknown.yaml"
    unknown.write_text(TINY.replace("bins: 4", "binz: 4"))
    badtrain = workdir / "badtrain.yaml"
    badtrain.write_text(TINY.replace("lr: 1.0e-3", "lr: -1"))
    base = ["train", "--model", "caloinn", "--data", workdir / "train.h5", "--quiet"]
    cases = {
        "missing": ([*base, "--config", workdir / "nope.yaml", "-o", workdir / "e1"],
                    "no such file"),
        "yaml": ([*base, "--config", bad_yaml, "-o", workdir / "e2"], "valid YAML"),
        "mapping": ([*base, "--config", listy, "-o", workdir / "e3"], "mapping"),
        "geometry": ([*base, "--config", pions, "-o", workdir / "e4"], "voxels"),
        "unknown": ([*base, "--config", unknown, "-o", workdir / "e5"], "binz"),
        "train": ([*base, "--config", badtrain, "-o", workdir / "e6"], "lr"),
        "model": (["train", "--model", "caloman", "--config", workdir / "tiny.yaml", "--data",
                   workdir / "train.h5", "-o", workdir / "e7"], "model"),
        "dataset": (["generate", "--checkpoint", trained / "model.pt", "--dataset", "1-pions",
                     "-o", workdir / "e8.h5"], "1-photons"),
        "checkpoint": (["generate", "--checkpoint", workdir / "tiny.yaml", "-o",
                        workdir / "e9.h5"], "checkpoint"),
    }
    for k, (argv, needle) in cases.items():  # in-process: same code path as the console script
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2, k
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "error:" in lines[0], (k, err)
        assert needle in lines[0], (k, lines[0])
    r = run_cli(*cases["yaml"][0])  # and once through the real executable
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_official_energies():
    from caloforge.generation import official_energies

    e = official_energies("1-photons")
    assert len(e) == 121_000 and (np.unique(e) == 2.0 ** np.arange(8, 23)).all()
    assert (e == 2.0 ** 22).sum() == 1_000
    assert len(official_energies("1-pions")) == 120_800
    e2 = official_energies("2", n=1000, seed=1)
    assert len(e2) == 1000 and e2.min() >= 1e3 and e2.max() <= 1e6
    np.testing.assert_array_equal(e2, official_energies("2", n=1000, seed=1))
    g = official_energies("calogan", n=500)
    assert g.min() >= 1e3 and g.max() <= 1e5


def test_config_helpers(tmp_path):
    from caloforge.config import load_config, override_training, train_config
    from caloforge.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("model: caloflow\ntraining:\n  flow1: {epochs: 3}\n  flow2: {lr: 1.0e-4}\n")
    cfg = load_config(p)
    assert train_config(cfg, "flow1").epochs == 3
    assert train_config(cfg, "flow2", epochs=7, progress=False).epochs == 7
    over = override_training(cfg, device="cpu", seed=None)
    assert train_config(over, "flow2").device == "cpu" and "seed" not in over["training"]["flow2"]
    single = override_training({"training": {"epochs": 2}}, device="cpu")
    assert train_config(single).device == "cpu"
    with pytest.raises(ConfigError, match="epochs"):
        train_config({"training": {"epochs": 0}})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
