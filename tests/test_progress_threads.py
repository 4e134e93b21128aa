"""Batch-job friendly output (plain progress lines, no carriage returns), --threads and the
micro-batching of ``generate`` (issue 15 item 3)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from caloforge import progress
from caloforge.cli import main
from caloforge.generation import CPU_MICRO_BATCH, micro_batch_size, sample_batches
from caloforge.geometry import Geometry


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_lines_without_carriage_returns():
    out = io.StringIO()
    bar = progress.PlainProgress(range(5), desc="epoch 1/2", unit="step", file=out, every=0.0)
    assert list(bar) == [0, 1, 2, 3, 4]
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 6  # one per update (interval 0) and the closing line
    assert lines[-1].startswith("epoch 1/2: 5/5 step (100 %)")


def test_plain_progress_is_silent_for_short_tasks_and_takes_postfix():
    out = io.StringIO()
    with progress.PlainProgress(total=10, desc="generate", file=out, every=3600.0) as bar:
        bar.update(10)
    assert out.getvalue() == ""
    out = io.StringIO()
    bar = progress.PlainProgress(total=4, file=out, every=0.0)
    bar.set_postfix(loss="0.5")
    bar.update(2)
    assert out.getvalue().rstrip().endswith("loss=0.5")


def test_tqdm_is_a_bar_on_a_terminal_and_plain_elsewhere():
    from tqdm.auto import tqdm as real

    assert isinstance(progress.tqdm(total=3, file=_Tty()), real)
    assert isinstance(progress.tqdm(total=3, file=io.StringIO()), progress.PlainProgress)
    assert isinstance(progress.tqdm(total=3, disable=True), real)
    assert callable(progress.tqdm.write)


def test_simulate_to_a_log_file_writes_no_carriage_returns(tmp_path):
    """The CLI with stderr redirected to a file: plain lines only."""
    log = tmp_path / "stderr.log"
    env = {**os.environ, "CALOFORGE_PROGRESS_INTERVAL": "0"}
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "caloforge.cli", "simulate", "-d",
                               "1-photons", "-n", "3000", "--seed", "1", "--threads", "1",
                               "-o", str(tmp_path / "s.h5")], stderr=fh,
                              stdout=subprocess.PIPE, text=True, env=env, timeout=240)
    assert proc.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text
    assert "simulate 1-photons: 3,000/3,000 shower (100 %)" in text


def test_threads_option(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["simulate", "-d", "1-photons", "-n", "10", "--seed", "1", "--threads",
                     "0", "-o", "unused.h5"]) == 2
        assert "--threads: expected a positive integer, found 0" in capsys.readouterr().err
        from caloforge.commands._options import set_threads

        set_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


class _Recorder(torch.nn.Module):
    """A stand-in generator that records the size of every sampling call."""

    def __init__(self) -> None:
        super().__init__()
        self.geometry = Geometry.preset("1-photons")
        self.calls: list[int] = []
        self.w = torch.nn.Parameter(torch.zeros(1))

    def sample(self, e: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(e))
        return torch.ones(len(e), self.geometry.n_voxels) * e[:, None]

    def compiled_sampler(self):
        return self.sample


def test_generate_samples_a_large_batch_in_micro_batches():
    e = np.linspace(1e3, 2e3, 2500)
    model = _Recorder()
    out = list(sample_batches(model, e, batch_size=10_000))
    assert model.calls == [CPU_MICRO_BATCH, CPU_MICRO_BATCH, 500]
    assert len(out) == 1 and np.allclose(out[0][1][:, 0], e)
    model = _Recorder()  # compiled: every call padded to the micro-batch size
    out = list(sample_batches(model, e, batch_size=1200, compile=True, micro_batch=700))
    assert model.calls == [700] * 5  # batches 1200, 1200, 100 -> 700 + 500, 700 + 500, 100
    assert [len(o[0]) for o in out] == [1200, 1200, 100]
    assert micro_batch_size(torch.device("cuda"), 10_000) == 10_000
    assert micro_batch_size(torch.device("cpu"), 300) == 300
    with pytest.raises(Exception, match="--micro-batch"):
        micro_batch_size(torch.device("cpu"), 10, 0)
