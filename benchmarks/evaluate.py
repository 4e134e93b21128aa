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
    python benchmarks/evaluate.py --plots-section [--showers 3000] [--threads 1]

``--plots-section`` times ``evaluate -m hist`` with and without pictures instead (issue 15
item 4) on simulated datasets 1 (photons), 2 and 3 at ``--showers`` per side (default 3,000):
the computation alone (API, no output directory), ``plots="none"`` (metrics.json and a report
with tables), ``"summary"`` (default: inline SVG histograms, PNG mosaics of the average
showers) and ``"all"`` (the matplotlib PNGs). Wall and CPU seconds (``time.process_time``:
less sensitive to other jobs on a shared machine) and CPU time relative to the computation;
the ``evaluate_plots`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, table, update_section  # noqa: E402

from caloforge.data import ShowerSet, read_showers, write_showers  # noqa: E402
from caloforge.evaluation import evaluate  # noqa: E402
from caloforge.simulate import simulate  # noqa: E402

OFFICIAL_EPOCHS = 50
#: Picture settings timed by ``--plots-section`` ("api" = no output directory at all).
PLOT_SETTINGS = ("api", "none", "summary", "all")


def _cached(dataset: str, n: int, seed: int) -> ShowerSet:
    """Simulated showers, cached under $TMPDIR/caloforge_bench (not in the repository)."""
    path = Path(tempfile.gettempdir()) / "caloforge_bench" / f"{dataset}_seed{seed}_{n}.h5"
    if path.exists():
        return read_showers(path, dataset)
    ss = simulate(dataset, n, seed=seed, progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_showers(path, ss, overwrite=True)
    return ss


def plots_section(showers: int, datasets: list[str], write: bool) -> None:
    """Time ``-m hist`` with every picture setting; render the ``evaluate_plots`` section."""
    rows = []
    for ds in datasets:
        ref, gen = _cached(ds, showers, 1), _cached(ds, showers, 2)
        base_cpu = None
        for setting in PLOT_SETTINGS:
            with tempfile.TemporaryDirectory() as tmp:
                out = None if setting == "api" else Path(tmp) / "eval"
                t0, c0 = time.perf_counter(), time.process_time()
                evaluate(gen, ref, "hist", out, progress=False,
                         plots="none" if setting == "api" else setting)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                size = (out / "report.html").stat().st_size / 1e6 if out else 0.0
                n_png = len(list((out / "plots").glob("*.png"))) if out else 0
            base_cpu = cpu if setting == "api" else base_cpu
            label = "computation only (API, no output)" if setting == "api" else \
                f"`--plots {setting}`"
            rows.append([ds, label, f"{wall:.2f}", f"{cpu:.2f}", f"{cpu / base_cpu:.2f}",
                         f"{size:.2f}" if out else "–", n_png])
            print(" | ".join(map(str, rows[-1])), flush=True)
    md = "\n".join([
        "## Evaluation pictures: `evaluate -m hist` with and without plots "
        "(`benchmarks/evaluate.py --plots-section`)",
        "",
        f"Machine: {machine()}. Shared with other jobs (load average 4-6 on 2 cores while "
        "this ran): wall times are upper bounds; CPU seconds (`time.process_time` of the "
        "process) are the steadier measure, and the ratio uses them.",
        "",
        f"{showers:,} generated vs {showers:,} reference showers per dataset (reference "
        "simulator, seeds 2 and 1, simulated beforehand and read from HDF5). Every row runs "
        "features, all histograms and separation powers; the rows differ only in pictures. "
        "`summary` (the default) puts every histogram into report.html as inline SVG and each "
        "average shower as one PNG mosaic; `all` draws the matplotlib PNGs of before "
        "(histograms with ratio panels, polar average showers) into report.html and plots/.",
        "",
        table(["dataset", "pictures", "wall s", "CPU s", "CPU / computation",
               "report.html MB", "PNG files"], rows),
        "",
        f"Reproduce: `python benchmarks/evaluate.py --plots-section --showers {showers}`.",
    ])
    print(md)
    if write:
        update_section("evaluate_plots", md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--showers", type=int, default=121_000, help="showers per sample")
    ap.add_argument("--epochs", type=int, default=1, help="classifier epochs actually run")
    ap.add_argument("--width", type=int, default=2048, help="classifier width")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--plots-section", action="store_true",
                    help="time -m hist with and without pictures on datasets 1, 2, 3 instead")
    ap.add_argument("--datasets", default="1-photons,2,3",
                    help="datasets of --plots-section (comma-separated)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.plots_section:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        plots_section(args.showers if args.showers != 121_000 else 3000,
                      args.datasets.split(","), not args.no_report)
        return
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
