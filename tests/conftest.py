"""Shared fixtures: small synthetic shower sets and files, and a runner for the real CLI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest
import torch

from caloforge.data import ShowerSet, write_showers
from caloforge.geometry import Geometry
from caloforge.models.base import GeneratorModel, load_model

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


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
def thread_settings(monkeypatch: pytest.MonkeyPatch):
    """Put back what ``--threads`` changes in this process (torch's thread count, the
    BLAS/OpenMP limits and their environment variables) after the test."""
    from threadpoolctl import threadpool_limits

    from caloforge.commands._options import THREAD_VARIABLES

    for var in THREAD_VARIABLES:  # monkeypatch restores each one (or its absence)
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:  # set then delete, so that the undo deletes it again
            monkeypatch.setenv(var, "1")
            monkeypatch.delenv(var)
    n = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the limits on exit
        yield
    torch.set_num_threads(n)


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


def cli_train_generate_resume(model: str, recipe: Path, data: Path, run: Path, n: int,
                              n_voxels: int) -> GeneratorModel:
    """The CLI round trip of a streamed model: ``caloforge train`` on the file ``data`` into
    ``run`` (asserting it says "streamed"), ``generate -n n`` from it (asserting ``n``
    non-negative showers of ``n_voxels``), ``train --resume --epochs 2`` (asserting that every
    stage's metrics.csv then holds 2 epochs); returns the loaded model."""
    r = run_cli("train", "--model", model, "--config", recipe, "--data", data, "-o", run,
                "--quiet")
    assert r.returncode == 0, r.stderr
    assert "streamed" in r.stdout
    out = run.parent / f"{run.name}_gen.h5"
    r = run_cli("generate", "--checkpoint", run / "model.pt", "-n", str(n), "-o", out, "--quiet")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as fh:
        assert fh["showers"].shape == (n, n_voxels) and (fh["showers"][:] >= 0).all()
    r = run_cli("train", "--model", model, "--config", recipe, "--data", data, "-o", run,
                "--quiet", "--resume", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    loaded = load_model(run / "model.pt")
    for tag, _ in loaded.stage_tags():
        rows = (run / f"{tag}metrics.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + 2, (tag, rows)
    return loaded


def assert_compiled_sampler_matches_eager(models: list[GeneratorModel], e_inc: torch.Tensor,
                                          rtol: float, atol: float) -> None:
    """Each model's ``compiled_sampler()`` gives its eager ``sample`` for the same seed, inside
    inference mode as generate uses."""
    for model in models:
        with torch.inference_mode():
            torch.manual_seed(5)
            eager = model.sample(e_inc)
            fn = model.compiled_sampler()
            torch.manual_seed(5)
            compiled = fn(e_inc)
        assert torch.allclose(compiled, eager, rtol=rtol, atol=atol)


def assert_export_refused(checkpoint: Path, onnx: Path, name: str) -> None:
    """``caloforge export`` of ``checkpoint`` fails with one line naming ``name``."""
    r = run_cli("export", "--checkpoint", checkpoint, "-o", onnx)
    assert r.returncode != 0 and name in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (with benchmarks/ on ``sys.path`` for its
    own imports, as when it runs as a script)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_benchmark(name: str, *args: str | os.PathLike, timeout: float = 300
                  ) -> subprocess.CompletedProcess:
    """``python benchmarks/<name>.py ARGS`` from the repository root, output captured as
    text."""
    return subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)
