"""A/B of the spline set-up inside the shipped samplers: caloforge's
:class:`~caloforge.flows.spline.RQSTransform` against zuko's ``MonotonicRQSTransform``.

Both build the same spline from the same raw parameters (tested equal); caloforge's normalises
the bins with ``exp / sum`` instead of ``torch.softmax``. The script builds the untrained
CaloINN, CaloFlow student and CaloMan at recipe size, swaps the spline class in
:mod:`caloforge.flows.coupling` and :mod:`caloforge.flows.autoregressive`, and times
``model.sample`` with each, interleaved (two rounds), on one torch thread; a figure is the
fastest of 3 calls over both rounds, ms per shower. Prints a Markdown table (writes no
BENCHMARKS.md section: on a shared machine run it when the load is low).

Usage::

    python benchmarks/spline_ab.py [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000", help="batch sizes")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import sampling
    from _report import machine
    from zuko.transforms import MonotonicRQSTransform

    import caloforge.flows.autoregressive as ar
    import caloforge.flows.coupling as cp
    from caloforge.flows.spline import RQSTransform

    dev = torch.device("cpu")
    rows = {"caloinn": sampling.build_caloinn(dev)[0],
            "caloflow-student": sampling.build_student(dev)[0],
            "caloman": sampling.build_caloman(dev)[0]}
    sizes = [int(s) for s in args.sizes.split(",")]
    best: dict[tuple[str, int, str], float] = {}
    load0 = os.getloadavg()[0]
    try:
        for b in sizes:
            e = torch.full((b,), 65536.0, dtype=torch.float64)
            for _ in range(args.rounds):
                for impl, cls in (("zuko", MonotonicRQSTransform), ("caloforge", RQSTransform)):
                    cp.RQSTransform = ar.RQSTransform = cls
                    for name, fn in rows.items():
                        with torch.inference_mode():
                            fn(e)
                            for _ in range(3):
                                t = time.perf_counter()
                                fn(e)
                                ms = 1e3 * (time.perf_counter() - t) / b
                                key = (name, b, impl)
                                best[key] = min(best.get(key, float("inf")), ms)
    finally:
        cp.RQSTransform = ar.RQSTransform = RQSTransform
    print(f"{machine()}; 1-min load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| model | batch | zuko set-up ms/shower | caloforge ms/shower | speed-up |")
    print("|---|---|---|---|---|")
    for name in rows:
        for b in sizes:
            z, c = best[(name, b, "zuko")], best[(name, b, "caloforge")]
            print(f"| {name} | {b:,} | {z:.3f} | {c:.3f} | {z / c:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
