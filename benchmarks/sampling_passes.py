"""Sampling pass size on a CPU: the conv L2LFlows at 1,000 showers per call, in passes of
``sampling.cpu_batch_size`` against passes of ``sampling.batch_size``, side by side.

A call of ``--n`` showers (default 1,000, E_inc = 65,536 MeV as in
``benchmarks/sampling_layerwise.py``) of each untrained recipe is timed once per pass size,
the pass sizes interleaved (``--rounds`` rounds), with one torch thread: wall and process CPU
milliseconds per shower. The ratio ``passes of 1,000 / passes of 100`` is the speed-up the
recipes' ``cpu_batch_size: 100`` gives; the dataset-3 figure sits beside the CaloChallenge's
CPU figure for ConvL2LFlow (429 ms per shower at batch 10k, their hardware). The table goes
into the ``sampling_passes`` section of BENCHMARKS.md.

Usage:
    python benchmarks/sampling_passes.py [--recipes 2-cpu,3-cpu,2,3] [--passes 100,1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, table, update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHALLENGE_CPU_MS = {"3": 428.684}  # ConvL2LFlow, dataset 3, CPU, batch 10k (their figure)


def build(recipe: str) -> torch.nn.Module:
    """The untrained model of ``configs/l2lflows/RECIPE.yaml`` (sampling cost does not depend
    on the weights)."""
    from caloforge.config import load_config
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    cfg = load_config(ROOT / "configs" / "l2lflows" / f"{recipe}.yaml")
    torch.manual_seed(0)
    return model_class("l2lflows")(Geometry.preset(cfg["dataset"]), cfg).eval()


def time_call(model: torch.nn.Module, n: int, size: int) -> tuple[float, float]:
    """(wall, CPU) seconds per shower of one ``model.sample`` call of ``n`` showers in passes
    of ``size``."""
    model.sampling_cfg["batch_size"], model.sampling_cfg["cpu_batch_size"] = size, None
    e = torch.full((n,), 65536.0, dtype=torch.float64)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model.sample(e)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="2-cpu,3-cpu,2,3", help="configs/l2lflows names")
    ap.add_argument("--passes", default="100,1000", help="pass sizes to compare")
    ap.add_argument("--n", type=int, default=1000, help="showers per timed call")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (fastest kept)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    passes = [int(p) for p in args.passes.split(",")]
    rows, loads = [], []
    for recipe in args.recipes.split(","):
        model = build(recipe)
        weights = sum(p.numel() for p in model.parameters())
        own = dict(model.sampling_cfg)
        for size in passes:  # warm-up: one small call per pass size
            time_call(model, min(size, 10), size)
        best: dict[int, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for size in passes:
                wall, cpu = time_call(model, args.n, size)
                if size not in best or wall < best[size][0]:
                    best[size] = (wall, cpu)
                print(f"{recipe}: passes of {size}: {1e3 * wall:.1f} ms/shower wall, "
                      f"{1e3 * cpu:.1f} CPU", flush=True)
        loads.append(os.getloadavg()[0])
        dataset = str(model.geometry.name)
        rows.append((recipe, dataset, weights, own, best))
    small, large = min(passes), max(passes)
    head = ["recipe", "weights", *[f"passes of {p:,}: ms/shower wall (CPU)" for p in passes],
            f"{large:,} / {small:,}", "challenge CPU (their hardware)"]
    body = []
    for recipe, dataset, weights, own, best in rows:
        body.append([f"`configs/l2lflows/{recipe}.yaml` (cpu_batch_size {own['cpu_batch_size']})",
                     f"{weights / 1e6:.2f} M",
                     *[f"{1e3 * best[p][0]:.1f} ({1e3 * best[p][1]:.1f})" for p in passes],
                     f"{best[large][0] / best[small][0]:.2f}x",
                     f"{CHALLENGE_CPU_MS[dataset]:.0f} ms" if dataset in CHALLENGE_CPU_MS
                     else "-"])
    text = "\n".join([
        f"`python benchmarks/sampling_passes.py --recipes {args.recipes} --passes "
        f"{args.passes} --n {args.n} --rounds {args.rounds}`: one `model.sample` call of "
        f"{args.n:,} showers (E_inc 65,536 MeV, untrained recipe) per pass size, the pass "
        f"sizes interleaved, {args.threads} torch thread(s); the fastest of {args.rounds} "
        f"round(s). Measured on {machine()}; 1-min load {min(loads):.1f}-{max(loads):.1f} "
        f"after each recipe.", "",
        table(head, body), "",
        f"`{large:,} / {small:,}`: wall time per shower in passes of {large:,} over passes of "
        f"{small:,} (> 1: the smaller passes are faster). A recipe's "
        f"`sampling.cpu_batch_size` sets its passes on a CPU (`model.sample`, `caloforge "
        f"generate`); on a GPU it keeps `batch_size`."])
    print(text)
    if not args.no_write:
        update_section("sampling_passes", "## Sampling pass size on a CPU (conv L2LFlows)\n\n"
                       + text)


if __name__ == "__main__":
    main()
