"""A/B/C of the sampling paths inside the shipped samplers, in one process.

Three implementations of the same sampling step (tested equal; ``tests/test_fast_sampling.py``)
are swapped into the untrained CaloINN, CaloFlow student and CaloMan at recipe size:

* ``zuko``: zuko's ``MonotonicRQSTransform`` set-up (``torch.softmax``) and its inverse, with
  CaloINN's permutations applied as copies and the student's MADE as a plain masked pass plus
  a separate context skip (the state before any caloforge speed work);
* ``rqs``: :class:`~caloforge.flows.spline.RQSTransform` (explicit ``exp / sum`` set-up), the
  same copies and MADE pass (the state before :func:`~caloforge.flows.spline.rqs_inverse`);
* ``fused``: the shipped path: :func:`~caloforge.flows.spline.rqs_inverse` from the raw
  parameters, permutations folded into index maps (:meth:`CouplingRQSFlow.inverse`), the
  IAF's MADE with cached masked weights and the skip inside the last matmul
  (:meth:`MADE.forward_sampling`).

``model.sample`` is timed with each, interleaved (``--rounds`` rounds, one torch thread); a
figure is the median over the rounds of each round's fastest of 3 calls, ms per shower.
Prints a Markdown table (writes no BENCHMARKS.md section: on a shared machine only the
ratios within one run mean anything).

Usage::

    python benchmarks/spline_ab.py [--sizes 100,1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _reference_paths():
    """(coupling-flow inverse, MADE-RQS block inverse) computed block by block with copies
    and :meth:`RQSTransform.inverse`: the paths before the fused sampling step."""
    from caloforge.flows.coupling import CouplingRQSFlow

    def block_inverse(self, y, c=None, with_ladj=True):
        if self.inverse_autoregressive and not with_ladj:
            raw = self.made(y, c)
            return self.spline(raw).inverse(y), None, raw
        return FUSED[1](self, y, c, with_ladj)

    return CouplingRQSFlow.inverse_blockwise, block_inverse


FUSED: tuple = ()


def main(argv: list[str] | None = None) -> int:
    global FUSED
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000", help="batch sizes")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import sampling
    from _report import machine
    from zuko.transforms import MonotonicRQSTransform

    import caloforge.flows.autoregressive as ar
    import caloforge.flows.coupling as cp
    from caloforge.flows.spline import RQSTransform

    class ZukoRQS(MonotonicRQSTransform):
        """zuko's transform; ``inverse`` through its ``.inv`` object, as zuko users call it."""

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            return self.inv(y)

    FUSED = (cp.CouplingRQSFlow.inverse, ar.MADERQSBlock.inverse)
    ref_flow, ref_block = _reference_paths()
    variants = {"zuko": (ZukoRQS, ref_flow, ref_block),
                "rqs": (RQSTransform, ref_flow, ref_block),
                "fused": (RQSTransform, *FUSED)}
    dev = torch.device("cpu")
    rows = {"caloinn": sampling.build_caloinn(dev)[0],
            "caloflow-student": sampling.build_student(dev)[0],
            "caloman": sampling.build_caloman(dev)[0]}
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[tuple[str, int, str], list[float]] = {}
    load0 = os.getloadavg()[0]
    try:
        for _ in range(args.rounds):
            for b in sizes:
                e = torch.full((b,), 65536.0, dtype=torch.float64)
                for impl, (cls, flow_inv, block_inv) in variants.items():
                    cp.RQSTransform = ar.RQSTransform = cls
                    cp.CouplingRQSFlow.inverse, ar.MADERQSBlock.inverse = flow_inv, block_inv
                    for name, fn in rows.items():
                        best = float("inf")
                        with torch.inference_mode():
                            fn(e)
                            for _ in range(3):
                                t = time.perf_counter()
                                fn(e)
                                best = min(best, 1e3 * (time.perf_counter() - t) / b)
                        runs.setdefault((name, b, impl), []).append(best)
    finally:
        cp.RQSTransform = ar.RQSTransform = RQSTransform
        cp.CouplingRQSFlow.inverse, ar.MADERQSBlock.inverse = FUSED
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"{machine()}; 1-min load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; {args.rounds} interleaved rounds, medians\n")
    print("| model | batch | zuko set-up + copies | RQSTransform + copies | fused (shipped) "
          "| fused vs RQSTransform | fused vs zuko set-up |")
    print("|---|---|---|---|---|---|---|")
    for name in rows:
        for b in sizes:
            z, r, f = (med[(name, b, i)] for i in variants)
            print(f"| {name} | {b:,} | {z:.3f} | {r:.3f} | {f:.3f} | {r / f:.2f}x "
                  f"| {z / f:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
