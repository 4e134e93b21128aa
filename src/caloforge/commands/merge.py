"""``caloforge merge``: join the shard files of a sharded ``caloforge generate`` into one file.

A sharded generation (``torchrun --nproc-per-node K -m caloforge generate ... -o gen.h5``)
merges by itself; this command is for shards left on separate machines or by a failed run:
``caloforge merge gen.h5.shard-* -o gen.h5``. The shards must be one complete set (every index
0..K-1 once); the output is written atomically.
"""

from __future__ import annotations

import argparse

ORDER = 37


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("merge", help="join the shard files of a sharded generation",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("shards", nargs="+", metavar="SHARD", help="shard files (any order)")
    p.add_argument("--delete", action="store_true", help="remove the shards after merging")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="output file")
    return p


def run(args: argparse.Namespace) -> int:
    from caloforge.atomic import check_writable
    from caloforge.data import inspect
    from caloforge.shards import merge_shards

    check_writable(args.output, args.overwrite)
    out = merge_shards(args.shards, args.output, overwrite=args.overwrite, delete=args.delete)
    print(f"merged {len(args.shards)} shards into {out} ({inspect(out).n_showers} showers)")
    return 0
