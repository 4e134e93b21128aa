"""bfloat16 matmuls for sampling: how much faster, and whether anyone can tell.

``caloforge generate --precision bfloat16`` (:func:`caloforge.generation.precision_context`)
runs the linear layers through ``torch.autocast`` in bfloat16 and keeps the splines, the pre-
and postprocessing in float32. This script measures both sides of that trade in one run:

* **Speed** (dataset-1 photons, untrained models at their ``configs/`` sizes, one torch
  thread, batch ``--batch``): ms per shower in float32 and in bfloat16 for each one-pass
  sampler and for its same-size zuko baseline (``benchmarks/sampling.py``'s builders), the
  two precisions alternated and every row interleaved with the others in ``--rounds`` rounds
  (median of the rounds), each sampler's own matmuls replayed as plain GEMMs of the same
  shapes (the share of its time they take), plus a plain GEMM of the
  MLP lower bound's shape in both dtypes: the machine's matmul peak, against which each
  sampler's matmul FLOP rate is stated.
* **Accuracy**: a CaloINN trained for ``--minutes`` on simulator photons samples the same
  energies from the same noise in both precisions; reported are the per-shower differences
  (E_tot, voxels) and the strong classifiers' AUCs (boosted trees on voxels and on high-level
  features, ``--n`` showers per side) of float32 vs bfloat16 samples and of each against
  held-out simulator showers.

Usage::

    python benchmarks/precision.py [--batch 1000] [--rounds 3] [--minutes 8] [--n 5000]
    python benchmarks/precision.py --smoke --no-write   # toy sizes, < 2 minutes

Writes the ``precision`` section of BENCHMARKS.md; results cached in
``benchmarks/out/precision/results.json`` (``--render`` redraws the table from it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, table, update_section  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "precision"
PRECISIONS = ("float32", "bfloat16")


def _rows() -> dict[str, tuple[str, object, str | None]]:
    """key -> (label, builder, key of the row it is compared with)."""
    import sampling as s

    return {
        "caloinn": ("CaloINN (RQS coupling)", s.build_caloinn, "zuko-coupling"),
        "zuko-coupling": ("baseline: zuko RQS coupling flow, CaloINN size",
                          s.build_zuko_coupling, None),
        "student": ("CaloFlow student (IAF)", s.build_student, "zuko-iaf"),
        "zuko-iaf": ("baseline: zuko MAF in its one-pass direction, student size",
                     s.build_zuko_iaf, None),
        "caloman": ("CaloMan, zero-inflated decoder", s.build_caloman, None),
    }


def _timed(fn, batch: int, precision: str, min_time: float) -> float:
    import sampling as s

    from caloforge.generation import precision_context

    with precision_context(torch.device("cpu"), precision):
        return s.time_call(fn, batch, torch.device("cpu"), min_time) / batch


def gemm_peak(width: int, batch: int, rounds: int) -> dict[str, float]:
    """GFLOP/s of ``(batch, width) @ (width, width)`` in each dtype (fastest of ``rounds``)."""
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, w = torch.randn(batch, width, dtype=dtype), torch.randn(width, width, dtype=dtype)
        a @ w
        best = min(_clock(lambda a=a, w=w: a @ w) for _ in range(rounds))
        out[name] = 2 * batch * width * width / best / 1e9
    return out


def _clock(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def matmul_shapes(fn, batch: int, precision: str) -> list[tuple[int, int, int, str]]:
    """``(M, K, N, dtype)`` of every matrix product of one call of ``fn`` on ``batch`` showers
    (aten ``linear`` / ``mm`` / ``addmm`` / ``bmm`` / ``matmul`` as dispatched, so autocast's
    dtype is the one run)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from caloforge.generation import precision_context

    shapes: list[tuple[int, int, int, str]] = []
    aten = torch.ops.aten

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            dt = None
            if func in (aten.mm.default, aten.bmm.default, aten.matmul.default):
                a, b = args[0], args[1]
                m, k, n, reps = a.shape[-2], a.shape[-1], b.shape[-1], a.numel() // (
                    a.shape[-2] * a.shape[-1]) if a.ndim > 2 else 1
                dt = a.dtype
            elif func is aten.addmm.default:
                a, b = args[1], args[2]
                m, k, n, reps, dt = a.shape[0], a.shape[1], b.shape[1], 1, a.dtype
            elif func is aten.linear.default:  # what inference mode dispatches
                a, w = args[0], args[1]
                m, k, n, reps, dt = a.numel() // a.shape[-1], a.shape[-1], w.shape[0], 1, \
                    torch.promote_types(a.dtype, w.dtype)
            if dt is not None:
                shapes.extend([(int(m), int(k), int(n), str(dt).replace("torch.", ""))] * reps)
            return func(*args, **(kwargs or {}))

    e = torch.full((batch,), 65536.0, dtype=torch.float64)
    with torch.inference_mode(), precision_context(torch.device("cpu"), precision), Record():
        fn(e)
    return shapes


def same_shape_gemm(shapes: list[tuple[int, int, int, str]], min_time: float) -> float:
    """Seconds of plain ``torch.mm`` calls of exactly ``shapes`` (fastest pass over them of
    those made in ``min_time``): the matmul time of a sampler if its matmuls alone ran."""
    mats = {}
    for m, k, n, dt in set(shapes):
        dtype = getattr(torch, dt)
        mats[(m, k, n, dt)] = (torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype))
    calls = [mats[s] for s in shapes]

    def run() -> None:
        for a, b in calls:
            torch.mm(a, b)

    run()
    best, t0 = float("inf"), time.perf_counter()
    while True:
        best = min(best, _clock(run))
        if time.perf_counter() - t0 >= min_time:
            return best


def speed(args: argparse.Namespace) -> dict:
    """Every row built first, then ``--rounds`` rounds in which each row (model beside its
    baseline) is timed in both precisions and its matmuls are timed alone as plain GEMMs of
    the same shapes: a change of the machine's load hits a model and its baseline alike.
    Per row and precision the median over the rounds is reported (each round's figure is the
    fastest call of that round)."""
    import sampling as s

    res: dict = {"rows": {}, "batch": args.batch, "rounds": args.rounds,
                 "load": [os.getloadavg()[0]]}
    built = {}
    for key, (label, build, base) in _rows().items():
        if args.smoke and key in ("student", "zuko-iaf"):
            continue
        fn, note = build(torch.device("cpu"))
        shapes = {p: matmul_shapes(fn, args.batch, p) for p in PRECISIONS}
        built[key] = fn
        res["rows"][key] = {"label": label, "note": note, "base": base,
                            "gflop": s.count_gflop(fn, torch.device("cpu")),
                            "runs": {p: [] for p in PRECISIONS},
                            "gemm_runs": {p: [] for p in PRECISIONS}, "shapes": shapes}
    for row in res["rows"].values():  # the recorded shapes must carry the counted FLOPs
        flop = sum(2 * m * k * n for m, k, n, _ in row["shapes"]["float32"]) / args.batch / 1e9
        print(f"{row['label']}: {len(row['shapes']['float32'])} matmuls, {flop:.4f} GFLOP/shower "
              f"(flop counter: {row['gflop']:.4f})", flush=True)
    peaks: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(args.rounds):
        for p, v in gemm_peak(args.gemm_width, args.batch, 3).items():
            peaks[p].append(v)
        for key, fn in built.items():
            row = res["rows"][key]
            for p in PRECISIONS:
                row["runs"][p].append(_timed(fn, args.batch, p, args.min_time))
                row["gemm_runs"][p].append(same_shape_gemm(row["shapes"][p], args.min_time)
                                           / args.batch)
            print(f"round {r + 1} {row['label']}: " + ", ".join(
                f"{p} {1e3 * row['runs'][p][-1]:.3f} ms (its GEMMs alone "
                f"{1e3 * row['gemm_runs'][p][-1]:.3f})" for p in PRECISIONS), flush=True)
    for row in res["rows"].values():
        row["s_per_shower"] = {p: float(np.median(v)) for p, v in row["runs"].items()}
        row["gemm_s_per_shower"] = {p: float(np.median(v)) for p, v in row["gemm_runs"].items()}
        row["shapes"] = {p: sorted(set(v)) for p, v in row["shapes"].items()}
    res["gemm_gflops"] = {p: float(np.median(v)) for p, v in peaks.items()}
    res["gemm_width"] = args.gemm_width
    res["load"].append(os.getloadavg()[0])
    return res


def _train_caloinn(data: Path, minutes: float, work: Path, smoke: bool):
    from caloforge.config import load_config
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    cfg = load_config(ROOT / "configs" / "caloinn" / "1-photons.yaml")
    cfg["training"] = {**cfg.get("training", {}), "epochs": 1 if smoke else 1000,
                       "time_limit": 60.0 * minutes, "progress": False, "device": "cpu",
                       "patience": None}
    if smoke:
        cfg["flow"] = {**cfg.get("flow", {}), "transforms": 2, "hidden": [32, 32]}
    model = model_class("caloinn")(Geometry.preset("1-photons"), cfg)
    model.fit(str(data), None, work / "caloinn", progress=False)
    return model.eval()


def accuracy(args: argparse.Namespace, work: Path) -> dict:
    from caloforge.data import ShowerSet, read_showers
    from caloforge.evaluation import evaluate
    from caloforge.generation import precision_context
    from caloforge.simulate import simulate_to_file

    n = args.n
    train, ref_path = work / "train.h5", work / "ref.h5"
    simulate_to_file(train, "1-photons", args.n_train, seed=11)
    simulate_to_file(ref_path, "1-photons", n, seed=12)
    t0 = time.perf_counter()
    model = _train_caloinn(train, args.minutes, work, args.smoke)
    trained_s = time.perf_counter() - t0
    ref = read_showers(ref_path)
    e = torch.as_tensor(ref.e_inc, dtype=torch.float64)
    samples = {}
    for p in PRECISIONS:
        torch.manual_seed(5)  # the same noise for both precisions
        with torch.inference_mode(), precision_context(torch.device("cpu"), p):
            samples[p] = torch.cat([model.sample(part) for part in e.split(1000)]
                                   ).float().numpy()
    a, b = samples["float32"], samples["bfloat16"]
    etot_a, etot_b = a.sum(1), b.sum(1)
    rel = np.abs(etot_b - etot_a) / np.maximum(etot_a, 1e-9)
    big = a > 1.0  # voxels above 1 MeV
    vrel = np.abs(b[big] - a[big]) / a[big]
    out = {"n": n, "n_train": args.n_train, "minutes": args.minutes,
           "trained_seconds": trained_s,
           "etot_rel_median": float(np.median(rel)), "etot_rel_p99": float(np.quantile(rel, .99)),
           "voxel_rel_median": float(np.median(vrel)) if len(vrel) else None,
           "voxel_rel_p99": float(np.quantile(vrel, .99)) if len(vrel) else None,
           "zero_flips": float(np.mean((a > 0) != (b > 0))), "auc": {}}
    modes = ("cls-gbdt-low", "cls-gbdt-high")
    pairs = {"bfloat16 vs float32": (b, a), "float32 vs simulator": (a, ref.showers),
             "bfloat16 vs simulator": (b, ref.showers)}
    for name, (x, y) in pairs.items():
        m = evaluate(ShowerSet(ref.e_inc, x, ref.geometry), ShowerSet(ref.e_inc, y, ref.geometry),
                     modes=modes, seed=0, progress=False)
        out["auc"][name] = {t: (m.get(f"auc_{t}"), m.get(f"auc_{t}_err"), m.get(f"reading_{t}"))
                            for t in ("gbdt_low", "gbdt_high")}
        print(name, out["auc"][name], flush=True)
    return out


def render(res: dict) -> str:
    sp, ac = res["speed"], res["accuracy"]
    rows = []
    peak = sp["gemm_gflops"]
    for r in sp["rows"].values():
        t = r["s_per_shower"]
        base = sp["rows"].get(r["base"]) if r["base"] else None
        cells = [r["label"]]
        cells += [f"{1e3 * t[p]:.3f}" for p in PRECISIONS]
        cells.append(f"{t['float32'] / t['bfloat16']:.2f}x")
        if base:
            bt = base["s_per_shower"]
            cells.append(f"{bt['float32'] / t['float32']:.2f}x / "
                         f"{bt['float32'] / t['bfloat16']:.2f}x / "
                         f"{bt['bfloat16'] / t['bfloat16']:.2f}x")
        else:
            cells.append("-")
        rate = {p: r["gflop"] / t[p] for p in PRECISIONS}
        cells.append(" / ".join(f"{100 * rate[p] / peak[p]:.0f} %" for p in PRECISIONS))
        if "gemm_s_per_shower" in r:  # runs before the same-shape GEMM column have none
            g = r["gemm_s_per_shower"]
            cells.append(" / ".join(f"{100 * g[p] / t[p]:.0f} %" for p in PRECISIONS))
        else:
            cells.append("-")
        cells.append(f"{r['gflop']:.4f}")
        rows.append(cells)
    speed_table = table(
        ["sampler", f"float32 ms/shower (bs {sp['batch']:,})", "bfloat16 ms/shower",
         "bf16 speed-up", "vs zuko baseline: fp32/fp32, bf16/fp32, bf16/bf16",
         "matmul FLOP rate, % of GEMM peak (fp32 / bf16)",
         "its matmuls as plain GEMMs of the same shapes, % of its time (fp32 / bf16)",
         "GFLOP/shower"], rows)
    auc_rows = []
    for name, d in ac["auc"].items():
        auc_rows.append([name] + [f"{v[0]:.3f} ± {v[1]:.3f} ({v[2]})" if v[0] is not None
                                  else "-" for v in d.values()])
    auc_table = table(["pair", "cls-gbdt-low (voxels)", "cls-gbdt-high (features)"], auc_rows)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2g} %"

    return "\n".join([
        "## Precision: bfloat16 matmuls while sampling",
        "",
        f"{machine()}. `caloforge generate --precision bfloat16` runs the linear layers in "
        "bfloat16 through `torch.autocast` (float32 accumulation) and keeps splines, pre- and "
        "postprocessing in float32 (`benchmarks/precision.py`).",
        "",
        f"**Speed** (dataset-1 photons, untrained models at their `configs/` sizes, one torch "
        f"thread, batch {sp['batch']:,}; {_timing_note(sp)}). "
        "GEMM peak measured in the same rounds with a plain `(batch, w) @ (w, w)` of the MLP "
        f"lower bound's width w = {sp['gemm_width']:,} (median): {peak['float32']:.0f} GFLOP/s in "
        f"float32, {peak['bfloat16']:.0f} GFLOP/s in bfloat16. The rate column is each "
        "sampler's matmul FLOPs per shower (`torch.utils.flop_counter`) times showers per "
        "second, over that peak. The next column replays each sampler's own matrix products "
        "(every `linear`/`mm`/`addmm`/`bmm` of one call, recorded at this batch size with their "
        "dtypes) as plain `torch.mm` calls of the same shapes in the same rounds, and states "
        "their time as a share of the sampler's: the part of its time a perfect "
        "implementation of everything else could not remove. The zuko baselines are "
        "`benchmarks/sampling.py`'s (same job, same size); \"bf16/fp32\" compares caloforge "
        "in bfloat16 with the baseline as a zuko user runs it, \"bf16/bf16\" with the "
        "baseline under the same autocast.",
        "",
        speed_table,
        "",
        *_target_lines(sp),
        "",
        f"**Accuracy**: a CaloINN (`configs/caloinn/1-photons.yaml`) trained for "
        f"{ac['minutes']:g} minutes ({ac['trained_seconds'] / 60:.1f} min measured) on "
        f"{ac['n_train']:,} simulator photons samples the energies of {ac['n']:,} held-out "
        "simulator showers from the same noise in both precisions. Per shower, bfloat16 "
        f"moves E_tot by a median {pct(ac['etot_rel_median'])} (99th percentile "
        f"{pct(ac['etot_rel_p99'])}); voxels above 1 MeV by a median "
        f"{pct(ac['voxel_rel_median'])} (99th percentile {pct(ac['voxel_rel_p99'])}); "
        f"{pct(ac['zero_flips'])} of the voxels change between zero and non-zero. Boosted-tree "
        f"AUCs, {ac['n']:,} showers per side (these judges see a 2 % voxel scale at 5,000 per "
        "side, § Judge power):",
        "",
        auc_table,
        "",
    ])


#: Issue 15 item 2: each one-pass sampler this many times faster than its zuko baseline, and
#: its matmul FLOP rate at least this share of the measured matmul throughput.
TARGET_SPEEDUP, TARGET_SHARE = 1.5, 0.60


def _timing_note(sp: dict) -> str:
    if "rounds" not in sp:  # an older cached run
        return "float32 and bfloat16 alternated, fastest call kept"
    load = sp.get("load", [float("nan")] * 2)
    return (f"all rows built first, then {sp['rounds']} rounds each timing every row (a model "
            "beside its baseline) in float32 and bfloat16 and its matmuls alone; per figure "
            "the median over the rounds of each round's fastest call; 1-min load average "
            f"{load[0]:.1f} at the start, {load[-1]:.1f} at the end on {os.cpu_count()} "
            "shared cores, so absolute times are inflated and only ratios within the run "
            "count")


def _target_lines(sp: dict) -> list[str]:
    """Issue 15 item 2, float32: speed-up over the zuko baseline and matmul share."""
    lines = [f"**Target check** (float32, batch {sp['batch']:,}): every one-pass sampler "
             f">= {TARGET_SPEEDUP}x its zuko baseline and its matmul FLOP rate >= "
             f"{100 * TARGET_SHARE:.0f} % of the measured matmul throughput.", ""]
    peak = sp["gemm_gflops"]["float32"]
    for r in sp["rows"].values():
        if not r["base"] or r["base"] not in sp["rows"]:
            continue
        t = r["s_per_shower"]["float32"]
        ratio = sp["rows"][r["base"]]["s_per_shower"]["float32"] / t
        share = r["gflop"] / t / peak
        parts = [f"{ratio:.2f}x its baseline ({'met' if ratio >= TARGET_SPEEDUP else 'not met'})",
                 f"{100 * share:.0f} % of the square-GEMM peak "
                 f"({'met' if share >= TARGET_SHARE else 'not met'})"]
        if "gemm_s_per_shower" in r:
            same = r["gemm_s_per_shower"]["float32"] / t
            parts.append(f"{100 * same:.0f} % against its own GEMM shapes "
                         f"({'met' if same >= TARGET_SHARE else 'not met'})")
        lines.append(f"* {r['label']}: " + "; ".join(parts) + ".")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (speed)")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per timing")
    ap.add_argument("--gemm-width", type=int, default=2890,
                    help="GEMM width of the peak measurement (default: CaloINN's MLP bound)")
    ap.add_argument("--minutes", type=float, default=8.0, help="CaloINN training budget")
    ap.add_argument("--n-train", type=int, default=20_000)
    ap.add_argument("--n", type=int, default=5_000, help="showers per side of each AUC")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="toy sizes (< 2 minutes)")
    ap.add_argument("--only", choices=("speed", "accuracy"), default=None,
                    help="re-measure one part, keep the other from the cached results")
    ap.add_argument("--render", action="store_true", help="redraw from the cached results")
    ap.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = OUT / ("results_smoke.json" if args.smoke else "results.json")
    if args.render:
        res = json.loads(cache.read_text())
    else:
        if args.smoke:
            args.batch, args.rounds, args.min_time = 50, 1, 0.0
            args.gemm_width, args.minutes, args.n_train, args.n = 256, 0.05, 500, 400
        res = json.loads(cache.read_text()) if args.only and cache.exists() else {}
        with tempfile.TemporaryDirectory(prefix="caloforge-precision-") as tmp:
            if args.only in (None, "speed"):
                res["speed"] = speed(args)
            if args.only in (None, "accuracy"):
                res["accuracy"] = accuracy(args, Path(tmp))
        OUT.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(res, indent=1))
    md = render(res)
    if args.no_write:
        print(md)
    else:
        update_section("precision", md)
        print("wrote the precision section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
