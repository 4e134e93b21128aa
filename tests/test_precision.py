"""bfloat16 sampling (``generate --precision bfloat16``): matmuls in bf16, splines in float32."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import make_showers, run_cli

from caloforge.data import read_showers
from caloforge.errors import ConfigError
from caloforge.flows.spline import RQSTransform
from caloforge.generation import precision_context
from caloforge.geometry import Geometry
from caloforge.models.caloinn import CaloINN

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> CaloINN:
    cfg = {"model": "caloinn", "dataset": "1-photons",
           "flow": {"transforms": 2, "bins": 4, "hidden": [64]},
           "training": {"epochs": 1, "batch_size": 100, "device": "cpu", "progress": False}}
    m = CaloINN(Geometry.preset("1-photons"), cfg)
    m.fit(make_showers(n=300, sparsity=0.7, seed=1), None, None, progress=False)
    return m.eval()


def _sample(model: CaloINN, precision: str) -> np.ndarray:
    torch.manual_seed(0)
    e = torch.full((200,), 65536.0, dtype=torch.float64)
    with torch.inference_mode(), precision_context(torch.device("cpu"), precision):
        return model.sample(e).float().numpy()


def test_bfloat16_changes_only_the_matmul_rounding(model: CaloINN) -> None:
    a, b = _sample(model, "float32"), _sample(model, "bfloat16")
    assert b.dtype == np.float32 and np.isfinite(b).all() and (b >= 0).all()
    assert not np.array_equal(a, b)  # autocast took effect
    etot_a, etot_b = a.sum(1), b.sum(1)
    rel = np.abs(etot_b - etot_a) / etot_a
    assert np.median(rel) < 0.02  # bf16 has an 8-bit mantissa: ~0.4 % per rounding
    np.testing.assert_array_equal(a, _sample(model, "float32"))  # float32 path untouched


def test_spline_is_set_up_in_float32_from_half_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(50, 3, 3 * 8 - 1, generator=g).to(torch.bfloat16)
    half = RQSTransform(raw[..., :8], raw[..., 8:16], raw[..., 16:], bound=5.0)
    ref = RQSTransform(*(t.float() for t in (raw[..., :8], raw[..., 8:16], raw[..., 16:])),
                       bound=5.0)
    assert half.horizontal.dtype == torch.float32
    x = torch.randn(50, 3, generator=g)
    torch.testing.assert_close(half(x), ref(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(half.inv(half(x)), x, rtol=1e-5, atol=1e-5)


def test_precision_value_is_checked() -> None:
    with pytest.raises(ConfigError, match="--precision: expected one of float32, bfloat16"):
        precision_context(torch.device("cpu"), "float16")


def test_cli_generate_in_bfloat16_records_the_precision(model: CaloINN, tmp_path: Path) -> None:
    ckpt = model.save(tmp_path / "model.pt")
    out = tmp_path / "bf16.h5"
    r = run_cli("generate", "--checkpoint", ckpt, "--dataset", "1-photons", "-n", "150",
                "--precision", "bfloat16", "--device", "cpu", "--quiet", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "bfloat16 matmuls" in r.stdout
    s = read_showers(out)
    assert len(s) == 150 and np.isfinite(s.showers).all()
    with h5py.File(out) as f:
        assert f.attrs["precision"] == "bfloat16"
    r = run_cli("generate", "--checkpoint", ckpt, "--precision", "half", "-o", tmp_path / "x.h5")
    assert r.returncode == 2 and "--precision" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_benchmark_smoke(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "precision.py"), "--smoke",
                        "--no-write"], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1",
                                          "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "## Precision: bfloat16 matmuls while sampling" in r.stdout
    assert "| bfloat16 vs float32 |" in r.stdout
