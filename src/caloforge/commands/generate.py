"""``caloforge generate``: sample showers from a trained model into a CaloChallenge file."""

from __future__ import annotations

import argparse

from caloforge.commands._options import add_threads, set_threads

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
    p.add_argument("--batch-size", type=int, default=10_000,
                   help="showers written at a time (sampled in micro-batches, see below)")
    p.add_argument("--micro-batch", type=int, default=None, metavar="N",
                   help="showers per sampling call (default: 1000 on a CPU, where larger "
                        "calls are slower per shower; the whole batch on a GPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:i]")
    p.add_argument("--compile", action="store_true",
                   help="sample through torch.compile (slow first batch, faster after; "
                        "~2x for CaloINN, ~1.3x for the student on one CPU thread)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="dtype of the matrix multiplications: float32 (default) or bfloat16 "
                        "(autocast; ~3x faster matmuls on CPUs with AVX512-BF16/AMX and on "
                        "GPUs; splines and postprocessing stay float32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="output file")
    return p


def run(args: argparse.Namespace) -> int:
    import os

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
    from caloforge.training import device_problem, dist_info

    set_threads(args.threads)
    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n: expected a positive number of showers, found {args.n}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, found {args.batch_size}")
    device = args.device
    if device_problem(device):
        raise ConfigError(f"--device: expected {device_problem(device)}, found {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = dist_info()
    if world > 1 and device == "cuda":  # torchrun: one GPU per local process
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
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
    if world > 1:
        return _run_sharded(args, model, e_inc, device, source, rank, world)
    res = generate_to_file(model, e_inc, args.output, batch_size=args.batch_size,
                           seed=args.seed, overwrite=args.overwrite, progress=not args.quiet,
                           attrs={"checkpoint": str(args.checkpoint)}, compile=args.compile,
                           micro_batch=args.micro_batch, precision=args.precision)
    print(f"generated {res.n} showers ({getattr(model, 'name', '?')}, {source}) on {device} "
          f"in {res.total_seconds:.2f} s")
    how = (f", {args.precision} matmuls" if args.precision != "float32" else "") + (
        ", compiled, including compile time" if args.compile else "")
    print(f"time per shower: {res.ms_per_shower:.4f} ms (sampling only, batch size "
          f"{res.batch_size}{how})")
    if res.redrawn:
        print(f"re-drew {res.redrawn} of {res.n} showers that held NaN, inf or negative "
              f"voxels")
    print(f"wrote {res.path}")
    return 0


def _run_sharded(args: argparse.Namespace, model, e_inc, device: str, source: str, rank: int,
                 world: int) -> int:
    """Under ``torchrun``: this rank samples its slice of ``e_inc`` with its own seed into a
    shard file; rank 0 joins the shards into ``args.output`` (atomically) and removes them.
    See :mod:`caloforge.shards`."""
    import torch.distributed as dist

    from caloforge.errors import ConfigError
    from caloforge.generation import generate_to_file
    from caloforge.shards import merge_shards, shard_path, shard_seed, shard_slice

    if len(e_inc) < world:
        raise ConfigError(f"-n: expected at least one shower per process ({world}), found "
                          f"{len(e_inc)}")
    if not dist.is_initialized():
        dist.init_process_group("gloo")  # barriers only, on CPU and GPU machines alike
    part = shard_slice(len(e_inc), rank, world)
    attrs = {"checkpoint": str(args.checkpoint), "seed": args.seed, "shard_index": rank,
             "shard_count": world, "shard_start": part.start, "total_rows": len(e_inc)}
    res = generate_to_file(model, e_inc[part], shard_path(args.output, rank, world),
                           batch_size=args.batch_size, seed=shard_seed(args.seed, rank, world),
                           overwrite=True, progress=not args.quiet and rank == 0, attrs=attrs,
                           compile=args.compile, micro_batch=args.micro_batch,
                           precision=args.precision)
    dist.barrier()  # every shard is complete
    if rank == 0:
        out = merge_shards([shard_path(args.output, r, world) for r in range(world)],
                           args.output, overwrite=args.overwrite, delete=True)
        print(f"generated {len(e_inc)} showers ({getattr(model, 'name', '?')}, {source}) on "
              f"{world} processes ({device} here); rank 0: {res.ms_per_shower:.4f} ms per "
              f"shower (sampling only, batch size {res.batch_size})")
        print(f"wrote {out}")
    dist.barrier()
    dist.destroy_process_group()
    return 0
