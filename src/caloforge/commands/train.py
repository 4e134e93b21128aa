"""``caloforge train``: fit a generator from a YAML recipe and a shower file.

Writes into ``RUN_DIR``: ``model.pt`` (the best weights, self-describing: load with
:func:`caloforge.models.base.load_model`), ``last.pt`` (the resume checkpoint of the last
trained stage), the per-stage ``{stage}last.pt`` / ``{stage}final.pt`` / ``{stage}metrics.csv``
of :func:`caloforge.training.fit` and ``config.yaml`` (the recipe as used).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ORDER = 30


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from caloforge.models import REGISTRY

    p = sub.add_parser("train", help="train a generator (CaloFlow, CaloINN, CaloMan, ...)",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model", required=True, choices=sorted(REGISTRY), help="model name")
    p.add_argument("--config", required=True, help="YAML recipe (configs/<model>/<dataset>.yaml)")
    p.add_argument("--data", required=True, help="training showers (CaloChallenge/CaloGAN HDF5)")
    p.add_argument("--val", default=None,
                   help="validation showers (default: a seeded 10%% split of --data)")
    p.add_argument("--epochs", type=int, default=None, help="override every stage's epochs")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in RUN_DIR (finished stages are skipped)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint RUN_DIR/model.pt (caloflow-student only)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda[:i]")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of initialisation and split (default 0; also sets training.seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import yaml

    from caloforge.atomic import atomic_path
    from caloforge.config import load_config, override_training
    from caloforge.data import read_showers
    from caloforge.errors import ConfigError
    from caloforge.geometry import DATASETS
    from caloforge.models import model_class
    from caloforge.models.base import load_model

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
    if args.device is not None and not (args.device == "auto"
                                        or args.device.startswith(("cpu", "cuda"))):
        raise ConfigError(f"--device: expected auto, cpu or cuda[:i], found {args.device!r}")
    run_dir = Path(args.output)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: expected a run directory, found a file")
    if run_dir.is_dir() and any(run_dir.glob("*.pt")) and not args.resume:
        raise ConfigError(f"{run_dir}: expected a new run directory, found existing checkpoints "
                          f"(use --resume to continue, or another -o)")

    # the data: its geometry must be the recipe's
    data = read_showers(args.data, geometry=dataset)
    geometry = data.geometry
    if args.val is not None:
        train, val = data, read_showers(args.val, geometry=geometry)
    else:
        rng = np.random.default_rng(args.seed or 0)
        perm = rng.permutation(len(data))
        n_val = len(data) // 10 if len(data) >= 10 else 0
        train = data.subset(np.sort(perm[n_val:]))
        val = data.subset(np.sort(perm[:n_val])) if n_val else None
    if len(train) == 0:
        raise ConfigError(f"{args.data}[showers]: expected training showers, found none")

    config = override_training(config, device=args.device, seed=args.seed)
    config.setdefault("model", args.model)
    config.setdefault("dataset", geometry.name)
    torch.manual_seed(args.seed or 0)
    options = {}
    if args.teacher is not None:
        options["teacher"] = load_model(args.teacher)
    model = model_class(args.model)(geometry, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "config.yaml", overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "_source"},
                                      sort_keys=False))
    history = model.fit(train, val, run_dir, resume=args.resume, epochs=args.epochs,
                        progress=not args.quiet, **options)
    model.eval()
    path = model.save(run_dir / "model.pt")
    _ensure_last(run_dir)
    last = {k: v[-1] for k, v in (history or {}).items() if isinstance(v, list) and v}
    summary = ", ".join(f"{k} {v:.5g}" for k, v in last.items() if k != "seconds")
    print(f"trained {args.model} on {len(train)} showers ({geometry.name}); {summary}")
    print(f"wrote {path}")
    return 0


def _ensure_last(run_dir) -> None:
    """Multi-stage models write ``{stage}last.pt``; expose the newest one as ``last.pt``."""
    last = run_dir / "last.pt"
    if last.exists():
        return
    stages = sorted(run_dir.glob("*last.pt"), key=lambda p: p.stat().st_mtime)
    if stages:
        shutil.copyfile(stages[-1], last)
