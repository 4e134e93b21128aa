"""caloforge.training.fit: convergence, checkpoints and resume, early stopping, config
validation, and a real two-process torchrun run (gloo on CPU)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.training import TrainConfig, fit


def _data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.01 * torch.randn(n, 1, generator=g)
    return x, y


def _mse(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    x, y = batch
    return ((module(x) - y) ** 2).mean()


def _noisy_mse(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A stochastic loss (input noise from the global RNG, like dequantisation noise)."""
    x, y = batch
    return ((module(x + 0.05 * torch.randn_like(x)) - y) ** 2).mean()


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))


def _cfg(**kw: object) -> TrainConfig:
    base = {"epochs": 6, "batch_size": 32, "lr": 1e-2, "progress": False, "device": "cpu",
            "seed": 3}
    return TrainConfig.from_dict({**base, **kw})


def test_loss_decreases() -> None:
    x, y = _data()
    hist = fit(nn.Linear(4, 1), _mse, (x, y), (x[:64], y[:64]), _cfg(epochs=15, lr=5e-2))
    assert len(hist["train_loss"]) == 15 == len(hist["val_loss"]) == len(hist["lr"])
    assert hist["train_loss"][-1] < 0.05 * hist["train_loss"][0]
    assert hist["val_loss"][-1] < hist["val_loss"][0]


class _Killed(Exception):
    pass


def test_checkpoint_and_resume_after_kill(tmp_path: Path) -> None:
    x, y = _data()
    cfg = _cfg(scheduler="onecycle")
    ref = _net(0)
    full = fit(ref, _noisy_mse, (x, y), (x[:64], y[:64]), cfg, tmp_path / "a")
    assert (tmp_path / "a" / "last.pt").exists() and (tmp_path / "a" / "final.pt").exists()
    assert len((tmp_path / "a" / "metrics.csv").read_text().splitlines()) == 7

    calls = {"n": 0}
    steps_per_epoch = 256 // 32

    def dying(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        calls["n"] += torch.is_grad_enabled()  # training steps only, not validation
        if calls["n"] == 3 * steps_per_epoch + 2:  # in the middle of epoch 4
            raise _Killed
        return _noisy_mse(module, batch)

    run = tmp_path / "b"
    with pytest.raises(_Killed):
        fit(_net(0), dying, (x, y), (x[:64], y[:64]), cfg, run)
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["epoch"] == 3  # a checkpoint after every finished epoch
    assert not (run / "final.pt").exists()
    torch.manual_seed(12345)  # the new process has another global RNG state
    resumed = _net(7)  # and other initial weights: all must come from the checkpoint
    hist = fit(resumed, _noisy_mse, (x, y), (x[:64], y[:64]), cfg, run, resume=True)
    assert hist["train_loss"] == pytest.approx(full["train_loss"])
    ref_sd, res_sd = ref.state_dict(), resumed.state_dict()
    assert ref_sd.keys() == res_sd.keys()
    for k in ref_sd:
        assert torch.allclose(ref_sd[k], res_sd[k]), k
    # a finished stage is skipped on resume
    again = _net(9)
    fit(again, dying, (x, y), None, cfg, run, resume=True)
    assert all(torch.equal(again.state_dict()[k], res_sd[k]) for k in res_sd)


def test_early_stopping_with_patience(tmp_path: Path) -> None:
    x, y = _data(64)
    scores = iter([5.0, 3.0, 4.0, 4.5, 3.5, 1.0, 0.5])
    seen = []

    def score(module: nn.Module) -> float:
        seen.append(next(scores))
        return seen[-1]

    hist = fit(nn.Linear(4, 1), _mse, (x, y), None, _cfg(epochs=7, patience=3), tmp_path,
               val_score=score)
    assert hist["score"] == [5.0, 3.0, 4.0, 4.5, 3.5]  # 3 epochs without improving on 3.0
    best = torch.load(tmp_path / "last.pt", weights_only=False)["best"]
    assert best == 3.0


def test_time_limit_stops_the_stage_mid_epoch(tmp_path: Path) -> None:
    """A stage with a time limit takes no optimiser step once the limit has passed: the epoch
    in progress ends there and is checkpointed; 0 s leaves the initial weights."""
    import time

    x, y = _data(256)
    steps = []

    def slow_mse(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if module.training:
            steps.append(time.perf_counter())
            time.sleep(0.05)
        return _mse(module, batch)

    hist = fit(nn.Linear(4, 1), slow_mse, (x, y), (x[:64], y[:64]),
               _cfg(epochs=50, batch_size=16, time_limit=0.3), tmp_path)
    assert len(hist["train_loss"]) == 1 == len(hist["val_loss"])  # stopped in epoch 1 of 16 steps
    # every step began within 0.3 s of the stage's start, so at most 7 of 0.05 s each
    assert 1 <= len(steps) <= 7 and steps[-1] - steps[0] < 0.3
    assert (tmp_path / "final.pt").exists() and (tmp_path / "last.pt").exists()

    steps.clear()
    net = nn.Linear(4, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hist = fit(net, slow_mse, (x, y), (x[:64], y[:64]), _cfg(time_limit=0), tmp_path / "zero")
    assert steps == [] and len(hist["train_loss"]) == 1 and hist["train_loss"][0] != \
        hist["train_loss"][0]  # NaN: no training shower
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert (tmp_path / "zero" / "final.pt").exists()


@pytest.mark.parametrize(("key", "value"), [
    ("epochs", 0), ("epochs", 2.5), ("epochs", True), ("batch_size", -1), ("lr", 0),
    ("lr", "fast"), ("lr", float("nan")), ("optimizer", "sgd"), ("scheduler", "cosine"),
    ("max_lr", "x"), ("max_lr", -1.0), ("grad_clip", 0), ("patience", 0), ("dtype", "float16"),
    ("device", "tpu"), ("device", 3), ("weight_decay", -0.1), ("cycle_steps", 0),
    ("seed", "a"), ("progress", "yes"), ("learning_rate", 1e-3), ("time_limit", -1.0),
    ("time_limit", "soon"), ("time_limit", float("inf")),
])
def test_config_rejects_bad_values(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({key: value}, source="recipe.yaml")
    assert f"recipe.yaml[{key}]" in str(info.value)
    assert isinstance(info.value, CaloforgeError)


def test_config_accepts_good_values() -> None:
    cfg = TrainConfig.from_dict({"lr": "1e-3", "epochs": 3, "max_lr": 1e-2, "patience": 2})
    assert cfg.lr == 1e-3 and cfg.epochs == 3
    assert TrainConfig.from_dict(None) == TrainConfig()
    with pytest.raises(ConfigError):
        TrainConfig.from_dict([("lr", 1)])  # type: ignore[arg-type]


DDP_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from torch import nn
    import torch.distributed as dist
    from caloforge.training import TrainConfig, fit

    rank = int(os.environ["RANK"])
    torch.manual_seed(100 + rank)  # different initial weights: fit() must broadcast rank 0's
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    init = {k: v.clone() for k, v in module.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(101, 4, generator=g)  # 101 rows, batch 20: the last batch has 1 row
    y = x.sum(1, keepdim=True)
    cfg = TrainConfig.from_dict({"epochs": 4, "batch_size": 20, "lr": 1e-2, "device": "cpu",
                                 "progress": False, "patience": 2})
    hist = fit(module, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), (x, y), None, cfg,
               sys.argv[1])
    torch.save({"state": module.state_dict(), "init": init, "hist": hist},
               os.path.join(sys.argv[1], f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_end_identical(tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [*launcher, "--nproc_per_node=2", "--nnodes=1", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert not all(torch.equal(r0["init"][k], r1["init"][k]) for k in r0["init"])
    for k in r0["state"]:
        assert torch.allclose(r0["state"][k], r1["state"][k]), k
        assert not torch.equal(r0["state"][k], r0["init"][k]), k  # it trained
    assert r0["hist"]["train_loss"] == r1["hist"]["train_loss"]  # one loss for all ranks
    assert r0["hist"]["train_loss"][-1] < r0["hist"]["train_loss"][0]
    assert (tmp_path / "final.pt").exists()
