"""``caloforge train``: fit a generator from a YAML recipe and a shower file.

Writes into ``RUN_DIR``: ``model.pt`` (the best weights, self-describing: load with
:func:`caloforge.models.base.load_model`), ``last.pt`` (the resume checkpoint of the last
trained stage), the per-stage ``{stage}last.pt`` / ``{stage}final.pt`` / ``{stage}metrics.csv``
of :func:`caloforge.training.fit` and ``config.yaml`` (the recipe as used).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from caloforge.commands._options import add_threads, set_threads

ORDER = 30


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from caloforge.models import REGISTRY

    p = sub.add_parser("train", help="train a generator (CaloFlow, CaloINN, CaloMan, ...)",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model", required=True, choices=sorted(REGISTRY), help="model name")
    p.add_argument("--config", required=True, help="YAML recipe (configs/<model>/<dataset>.yaml)")
    p.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="training showers (CaloChallenge/CaloGAN HDF5; several files of one "
                        "geometry are read as one set)")
    p.add_argument("--val", default=None, nargs="+", metavar="FILE",
                   help="validation showers (default: a seeded 10%% of --data: random showers "
                        "in memory, random whole chunks when streamed)")
    p.add_argument("--stream", choices=("auto", "on", "off"), default="auto",
                   help="read --data in shuffled chunks in bounded memory instead of loading "
                        "it (auto: for datasets 2 and 3 and for several files)")
    p.add_argument("--low-memory", action="store_true",
                   help="streamed: return every block of 1 MiB or more to the system when it "
                        "is freed (glibc): memory flat in the file size, but streamed epochs "
                        "2-4x slower on 2 cores (BENCHMARKS.md, Datasets 2 and 3 at scale)")
    p.add_argument("--epochs", type=int, default=None, help="override every stage's epochs")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in RUN_DIR (finished stages are skipped)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint RUN_DIR/model.pt (student models only)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda[:i]")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of initialisation and split (default 0; also sets training.seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads(p)
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import yaml

    from caloforge.atomic import atomic_path
    from caloforge.config import is_multistage, load_config, override_training, train_config
    from caloforge.data import concat, read_showers
    from caloforge.errors import ConfigError
    from caloforge.geometry import DATASETS
    from caloforge.models import model_class
    from caloforge.models.base import load_model
    from caloforge.stream import FileSource, e_inc_range
    from caloforge.training import device_problem

    set_threads(args.threads)
    config = load_config(args.config)
    src = config["_source"]
    if config.get("model", args.model) != args.model:
        raise ConfigError(f"{src}[model]: expected {args.model!r} (from --model), found "
                          f"{config['model']!r}")
    dataset = config.get("dataset")
    if dataset is not None and dataset not in DATASETS:
        raise ConfigError(f"{src}[dataset]: expected one of {', '.join(DATASETS)}, found "
                          f"{dataset!r}")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs: expected a positive integer, found {args.epochs}")
    if args.device is not None and device_problem(args.device):
        raise ConfigError(f"--device: expected {device_problem(args.device)}, found "
                          f"{args.device!r}")
    teacher_model = model_class(args.model).teacher_model
    if args.teacher is not None and teacher_model is None:
        raise ConfigError(f"--teacher: expected no teacher for {args.model} (only student "
                          f"models take one), found {args.teacher}")
    if args.teacher is None and teacher_model is not None:
        raise ConfigError(f"--teacher: expected the trained {teacher_model} teacher "
                          f"RUN_DIR/model.pt of a {args.model}, found none")
    run_dir = Path(args.output)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: expected a run directory, found a file")
    base = next(p for p in (run_dir, *run_dir.parents) if p.exists() or p == Path(p.anchor))
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{run_dir}: expected a run directory that can be created, found "
                          f"{base} {'is a file' if not base.is_dir() else 'not writable'}")
    if run_dir.is_dir() and any(run_dir.glob("*.pt")) and not args.resume:
        raise ConfigError(f"{run_dir}: expected a new run directory, found existing checkpoints "
                          f"(use --resume to continue, or another -o)")

    # the data: its geometry must be the recipe's
    source = FileSource(args.data, geometry=dataset, seed=args.seed or 0)  # inspects only
    streamed = args.stream == "on" or (args.stream == "auto" and (
        len(args.data) > 1 or source.geometry.name in ("2", "3")))
    if streamed:
        if args.low_memory:
            from caloforge.stream import bounded_heap

            bounded_heap()  # large blocks back to the system when freed: flat memory in N
        train, val = _streamed_split(source, args.val, args.seed or 0)
        geometry = train.geometry
    else:
        data = concat([read_showers(p, geometry=dataset) for p in args.data])
        geometry = data.geometry
        if args.val is not None:
            train = data
            val = concat([read_showers(p, geometry=geometry) for p in args.val])
        else:
            rng = np.random.default_rng(args.seed or 0)
            perm = rng.permutation(len(data))
            n_val = len(data) // 10 if len(data) >= 10 else 0
            train = data.subset(np.sort(perm[n_val:]))
            val = data.subset(np.sort(perm[:n_val])) if n_val else None
    if len(train) == 0:
        raise ConfigError(f"{args.data[0]}[showers]: expected training showers, found none "
                          f"({len(source)} rows in the file)")
    for name, part in ((args.data[0], None if streamed else data),
                       (args.val and args.val[0], val if args.val and not streamed else None)):
        if part is not None and len(part) and not part.showers.any():
            raise ConfigError(f"{name}[showers]: expected showers with deposited energy, found "
                              f"all {len(part)} showers empty (every voxel 0)")

    config = override_training(config, device=args.device, seed=args.seed)
    config.setdefault("model", args.model)
    config.setdefault("dataset", geometry.name)
    torch.manual_seed(args.seed or 0)
    options = {}
    if args.teacher is not None:
        options["teacher"] = load_model(args.teacher)
    # every stage's training options now, not when the stage starts (after earlier stages)
    stages = list(config.get("training") or {}) if is_multistage(config) else [None]
    for stage in stages:
        train_config(config, stage, epochs=args.epochs)
    model = model_class(args.model)(geometry, config)
    recipe = {k: v for k, v in config.items() if k != "_source"}
    if args.epochs is not None:  # the run's own record says what it trains for
        training = dict(recipe.get("training") or {})
        if stages == [None]:
            training["epochs"] = args.epochs
        else:
            training = {k: {**v, "epochs": args.epochs} for k, v in training.items()}
        recipe["training"] = training
    if args.resume:
        _check_same_run(run_dir, recipe, src)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _run_lock(run_dir):  # one trainer per run directory
            with atomic_path(run_dir / "config.yaml", overwrite=True) as tmp:
                tmp.write_text(yaml.safe_dump(recipe, sort_keys=False))
            history = model.fit(train, val, run_dir, resume=args.resume, epochs=args.epochs,
                                progress=not args.quiet, **options)
            model.eval()
            model.trained_e_inc = e_inc_range(train)
            path = model.save(run_dir / "model.pt")
            _ensure_last(run_dir)
    except BaseException:
        if created:  # a run that never trained an epoch leaves no directory behind
            _remove_if_unstarted(run_dir)
        raise
    last = {k: v[-1] for k, v in (history or {}).items() if isinstance(v, list) and v}
    summary = ", ".join(f"{k} {v:.5g}" for k, v in last.items() if k != "seconds")
    how = f", streamed from {len(args.data)} file(s)" if streamed else ""
    print(f"trained {args.model} on {len(train)} showers ({geometry.name}{how}); {summary}")
    print(f"wrote {path}")
    return 0


def _streamed_split(source, val_paths: list[str] | None, seed: int):
    """``(train, val)`` sources: ``--val`` files, else a seeded 10% of whole read chunks of
    ``--data`` (chosen by shower index; nothing is loaded)."""
    from caloforge.stream import FileSource

    if val_paths:
        return source, FileSource(val_paths, geometry=source.geometry, seed=seed + 1)
    if len(source.units) < 2:  # too small to hold a chunk out
        return source, None
    return source.split(0.1, seed=seed)


def _ensure_last(run_dir) -> None:
    """Multi-stage models write ``{stage}last.pt``; expose the newest one as ``last.pt``."""
    from caloforge.atomic import atomic_path

    last = run_dir / "last.pt"
    if last.exists():
        return
    stages = sorted(run_dir.glob("*last.pt"), key=lambda p: p.stat().st_mtime)
    if stages:
        with atomic_path(last, overwrite=True) as tmp:
            shutil.copyfile(stages[-1], tmp)


#: Recipe keys that may change when a run is resumed (everything else builds the model).
_RESUMABLE = ("training", "description")


def _check_same_run(run_dir: Path, recipe: dict, source: str) -> None:
    """With ``--resume``: the model, geometry and architecture must be the run's own
    (``RUN_DIR/config.yaml``); only ``training`` options may change."""
    import yaml

    from caloforge.errors import ConfigError

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return  # nothing to compare; the checkpoints' shapes are checked when loaded
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"{saved_path}: expected the run's recipe (a YAML mapping), found "
                          f"unreadable data (use a new -o)")
    new = yaml.safe_load(yaml.safe_dump(recipe))  # the same normal form as the saved file
    keys = sorted(set(saved) | set(new), key=lambda k: (k not in ("model", "dataset"), str(k)))
    for key in keys:
        if key in _RESUMABLE or saved.get(key) == new.get(key):
            continue
        what = {"model": "--model", "dataset": "the data's geometry"}.get(key, f"{source}[{key}]")
        raise ConfigError(f"{saved_path}[{key}]: expected {saved.get(key)!r} (this run's "
                          f"{key}) to resume, found {new.get(key)!r} from {what} (resume with "
                          f"the run's own recipe, or use a new -o)")


LOCK_NAME = ".caloforge-train.lock"


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``RUN_DIR/.caloforge-train.lock`` (created exclusively, holding the PID) while
    training: a second ``caloforge train`` on the same directory gets a one-line error
    instead of interleaving checkpoints. A lock left by a dead process is taken over."""
    from caloforge.atomic import pid_alive
    from caloforge.errors import ConfigError

    lock = run_dir / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid_alive(pid):
                raise ConfigError(f"{run_dir}: expected a run directory no other process is "
                                  f"training in, found one in use by process {pid} (wait for "
                                  f"it, or use another -o)") from None
            lock.unlink(missing_ok=True)  # left by a killed trainer
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise ConfigError(f"{lock}: expected to take the run directory's lock, found it "
                          f"contended")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()


def _remove_if_unstarted(run_dir: Path) -> None:
    """Delete ``run_dir`` if it holds nothing but this run's ``config.yaml`` (and temporary
    files): the run failed before its first checkpoint."""
    from caloforge.atomic import clean_stale

    clean_stale(run_dir)
    try:
        names = {p.name for p in run_dir.iterdir()}
    except OSError:
        return
    if names <= {"config.yaml"}:
        for name in names:
            (run_dir / name).unlink(missing_ok=True)
        try:
            run_dir.rmdir()
        except OSError:
            pass
