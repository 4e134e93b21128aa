"""Sharded generation: a real 2-process torchrun (gloo, CPU) of `caloforge generate` gives one
CaloChallenge file, the same file for the same seed and K; `caloforge merge` and its errors;
the official energy mix lives next to the geometries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from caloforge.config import load_config
from caloforge.data import ShowerWriter, read_showers
from caloforge.errors import DataError
from caloforge.geometry import Geometry
from caloforge.models.caloman import CaloMan
from caloforge.shards import merge_shards, shard_path, shard_seed, shard_slice
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small (untrained, fixed-seed) CaloMan checkpoint on dataset-1 photons."""
    cfg = load_config(REPO / "configs" / "demo.yaml")
    cfg["hidden"] = [32]
    cfg["latent_flow"]["hidden"] = [16, 16]
    cfg["energy_flow"]["hidden"] = [16, 16]
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    CaloMan(Geometry.preset("1-photons"), cfg).save(path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_generate(checkpoint: Path, out: Path, n: int, seed: int) -> None:
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--nproc-per-node=2", "--nnodes=1", "--master-addr=127.0.0.1",
           f"--master-port={_free_port()}", "-m", "caloforge", "generate", "--checkpoint",
           str(checkpoint), "-n", str(n), "--seed", str(seed), "--batch-size", "64",
           "--quiet", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("wrote") == 1  # rank 0 reports


def test_torchrun_generate_two_ranks_same_seed_same_file(tmp_path: Path,
                                                         checkpoint: Path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _torchrun_generate(checkpoint, a, 301, seed=5)
    _torchrun_generate(checkpoint, b, 301, seed=5)
    ga, gb = read_showers(a), read_showers(b)
    assert len(ga) == 301 and np.array_equal(ga.showers, gb.showers)
    assert np.array_equal(ga.e_inc, gb.e_inc)
    assert not list(tmp_path.glob("*.shard-*"))  # shards are merged and removed
    # the file is the official mix in order; each half comes from its own seed stream
    from caloforge.generation import official_energies

    assert np.array_equal(ga.e_inc, official_energies("1-photons", 301, seed=5))
    res = run_cli("generate", "--checkpoint", checkpoint, "-n", "301", "--seed", "5",
                  "--batch-size", "64", "--quiet", "-o", tmp_path / "single.h5")
    assert res.returncode == 0, res.stderr
    single = read_showers(tmp_path / "single.h5")
    assert np.array_equal(single.e_inc, ga.e_inc)
    assert not np.array_equal(single.showers, ga.showers)  # one process, one seed stream


def _shards(tmp_path: Path, n: int = 50, k: int = 3) -> tuple[Path, list[Path], np.ndarray]:
    geo = Geometry.preset("1-photons")
    rng = np.random.default_rng(0)
    e = rng.uniform(1e3, 1e5, n)
    s = rng.random((n, geo.n_voxels)).astype(np.float32)
    out = tmp_path / "gen.h5"
    paths = []
    for r in range(k):
        part = shard_slice(n, r, k)
        p = shard_path(out, r, k)
        attrs = {"shard_index": r, "shard_count": k, "shard_start": part.start,
                 "total_rows": n, "seed": 1}
        with ShowerWriter(p, geo, attrs=attrs) as w:
            w.append(e[part], s[part])
        paths.append(p)
    return out, paths, s


def test_merge_joins_shards_in_order_and_names_a_missing_one(tmp_path: Path) -> None:
    out, paths, s = _shards(tmp_path)
    with pytest.raises(DataError) as info:
        merge_shards([paths[0], paths[2]], out)
    msg = str(info.value)
    assert "\n" not in msg and "shard 1 of 3" in msg and "rows 16..33" in msg
    assert str(shard_path(out, 1, 3)) in msg and not out.exists()
    res = run_cli("merge", *reversed([str(p) for p in paths]), "-o", out)
    assert res.returncode == 0, res.stderr
    merged = read_showers(out)
    assert np.array_equal(merged.showers, s)
    res = run_cli("merge", paths[0], paths[0], "-o", tmp_path / "dup.h5")
    assert res.returncode == 2 and "shard 0" in res.stderr and "\n" not in res.stderr.strip()


def test_shard_seeds_and_slices() -> None:
    assert shard_seed(7, 0, 1) == 7
    seeds = {shard_seed(7, r, 4) for r in range(4)}
    assert len(seeds) == 4 and seeds == {shard_seed(7, r, 4) for r in range(4)}
    parts = [shard_slice(10, r, 3) for r in range(3)]
    assert [p.stop - p.start for p in parts] == [3, 3, 4] and parts[-1].stop == 10


def test_generation_does_not_import_the_simulator() -> None:
    code = ("import sys, caloforge.generation as g; g.official_energies('2', 10); "
            "print(any(m.startswith('caloforge.simulate') for m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "False"
    from caloforge import energies
    from caloforge.simulate import energies as old

    assert old.official_energies is energies.official_energies  # one source of truth
