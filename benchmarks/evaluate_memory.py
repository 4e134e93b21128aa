"""Peak memory of ``caloforge evaluate`` against N: the showers stay in their files.

For each N, the generated and the reference sample are simulated as two files each (N/2
showers per file, ``caloforge simulate``, gzip float32 as the official files), then

    caloforge evaluate -g g1.h5 g2.h5 -r r1.h5 r2.h5 -m hist,fpd,kpd,cls-high \\
        --epochs 1 --width 64 --threads T -o out

runs in a child process whose own peak RSS (``os.wait4``'s ``ru_maxrss``) and wall time are
recorded. The slope of peak RSS against N (MiB per 1,000 shower pairs, least squares) is the
number that matters: before issue 11 the showers were read whole and it was ~400 MiB per
1,000 pairs on dataset 3. The table goes into the ``evaluate_memory`` section of
BENCHMARKS.md.

Usage:
    python benchmarks/evaluate_memory.py [--dataset 3] [--n 10000 20000 40000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, run_measured, table, update_section  # noqa: E402

MIB = 2**20


def measure(args: list[str]) -> tuple[float, float]:
    """Run ``caloforge ARGS``; return (wall seconds, peak RSS of that process in MiB)."""
    wall, rss, code, _, err = run_measured(args)
    if code != 0:
        raise SystemExit(f"caloforge {' '.join(args)} failed ({code}): {err[-2000:]}")
    return wall, rss


def simulate(dataset: str, n: int, seed: int, path: Path, threads: int) -> None:
    """``caloforge simulate`` unless the file is already there."""
    if not path.exists():
        measure(["simulate", "--dataset", dataset, "-n", str(n), "--seed", str(seed),
                 "--threads", str(threads), "-o", str(path)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="3")
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 20_000, 40_000],
                    help="showers per side (each side is two files of N/2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="hist,fpd,kpd,cls-high",
                    help="evaluate modes (hist draws ~360 PNGs on datasets 2/3: minutes)")
    ap.add_argument("--min-steps", type=int, default=None,
                    help="the DNN's --min-steps (memory does not depend on it; time does)")
    ap.add_argument("--dir", type=Path, default=Path("bench_evaluate_memory"))
    ap.add_argument("--keep", action="store_true", help="keep the simulated files")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    n_vox = {"2": 6480, "3": 40500}.get(args.dataset, 0)
    rows, stages = [], []
    for n in args.n:
        half = n // 2
        files = {side: [args.dir / f"{side}{k}_{n}.h5" for k in (1, 2)] for side in "gr"}
        t0 = time.perf_counter()
        for s, side in enumerate("gr"):
            for k, path in enumerate(files[side]):
                simulate(args.dataset, half, 1000 * n + 10 * s + k, path, args.threads)
        sim_s = time.perf_counter() - t0
        out = args.dir / f"eval_{n}"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss = measure(["evaluate", "-g", *map(str, files["g"]), "-r", *map(str, files["r"]),
                             "-m", args.modes, "--epochs", "1", "--width", "64",
                             *(["--min-steps", str(args.min_steps)] if args.min_steps else []),
                             "--threads", str(args.threads), "--quiet", "-o", str(out)])
        left = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        gb = 2 * half * 2 * n_vox * 4 / 2**30
        rows.append((n, gb, rss, wall, sim_s, left))
        stages.append(json.loads((out / "metrics.json").read_text()).get("peak_rss_mib", {}))
        print(f"N={n}/side: peak RSS {rss:.0f} MiB, {wall:.0f} s (showers on disk: {gb:.2f} GiB "
              f"float32; scratch left: {left or 'none'})", flush=True)
        if not args.keep:
            for paths in files.values():
                for p in paths:
                    p.unlink(missing_ok=True)
    names = list(dict.fromkeys(k for st in stages for k in st))
    ns = np.array([r[0] for r in rows], dtype=float)
    rss = np.array([r[2] for r in rows])
    slope = float(np.polyfit(ns / 1000, rss, 1)[0]) if len(rows) > 1 else float("nan")
    spread = (rss.max() - rss.min()) / rss.min() * 100
    at_100k = rss[-1] + slope * (100 - ns[-1] / 1000)
    steps = f" --min-steps {args.min_steps}" if args.min_steps else ""
    md = [f"`caloforge evaluate -g g1.h5 g2.h5 -r r1.h5 r2.h5 -m {args.modes} "
          f"--epochs 1 --width 64{steps}` on dataset {args.dataset} (simulated, 2 files per "
          f"side, gzip "
          f"float32), peak RSS of the evaluate process (`ru_maxrss`). Measured on "
          f"{machine()}, shared with other jobs (load average {os.getloadavg()[1]:.1f} at the "
          f"end; wall times are loaded-machine times).", "",
          table(["showers per side", "voxel data read (float32)", "peak RSS", "wall"],
                [[f"{n:,}", f"{gb:.2f} GiB", f"{r:.0f} MiB", f"{w:.0f} s"]
                 for n, gb, r, w, _, _ in rows]), "",
          f"Peak RSS changes by {slope:.1f} MiB per 1,000 shower pairs (least squares; spread "
          f"{spread:.1f} % over the N measured), against ~400 MiB per 1,000 pairs when the "
          f"showers were read whole. Extrapolated (not measured) to 100k per side: "
          f"~{at_100k:.0f} MiB. The DNN's inputs, the high-level features and the FPD/KPD "
          f"vectors live in scratch files under the output directory, read batch by batch and "
          f"deleted at the end; scratch files left behind: "
          f"{sum(len(r[5]) for r in rows) or 'none'}.", "",
          "Peak RSS so far after each stage (MiB, `peak_rss_mib` of metrics.json; the stage "
          "that sets the peak is the first to reach the final value):", "",
          table(["showers per side", *names],
                [[f"{r[0]:,}", *(f"{st[k]:.0f}" if k in st else "-" for k in names)]
                 for r, st in zip(rows, stages, strict=True)])]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        update_section("evaluate_memory", "## Evaluation in bounded memory\n\n" + text)


if __name__ == "__main__":
    main()
