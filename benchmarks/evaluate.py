"""Wall time of ``caloforge evaluate -m all`` at dataset-1 photon size (121,000 vs 121,000).

Both samples come from the reference simulator (independent seeds). The run does everything
``-m all`` does — features, every histogram and picture, the HTML/JSON report, cls-low and
cls-high (official width 2048, batch 1000), FPD, KPD and PRDC — with ``--epochs`` classifier
epochs (default 1: 50 official epochs take hours on 2 CPU cores). The 50-epoch time is then
extrapolated from the measured per-epoch time of each classifier:
``wall + (50 - epochs) x epoch time``. The table goes into the ``evaluate`` section of
BENCHMARKS.md.

Usage:
    python benchmarks/evaluate.py [--showers 121000] [--epochs 1] [--threads 2] [--no-report]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, table, update_section  # noqa: E402

from caloforge.evaluation import evaluate  # noqa: E402
from caloforge.simulate import simulate  # noqa: E402

OFFICIAL_EPOCHS = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--showers", type=int, default=121_000, help="showers per sample")
    ap.add_argument("--epochs", type=int, default=1, help="classifier epochs actually run")
    ap.add_argument("--width", type=int, default=2048, help="classifier width")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ref = simulate("1-photons", args.showers, seed=1)
    gen = simulate("1-photons", args.showers, seed=2)
    t_sim = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        m = evaluate(gen, ref, "all", Path(tmp) / "eval", epochs=args.epochs, width=args.width,
                     device="cpu", progress=False, min_steps=0)  # time exactly these epochs
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n_png = len(list((Path(tmp) / "eval" / "plots").glob("*.png")))
    extra = {mode: (OFFICIAL_EPOCHS - args.epochs) * r["mean_epoch_s"][0]
             for mode, r in m["classifier"].items()}
    rows = [[stage, f"{sec:.1f}"] for stage, sec in m["timing_s"].items()]
    rows.append([f"**total `-m all`, {args.epochs} epoch(s)** (CPU time {cpu:.0f} s)",
                 f"**{wall:.1f}**"])
    for mode, r in m["classifier"].items():
        rows.append([f"{mode}: one epoch", f"{r['mean_epoch_s'][0]:.1f}"])
    rows.append([f"**extrapolated, {OFFICIAL_EPOCHS} epochs**",
                 f"**{wall + sum(extra.values()):.0f}**"])
    md = "\n".join([
        "## Evaluation (`caloforge evaluate -m all`)",
        "",
        f"Machine: {machine()}.",
        "",
        f"{args.showers:,} generated vs {args.showers:,} reference dataset-1 photon showers "
        f"(reference simulator, seeds 2 and 1; simulated in {t_sim:.0f} s, not counted). "
        f"Everything `-m all` does: features, {n_png} PNGs, report, cls-low and cls-high "
        f"(width {args.width}, batch 1000, {args.epochs} epoch(s) run), FPD, KPD, PRDC "
        f"(10,000 showers). Wall seconds per stage (`timing_s` of metrics.json); the "
        f"{OFFICIAL_EPOCHS}-epoch total adds {OFFICIAL_EPOCHS - args.epochs} x the measured "
        "epoch time of each classifier. The machine is shared, so numbers are upper bounds.",
        "",
        table(["stage", "seconds"], rows),
        "",
        f"Results of this run: AUC low {m['auc_low']:.4f}, AUC high {m['auc_high']:.4f} "
        f"(after {args.epochs} epoch(s)), FPD x 1e3 {m['fpd']:.3f} ± {m['fpd_err']:.3f}, "
        f"KPD x 1e3 {m['kpd']:.4f} ± {m['kpd_err']:.4f}, mean separation power "
        f"{m['mean_separation_power']:.5f}, PRDC "
        + ", ".join(f"{k} {v:.3f}" for k, v in m["prdc"].items()) + ".",
        "",
        "Reproduce: `python benchmarks/evaluate.py --showers 121000 --epochs 1 --threads 2`.",
    ])
    print(md)
    if not args.no_report:
        update_section("evaluate", md)


if __name__ == "__main__":
    main()
