"""``caloforge demo [-o DIR] [--overwrite]``: simulate, train a small CaloMan, generate,
evaluate and write the HTML report, from nothing (~5 minutes on 2 CPU cores)."""

from __future__ import annotations

import argparse

ORDER = 5


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="simulate -> train CaloMan -> generate -> evaluate, "
                                    "in a few minutes on a CPU")
    p.add_argument("-o", "--output", default="caloforge_demo", metavar="DIR",
                   help="output directory (default ./caloforge_demo); rerunning reuses "
                        "finished steps")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a previous demo's outputs in DIR and start again")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of torch and of the BLAS/OpenMP libraries (default: "
                        "their choice)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from caloforge.commands._options import set_threads
    from caloforge.demo import run_demo, summary_lines

    set_threads(args.threads)  # torch and the boosted trees' OpenMP
    result = run_demo(args.output, overwrite=args.overwrite, progress=not args.quiet)
    for line in summary_lines(result):
        print(line)
    return 0
