"""``caloforge generate``: sample showers from a trained model into a CaloChallenge file."""

from __future__ import annotations

import argparse

ORDER = 35


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from caloforge.geometry import DATASETS

    p = sub.add_parser("generate", help="sample showers from a trained model into a file")
    p.add_argument("--checkpoint", required=True, help="RUN_DIR/model.pt from caloforge train")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--energies-from", default=None, metavar="REF.h5",
                     help="use the incident energies of this file")
    src.add_argument("--dataset", default=None, choices=DATASETS,
                     help="use the official energy mix of this dataset (default: the model's)")
    p.add_argument("-n", type=int, default=None, help="number of showers (default: all)")
    p.add_argument("--batch-size", type=int, default=10_000, help="showers per sampling call")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:i]")
    p.add_argument("--compile", action="store_true",
                   help="sample through torch.compile (slow first batch, faster after; "
                        "~5x for CaloINN on a CPU at batch 10,000)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="output file")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from caloforge.atomic import check_writable
    from caloforge.data import inspect
    from caloforge.errors import ConfigError, GeometryError
    from caloforge.generation import (
        check_energy_range,
        energies_from_file,
        generate_to_file,
        official_energies,
    )
    from caloforge.models.base import load_model
    from caloforge.training import device_problem

    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n: expected a positive number of showers, found {args.n}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, found {args.batch_size}")
    device = args.device
    if device_problem(device):
        raise ConfigError(f"--device: expected {device_problem(device)}, found {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_writable(args.output, args.overwrite)
    model = load_model(args.checkpoint, map_location=device).to(device)
    model.eval()
    geo = model.geometry
    if args.energies_from is not None:
        info = inspect(args.energies_from)
        if info.geometry.name != geo.name or info.n_voxels != geo.n_voxels:
            raise GeometryError(f"{args.energies_from}: expected showers of the checkpoint's "
                                f"geometry {geo.name} ({geo.n_voxels} voxels), found "
                                f"{info.geometry.name} ({info.n_voxels} voxels)")
        e_inc = energies_from_file(args.energies_from, args.n)
        source = args.energies_from
    else:
        dataset = args.dataset or geo.name
        if dataset != geo.name:
            raise ConfigError(f"--dataset: expected {geo.name!r} (the checkpoint's geometry), "
                              f"found {dataset!r}")
        e_inc = official_energies(dataset, n=args.n, seed=args.seed)
        source = f"official {dataset} energies"
    check_energy_range(e_inc, model, source if args.energies_from else "--dataset",
                       args.checkpoint)
    res = generate_to_file(model, e_inc, args.output, batch_size=args.batch_size,
                           seed=args.seed, overwrite=args.overwrite, progress=not args.quiet,
                           attrs={"checkpoint": str(args.checkpoint)}, compile=args.compile)
    print(f"generated {res.n} showers ({getattr(model, 'name', '?')}, {source}) on {device} "
          f"in {res.total_seconds:.2f} s")
    print(f"time per shower: {res.ms_per_shower:.4f} ms (sampling only, batch size "
          f"{res.batch_size}{', compiled, including compile time' if args.compile else ''})")
    if res.redrawn:
        print(f"re-drew {res.redrawn} of {res.n} showers that held NaN, inf or negative "
              f"voxels")
    print(f"wrote {res.path}")
    return 0
