"""Shared fixtures: small synthetic shower sets and files, and a runner for the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from caloforge.data import ShowerSet, write_showers
from caloforge.geometry import Geometry


def make_showers(dataset: str = "1-photons", n: int = 64, dtype: type = np.float32,
                 seed: int = 0, sparsity: float = 0.5) -> ShowerSet:
    """A synthetic :class:`ShowerSet` on a preset geometry: exponential voxel energies with a
    fraction ``sparsity`` of exact zeros and discrete incident energies 2^8 .. 2^22 MeV."""
    geo = Geometry.preset(dataset)
    rng = np.random.default_rng(seed)
    showers = rng.exponential(10.0, size=(n, geo.n_voxels)).astype(dtype)
    showers[rng.random(showers.shape) < sparsity] = 0
    e_inc = 2.0 ** rng.integers(8, 23, size=n)
    return ShowerSet(e_inc, showers, geo)


@pytest.fixture
def showers_factory() -> Callable[..., ShowerSet]:
    """:func:`make_showers` as a fixture."""
    return make_showers


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    """A 1-photons CaloChallenge file of 200 float32 showers (gzip)."""
    path = tmp_path / "small.h5"
    write_showers(path, make_showers(n=200))
    return path


def caloforge_exe() -> list[str]:
    """The installed ``caloforge`` console script (falls back to ``python -m caloforge.cli``)."""
    exe = shutil.which("caloforge")
    return [exe] if exe else [sys.executable, "-m", "caloforge.cli"]


def run_cli(*args: str | os.PathLike, cwd: str | os.PathLike | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``caloforge ARGS`` in a subprocess and capture its output as text."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*caloforge_exe(), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout, check=False)


def run_cli_many(commands: dict[str, list], timeout: float = 120
                 ) -> dict[str, subprocess.CompletedProcess]:
    """Run several ``caloforge`` invocations concurrently; results keyed like ``commands``."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    procs = {k: subprocess.Popen([*caloforge_exe(), *map(str, a)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
             for k, a in commands.items()}
    out = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=timeout)
        out[k] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out
