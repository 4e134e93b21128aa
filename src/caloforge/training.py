"""One training loop for every caloforge model.

:func:`fit` trains any :class:`torch.nn.Module` given a loss function and in-memory tensors
or a batch stream over files (:mod:`caloforge.stream`, bounded memory):
progress bars, Adam/AdamW, OneCycle / cyclic ("triangular2") / no scheduler, gradient clipping,
early stopping on a validation score (validation loss by default; any callable, e.g. L2
reconstruction or the mean separation power of a validation sample), float32/float64, a
checkpoint every epoch, ``resume`` after a kill, best-model keeping and a metrics CSV.

Multi-stage models (CaloFlow flow I then flow II; CaloMan autoencoder then latent flow) call
:func:`fit` once per stage with a different ``tag``; a finished stage leaves
``{tag}final.pt`` and is skipped on resume.

Under ``torchrun`` (``WORLD_SIZE > 1``) each rank trains on its shard of every batch and the
gradients are averaged with ``all_reduce`` (gloo on CPU, nccl on GPU); only rank 0 writes files.
A batch stream gives each rank batches from its own disjoint file chunks instead.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from caloforge.atomic import atomic_path
from caloforge.errors import ConfigError, DataError
from caloforge.progress import tqdm

LossFn = Callable[[nn.Module, tuple[Tensor, ...]], Tensor]
History = dict[str, list[float]]


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of one training stage (all have defaults; unknown keys are errors).

    Attributes:
        epochs: Number of passes over the training data.
        batch_size: Global batch size (split over ranks under torchrun).
        lr: Learning rate (the initial one for OneCycle/cyclic: see ``max_lr``).
        optimizer: ``adam`` or ``adamw``.
        weight_decay: L2 / decoupled weight decay.
        scheduler: ``none``, ``onecycle`` (peak ``max_lr``) or ``cyclic`` (triangular2
            between ``lr`` and ``max_lr`` with ``cycle_steps`` steps up).
        max_lr: Peak learning rate of ``onecycle``/``cyclic`` (default 10 x ``lr``).
        cycle_steps: Half-cycle length in optimiser steps for ``cyclic``.
        grad_clip: Clip the gradient norm to this value (None: no clipping).
        patience: Stop after this many epochs without a better validation score.
        dtype: ``float32`` or ``float64``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
        seed: Seed of the parameter initialisation-independent randomness (batch order).
        progress: Show progress bars.
        monitor: Early-stopping / best-model criterion: ``loss`` (the validation loss: -log L
            for flows, L2 reconstruction for autoencoders, the distillation score for the
            student) or ``histogram`` (the seed talk's "mean histogram difference": mean
            separation power of the high-level-feature histograms of ``monitor_samples``
            generated showers against validation showers; see :mod:`caloforge.monitor`) or
            ``classifier`` (the AUC of a quick boosted-tree classifier on the high-level
            features of ``monitor_samples`` generated vs validation showers).
        monitor_samples: Validation showers generated per evaluation for ``monitor:
            histogram`` / ``classifier``.
        monitor_every: Evaluate the ``histogram`` / ``classifier`` score every this many
            epochs (the epochs between keep the last score).
        time_limit: Wall-clock seconds for this stage (None: no limit). Once they have
            passed, the stage takes no further optimiser step: the epoch in progress ends
            there (it is validated, checkpointed and counts as done) and the best weights are
            kept, as after the last epoch. ``0`` takes no step at all: the weights stay as
            initialised while the statistics (standardisers, ...) are fitted, which gives an
            untrained baseline of a recipe. Under torchrun the limit is checked at the end of
            each epoch (rank 0's clock). ``--resume`` continues such a stage towards
            ``epochs`` under a fresh limit.
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "none"
    max_lr: float | None = None
    cycle_steps: int = 850
    grad_clip: float | None = None
    patience: int | None = None
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    monitor: str = "loss"
    monitor_samples: int = 2000
    monitor_every: int = 1
    time_limit: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "config") -> TrainConfig:
        """Build from a mapping, rejecting unknown keys and bad values with :class:`ConfigError`."""
        if d is not None and not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of training options, found "
                              f"{type(d).__name__}")
        d = dict(d or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        for k in d:
            if k not in names:
                raise ConfigError(f"{_at(source, k)}: expected one of {', '.join(names)}, found "
                                  f"unknown key {k!r}")
        for k in _FLOAT_FIELDS:  # YAML reads "1e-3" (no dot) as a string
            if isinstance(d.get(k), str):
                try:
                    d[k] = float(d[k])
                except ValueError:
                    pass  # reported by validate()
        cfg = cls(**d)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        def bad(field: str, expected: str) -> ConfigError:
            return ConfigError(f"{_at(source, field)}: expected {expected}, found "
                               f"{getattr(self, field)!r}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_pos(v: object) -> bool:
            return (isinstance(v, int | float) and not isinstance(v, bool) and v > 0
                    and math.isfinite(v))

        if not is_int(self.epochs) or self.epochs < 1:
            raise bad("epochs", "a positive integer")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise bad("batch_size", "a positive integer")
        if not is_pos(self.lr):
            raise bad("lr", "a positive number")
        if self.optimizer not in ("adam", "adamw"):
            raise bad("optimizer", "'adam' or 'adamw'")
        if not (self.weight_decay == 0 or is_pos(self.weight_decay)):
            raise bad("weight_decay", "a number >= 0")
        if self.scheduler not in ("none", "onecycle", "cyclic"):
            raise bad("scheduler", "'none', 'onecycle' or 'cyclic'")
        if self.max_lr is not None and not is_pos(self.max_lr):
            raise bad("max_lr", "a positive number")
        if not is_int(self.cycle_steps) or self.cycle_steps < 1:
            raise bad("cycle_steps", "a positive integer")
        if self.grad_clip is not None and not is_pos(self.grad_clip):
            raise bad("grad_clip", "a positive number")
        if self.patience is not None and (not is_int(self.patience) or self.patience < 1):
            raise bad("patience", "a positive integer")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "'float32' or 'float64'")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise bad("device", "'auto', 'cpu' or 'cuda[:i]'")
        problem = device_problem(self.device)
        if problem:
            raise bad("device", problem)
        if not is_int(self.seed):
            raise bad("seed", "an integer")
        if not isinstance(self.progress, bool):
            raise bad("progress", "true or false")
        if self.monitor not in ("loss", "histogram", "classifier"):
            raise bad("monitor", "'loss', 'histogram' or 'classifier'")
        if not is_int(self.monitor_every) or self.monitor_every < 1:
            raise bad("monitor_every", "a positive integer")
        if not is_int(self.monitor_samples) or self.monitor_samples < 100:
            raise bad("monitor_samples", "an integer >= 100")
        if self.time_limit is not None and not (
                isinstance(self.time_limit, int | float) and not isinstance(self.time_limit, bool)
                and 0 <= self.time_limit < math.inf):
            raise bad("time_limit", "a number of seconds >= 0")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            if dist_info()[1] > 1 and torch.cuda.is_available():
                return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


_FLOAT_FIELDS = ("lr", "weight_decay", "max_lr", "grad_clip", "time_limit")


def _at(source: str, field: str) -> str:
    """``file[training]`` + ``lr`` -> ``file[training.lr]``; ``config`` -> ``config[lr]``."""
    return f"{source[:-1]}.{field}]" if source.endswith("]") else f"{source}[{field}]"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device_problem(device: str) -> str | None:
    """What is wrong with ``device`` on this machine (None: usable). ``device`` is ``auto``,
    ``cpu`` or ``cuda[:i]``; a CUDA device must exist here."""
    if not _DEVICE_RE.match(device):
        return "'auto', 'cpu' or 'cuda[:i]'"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return "an available device ('auto' or 'cpu': this machine has no CUDA GPU)"
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            return f"a CUDA device index < {torch.cuda.device_count()}"
    return None


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _init_distributed() -> None:
    import torch.distributed as dist

    if dist_info()[1] > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    max_lr = cfg.max_lr or 10 * cfg.lr
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr,
                                                   total_steps=cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "cyclic":
        return torch.optim.lr_scheduler.CyclicLR(opt, base_lr=cfg.lr, max_lr=max_lr,
                                                 step_size_up=cfg.cycle_steps,
                                                 mode="triangular2", cycle_momentum=False)
    return None


def _save(obj: Any, path: Path, keep_previous: bool = False) -> None:
    """Write ``obj`` to ``path`` atomically; with ``keep_previous`` the file it replaces is
    kept as ``{stem}.prev.pt`` (the fallback when the newest checkpoint is damaged)."""
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(obj, tmp)
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))


def previous_path(path: Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``: the checkpoint before the newest one."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


_RESUME_KEYS = ("module", "optimizer", "epoch", "best", "bad_epochs", "best_state", "history")


def _read_checkpoint(path: Path, device: torch.device, keys: Sequence[str]) -> dict[str, Any]:
    """``torch.load`` of a trainer checkpoint; any damage -> :class:`DataError` (one line)."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise DataError(f"{path}: expected a readable checkpoint, found damaged data "
                        f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in keys):
        found = (f"keys {', '.join(map(str, list(state)[:8])) or 'none'}"
                 if isinstance(state, dict) else type(state).__name__)
        raise DataError(f"{path}: expected a caloforge trainer checkpoint with "
                        f"{', '.join(keys)}, found {found}")
    return state


def load_resume_state(last_path: Path, device: torch.device) -> dict[str, Any] | None:
    """The newest readable resume checkpoint: ``last_path``, else ``last.prev.pt`` (saying so
    on stderr); None when there is none or none is readable (then the stage starts again
    from epoch 1, also said on stderr)."""
    problems = []
    for path in (last_path, previous_path(last_path)):
        if not path.exists():
            continue
        try:
            state = _read_checkpoint(path, device, _RESUME_KEYS)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if problems:
            print(f"caloforge: {problems[0]}; resuming from the previous checkpoint {path} "
                  f"(epoch {state['epoch']})", file=sys.stderr)
        return state
    if problems:
        print(f"caloforge: {problems[0]} and no readable {previous_path(last_path).name}; "
              f"training this stage again from epoch 1", file=sys.stderr)
    return None


def _load_into(target: Any, state: Any, path: Path, field: str) -> None:
    """``target.load_state_dict(state)``; a mismatch (the recipe changed since the checkpoint
    was written) -> one-line :class:`ConfigError`."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{path}[{field}]: expected the parameters of the model this recipe "
                          f"builds, found a different architecture ({first}); the recipe, model "
                          f"or data changed since this run started (use a new -o)") from None


def _fast_forward(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                  done: int):
    """A fresh scheduler for ``cfg`` (the new total) advanced by ``done`` optimiser steps."""
    import warnings

    sched = _scheduler(opt, cfg, steps_per_epoch)
    if sched is None:
        return None
    total = getattr(sched, "total_steps", None)
    done = min(done, total - 1) if total else done
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "step() before optimizer.step()"
        for _ in range(max(done, 0)):
            sched.step()
    return sched


def _write_csv(path: Path, history: History) -> None:
    keys = list(history)
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", *keys])
        for i in range(len(history[keys[0]]) if keys else 0):
            w.writerow([i + 1, *(f"{history[k][i]:.8g}" for k in keys)])


def fit(module: nn.Module, loss_fn: LossFn, train: Sequence[Tensor],
        val: Sequence[Tensor] | None, cfg: TrainConfig, run_dir: str | os.PathLike | None = None,
        *, tag: str = "", val_score: Callable[[nn.Module], float] | None = None,
        resume: bool = False, desc: str | None = None) -> History:
    """Train ``module`` to minimise ``loss_fn(module, batch)`` over mini-batches of ``train``.

    Args:
        module: The network (moved to the configured device and dtype).
        loss_fn: Mean loss of a batch; ``batch`` is a tuple of rows of each tensor in ``train``.
        train: Tensors with equal first dimension (e.g. ``(x, context)``), or a batch
            stream (:class:`caloforge.stream.TensorBatches`: a model's preprocessing over
            shuffled file chunks; each rank reads its own chunks, bounded memory).
        val: Validation tensors in the same layout, a batch stream, or None.
        cfg: Hyperparameters.
        run_dir: Where ``{tag}last.pt`` (every epoch), ``{tag}final.pt`` (the best weights, at
            the end) and ``{tag}metrics.csv`` go; None keeps everything in memory.
        tag: Prefix of this stage's files.
        val_score: Score to minimise for early stopping and best-model keeping (default: the
            mean ``loss_fn`` over ``val``; without ``val``, the training loss).
        resume: Continue from ``{tag}last.pt`` if present; skip the stage if ``{tag}final.pt``
            exists.

    Returns:
        The history: ``train_loss``, ``val_loss`` (if ``val``), ``score``, ``lr``, ``seconds``
        per epoch.
    """
    _init_distributed()
    rank, world = dist_info()
    device, dtype = cfg.torch_device(), cfg.torch_dtype
    module.to(device=device, dtype=dtype)
    if world > 1:  # every rank starts from rank 0's weights
        import torch.distributed as dist

        for t in module.state_dict().values():
            dist.broadcast(t, src=0)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    last_path = run_dir / f"{tag}last.pt" if run_dir else None
    final_path = run_dir / f"{tag}final.pt" if run_dir else None

    if resume and final_path is not None and final_path.exists():
        try:
            state = _read_checkpoint(final_path, device, ("module", "history"))
        except DataError as exc:  # rebuilt below from last.pt
            if rank == 0:
                print(f"caloforge: {exc}; rebuilding it from {last_path.name}", file=sys.stderr)
        else:
            trained = len((state["history"] or {}).get("train_loss", []))
            if trained >= cfg.epochs or last_path is None or not last_path.exists():
                _load_into(module, state["module"], final_path, "module")
                return state["history"]
            # --epochs grew since the stage finished: continue from last.pt

    def cast(t: Tensor) -> Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    streamed = _is_stream(train)  # batches from a caloforge.stream source, not tensors
    if streamed:
        n = len(train)
        steps = train.steps(cfg.batch_size, world)
    else:
        train = tuple(cast(t) for t in train)
        n = len(train[0])
        if any(len(t) != n for t in train):
            raise ConfigError(f"train: expected tensors of equal length, found "
                              f"{[len(t) for t in train]}")
        steps = max(1, math.ceil(n / cfg.batch_size))
    val = tuple(cast(t) for t in val) if val is not None and not _is_stream(val) else val
    opt = _optimizer(module, cfg)
    sched = _scheduler(opt, cfg, steps)
    history: History = {"train_loss": [], "score": [], "lr": [], "seconds": []}
    if val is not None:
        history["val_loss"] = []
    start_epoch, best, best_state, bad_epochs = 0, math.inf, None, 0
    state: dict[str, Any] = {}

    loaded = load_resume_state(last_path, device) if resume and last_path is not None else None
    if loaded is not None:
        state = loaded
        _load_into(module, state["module"], last_path, "module")
        _load_into(opt, state["optimizer"], last_path, "optimizer")
        saved = state.get("scheduler")
        same = (state.get("scheduler_kind", cfg.scheduler) == cfg.scheduler
                and (sched is None or getattr(sched, "total_steps", None) is None
                     or (saved or {}).get("total_steps") == sched.total_steps))
        if sched is not None and saved is not None and same:
            sched.load_state_dict(saved)
        elif sched is not None:  # --epochs, data size or schedule changed: new total
            sched = _fast_forward(opt, cfg, steps, state["epoch"] * steps)
        start_epoch, best, bad_epochs = state["epoch"], state["best"], state["bad_epochs"]
        best_state, history = state["best_state"], state["history"]
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            start_epoch = cfg.epochs  # killed after the early stop, before final.pt

    gen = torch.Generator().manual_seed(cfg.seed)
    if start_epoch and state.get("rng") is not None:
        # batch order and the global RNG (noise, dropout in loss_fn) continue exactly
        gen.set_state(state["rng"]["batch_order"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    else:
        for _ in range(start_epoch):  # replay the batch order of finished epochs
            torch.randperm(n, generator=gen)
    label = desc or (tag.rstrip("_") or "train")
    t_stage = time.perf_counter()

    def out_of_time() -> bool:
        return cfg.time_limit is not None and time.perf_counter() - t_stage >= cfg.time_limit

    timed_out = False
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        module.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total, count = 0.0, 0
        stream = (train.batches(epoch, cfg.batch_size, rank, world,
                                read_ahead=epoch + 1 < cfg.epochs) if streamed else None)
        bar = tqdm(range(steps), desc=f"{label} {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not cfg.progress or rank != 0)
        for step in bar:
            if world == 1 and out_of_time():
                timed_out = True
                break
            if stream is not None:  # every rank gets train.steps() batches
                batch = tuple(cast(t) for t in next(stream))
                idx = batch[0]
            else:
                idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                if len(idx) < world:
                    # every rank sees the same perm, so all skip together: a rank with an
                    # empty shard must not leave the others waiting in all_reduce
                    continue
                idx = idx[rank::world] if world > 1 else idx
                batch = tuple(t[idx] for t in train)
            loss = loss_fn(module, batch)
            if not torch.isfinite(loss):
                raise ConfigError(f"{label}[loss]: expected a finite loss, found {loss.item()} "
                                  f"at epoch {epoch + 1}, step {step + 1} (lower lr or use "
                                  f"grad_clip)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                _average_gradients(module, world)
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            if world > 1 and step == 0 and epoch == start_epoch:
                # data-dependent initialisations (ActNorm) saw each rank's own batch: all
                # ranks continue from rank 0's weights and buffers
                for t in module.state_dict().values():
                    dist.broadcast(t, src=0)
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
            bar.set_postfix(loss=f"{loss.item():.4g}")
        if stream is not None:
            stream.close()  # stops the reader thread
        if world == 1:  # the limit passed during the epoch's last step: no empty epoch after it
            timed_out = timed_out or out_of_time()
        if world > 1:  # the same train loss (hence score, early stop) on every rank
            import torch.distributed as dist

            sums = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
            total, count = float(sums[0]), int(sums[1])
        train_loss = total / count if count else math.nan
        if world > 1 and cfg.time_limit is not None:  # rank 0's clock decides for all ranks
            import torch.distributed as dist

            flag = torch.tensor([float(out_of_time())], device=device)
            dist.broadcast(flag, src=0)
            timed_out = bool(flag.item())
        module.eval()
        val_loss = evaluate_loss(module, loss_fn, val, cfg.batch_size) if val is not None else None
        if val_score is not None:
            score = float(val_score(module))
        else:
            score = val_loss if val_loss is not None else train_loss
        history["train_loss"].append(train_loss)
        if val_loss is not None:
            history["val_loss"].append(val_loss)
        history["score"].append(score)
        history["lr"].append(opt.param_groups[0]["lr"])
        history["seconds"].append(time.perf_counter() - t0)
        if score < best:
            best, bad_epochs = score, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad_epochs += 1
        if rank == 0 and cfg.progress:
            msg = f"{label} epoch {epoch + 1}/{cfg.epochs}: train {train_loss:.5g}"
            msg += f", val {val_loss:.5g}" if val_loss is not None else ""
            msg += f", score {score:.5g}" if val_score is not None else ""
            tqdm.write(msg)
        stop = cfg.patience is not None and bad_epochs >= cfg.patience
        if last_path is not None and rank == 0:
            _save({"module": module.state_dict(), "optimizer": opt.state_dict(),
                   "scheduler": sched.state_dict() if sched is not None else None,
                   "scheduler_kind": cfg.scheduler,
                   "epoch": epoch + 1, "best": best, "bad_epochs": bad_epochs,
                   "best_state": best_state, "history": history,
                   "rng": {"batch_order": gen.get_state(), "torch": torch.get_rng_state(),
                           "cuda": (torch.cuda.get_rng_state_all()
                                    if torch.cuda.is_available() else None)}}, last_path,
                  keep_previous=True)
            _write_csv(run_dir / f"{tag}metrics.csv", history)
        if stop:
            if rank == 0 and cfg.progress:
                tqdm.write(f"{label}: early stop after {epoch + 1} epochs (patience "
                           f"{cfg.patience})")
            break
        if timed_out:
            if rank == 0 and cfg.progress:
                tqdm.write(f"{label}: time limit of {cfg.time_limit:g} s reached in epoch "
                           f"{epoch + 1}/{cfg.epochs} ({count} showers in that epoch)")
            break
    if streamed:
        train.close()  # an epoch read ahead (early stop, time limit) is not needed
    if best_state is not None:
        module.load_state_dict(best_state)
    if final_path is not None and rank == 0:
        _save({"module": module.state_dict(), "history": history}, final_path)
    return history


def _is_stream(data: object) -> bool:
    """Whether ``data`` is a batch stream (``steps`` / ``batches``, see
    :class:`caloforge.stream.TensorBatches`) rather than a sequence of tensors."""
    return hasattr(data, "batches") and hasattr(data, "steps")


def _average_gradients(module: nn.Module, world: int) -> None:
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


@torch.no_grad()
def evaluate_loss(module: nn.Module, loss_fn: LossFn, data: Sequence[Tensor],
                  batch_size: int) -> float:
    """Mean of ``loss_fn`` over ``data`` in batches (no gradients); ``data`` is tensors or
    a :class:`caloforge.stream.TensorBatches` (read in file order, cast to the module's
    first parameter's dtype and device)."""
    if _is_stream(data):
        p = next(module.parameters())
        total, count = 0.0, 0
        for batch in data.batches(0, batch_size, shuffle=False):
            batch = tuple(t.to(p.device, p.dtype if t.is_floating_point() else t.dtype)
                          for t in batch)
            total += loss_fn(module, batch).item() * len(batch[0])
            count += len(batch[0])
        return total / max(count, 1)
    n, total = len(data[0]), 0.0
    for lo in range(0, n, batch_size):
        batch = tuple(t[lo:lo + batch_size] for t in data)
        total += loss_fn(module, batch).item() * len(batch[0])
    return total / max(n, 1)
