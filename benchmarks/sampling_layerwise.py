"""Sampling speed on datasets 2 and 3: ms per shower of the layer-by-layer flows (iCaloFlow
teacher and student, L2LFlows conv and MAF), CaloMan and VAE+INN at batch 1, 100, 1,000 and
10,000, with one and two torch threads, side by side in one run, beside the CaloChallenge's
own figures for the same models (issue 12 item 6, issue 13 item 5).

Rows (:data:`ROWS`): each model at its ``-cpu`` recipe size and at its full recipe size
(``configs/<model>/{2,3}[-cpu].yaml``) where that recipe exists and fits in memory. The
iCaloFlow teacher is timed twice: with the textbook MAF inverse (a whole MADE pass per voxel
and block, as nflows and zuko sample) and with caloforge's incremental inverse. The models
are **untrained** (built from the recipe, statistics at their defaults): sampling cost does
not depend on the weights.

Timing: :func:`sampling.measure_row` (``torch.inference_mode``, a warm-up call, the fastest of
repeated calls over ``--min-time`` s; a measurement projected from the previous batch size to
take over ``--budget`` s is skipped, and so is everything once the run has spent
``--total-budget`` s). A batch whose projected memory (4 bytes x voxels x batch x
:data:`MEMORY_FACTOR`, plus the weights) exceeds ``--memory-gb`` is skipped; every skip is
shown in the table with its reason. A full-size model whose weights alone exceed a third of
``--memory-gb`` is not timed (counted on the meta device before building where the
constructor allows it), said so.

Usage::

    python benchmarks/sampling.py --datasets 2,3                  # both datasets, all rows
    python benchmarks/sampling.py --datasets 2 --scales cpu --threads-list 1 --sizes 1,100
    python benchmarks/sampling.py --datasets 2,3 --render-only    # section from the cache

Writes ``benchmarks/out/sampling/layerwise-DEVICE.json`` and the ``sampling_layerwise`` section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, table, update_section  # noqa: E402
from sampling import fmt_ms, release_memory, time_call  # noqa: E402

CHALLENGE_CSV = Path(os.environ.get("CALOCHALLENGE_RESULTS",
                                    ROOT.parent / "shared" / "calochallenge" / "results"
                                    / "final_results_scalars.csv"))
#: key -> (label, registry name, recipe under configs/ with {d} = dataset and {s} = "-cpu" or
#: "", MAF solver, "compile" (sampled through ``model.compiled_sampler()``, as ``caloforge
#: generate --compile`` does) or None, CaloChallenge model names of the same model)
ROWS: dict[str, tuple[str, str, str, str | None, tuple[str, ...]]] = {
    "icaloflow-student": ("iCaloFlow student (IAF)", "icaloflow-student",
                          "icaloflow/{d}-student{s}.yaml", None, ("iCaloFlow student",)),
    "icaloflow-student-compiled": ("iCaloFlow student (IAF), splines compiled "
                                   "(`generate --compile`)", "icaloflow-student",
                                   "icaloflow/{d}-student{s}.yaml", "compile",
                                   ("iCaloFlow student",)),
    "l2lflows": ("L2LFlows, convolutional couplings", "l2lflows", "l2lflows/{d}{s}.yaml", None,
                 ("conv. L2LFlows",)),
    "l2lflows-maf": ("L2LFlows, MAF", "l2lflows", "l2lflows/{d}-maf{s}.yaml", None,
                     ("L2LFlows MAF",)),
    "caloman": ("CaloMan", "caloman", "caloman/{d}{s}.yaml", None, ()),
    "vae-inn": ("VAE+INN", "vae-inn", "vae-inn/{d}{s}.yaml", None, ("CaloVAE+INN",)),
    # the teachers last: they are the slowest by far
    "icaloflow": ("iCaloFlow teacher (MAF), caloforge incremental inverse", "icaloflow",
                  "icaloflow/{d}{s}.yaml", None, ("iCaloFlow teacher",)),
    "icaloflow-textbook": ("iCaloFlow teacher (MAF), textbook inverse", "icaloflow",
                           "icaloflow/{d}{s}.yaml", "full", ("iCaloFlow teacher",)),
}
#: The MAF teacher samples voxel by voxel (6,480 x blocks sequential steps on dataset 2,
#: 40,500 x blocks on dataset 3): it is timed at these batch sizes only, one thread, and
#: the per-shower time at a smaller batch is an upper bound for a larger one.
TEACHER_SIZES = {"2": (1000,), "3": (100,)}
TEACHER_ROWS = ("icaloflow", "icaloflow-textbook")
#: Bytes per output value of a sampling call at its peak, in multiples of the float32 output
#: (the output, its float64 copy and the postprocessing temporaries).
MEMORY_FACTOR = 4
SIZES = (1, 100, 1000, 10_000)
#: Issue targets.
TARGET_BS = 1000
STUDENT_VS_TEACHER = 100  # student >= 100x faster than the textbook MAF teacher at bs 1000
DS3_CPU_MS = {"icaloflow-student": 446.304, "l2lflows": 428.684}  # challenge CPU, bs 10k
CALOMAN_MS = {"2": 0.5, "3": 2.0}  # CaloMan at bs 1000 on 2 cores
CALOMAN_VS_STUDENT = 10


def measure(fn, sizes: list[int], device: torch.device, min_time: float, budget: float,
            cpu: dict[int, float] | None = None, warmup: int = 0) -> dict[int, float | str]:
    """Seconds per shower at each batch size (or why not measured). The first call of each
    size is timed (it is also the warm-up); where it took over a quarter of ``budget`` it is
    the measurement (marked in the log), else the fastest of repeated calls over
    ``min_time`` s. A size whose time projected from the previous one exceeds ``budget`` is
    skipped (linear projection from batches >= 100, at most 10x from smaller ones). The
    target batch size :data:`TARGET_BS` is measured first. ``cpu`` receives the process CPU
    seconds per shower of each size's first call (on a shared machine, with one thread, close
    to the wall time the call would take on an idle core). ``warmup`` > 0 (a compiled
    sampler, one graph per pass shape): an untimed call of min(b, ``warmup``) showers before
    each size, which compiles the size's pass shape outside the timing."""
    out: dict[int, float | str] = {}
    done: dict[int, float] = {}  # batch -> seconds per shower
    # the target size first, then the small batches, then the large ones
    for b in sorted(sizes, key=lambda b: (b != TARGET_BS, b)):
        below = [m for m in done if m < b]
        projected = 0.0
        if below:  # linear from a batch >= 100; from a smaller one (mostly the per-call cost
            ref = max(below)  # of 45 sequential layers) at most 10x its call
            projected = done[ref] * (b if ref >= 100 else ref * min(b / ref, 10))
        if projected > budget:
            out[b] = f"time: projected {projected:.0f} s per call > {budget:.0f} s budget"
            print(f"    bs {b}: skipped ({out[b]})", flush=True)
            continue
        e = torch.full((b,), 65536.0, dtype=torch.float64, device=device)
        if warmup:
            with torch.inference_mode():
                fn(e[:min(b, warmup)])
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            fn(e)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        first = time.perf_counter() - t0
        if cpu is not None:
            cpu[b] = (time.process_time() - c0) / b
        if first > budget / 4:
            best = first
            print(f"    bs {b}: one call {first:.1f} s", flush=True)
        else:
            best = min(first, time_call(fn, b, device, min_time, warmup=False, min_calls=2))
        done[b] = out[b] = per = best / b
        print(f"    bs {b}: {1e3 * per:.4g} ms/shower", flush=True)
    return out


def recipe_path(key: str, dataset: str, scale: str) -> Path:
    return ROOT / "configs" / ROWS[key][2].format(d=dataset, s="-cpu" if scale == "cpu" else "")


def challenge_figures(path: Path = CHALLENGE_CSV) -> dict[tuple[str, str], dict[str, float]]:
    """(dataset "2"/"3", challenge model name) -> {"cpu 1": ms, ..., "gpu 10000": ms} from the
    CaloChallenge final-results table (ms per shower at batch 1/100/10,000)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    if not path.exists():
        return out
    with open(path) as fh:
        for r in csv.DictReader(fh):
            if r["dataset"] not in ("ds2", "ds3"):
                continue
            vals = {}
            for dev in ("CPU", "GPU"):
                for b in (1, 100, 10000):
                    v = r.get(f"time {dev} {b}", "")
                    if v:
                        vals[f"{dev.lower()} {b}"] = float(v)
            out[(r["dataset"][2:], r["model"])] = vals
    return out


def meta_params(model_name: str, dataset: str, cfg: dict) -> int | None:
    """Weight count of the model built on the meta device (no memory); None if it cannot be
    built there."""
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    try:
        with torch.device("meta"):
            model = model_class(model_name)(Geometry.preset(dataset), cfg)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - some constructors compute on real tensors
        return None


def build(key: str, dataset: str, scale: str, device: torch.device, memory_gb: float):
    """(sampler, info dict) of one row, or (None, reason)."""
    from caloforge.config import load_config
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    label, name, _, solver, _ = ROWS[key]
    path = recipe_path(key, dataset, scale)
    if not path.exists():
        return None, f"no recipe {path.relative_to(ROOT)}"
    cfg = load_config(path)
    n_meta = meta_params(name, dataset, cfg)
    if n_meta is not None and 4 * n_meta > memory_gb * 2**30 / 3:
        return None, (f"not built: {n_meta / 1e6:.0f} M weights = {4 * n_meta / 2**30:.1f} GiB "
                      f"> a third of the {memory_gb:g} GiB allowance")
    torch.manual_seed(0)
    model = model_class(name)(Geometry.preset(dataset), cfg).to(device).eval()
    if hasattr(model, "adopt_teacher"):  # a student: its flows follow its teacher's recipe
        teacher_path = ROOT / "configs" / path.parent.name / path.name.replace("-student", "")
        teacher = model_class(name.replace("-student", ""))(
            Geometry.preset(dataset), load_config(teacher_path)).to(device).eval()
        model.adopt_teacher(teacher)
        model.eval()
        del teacher
    n = sum(p.numel() for p in model.parameters())
    if 4 * n > memory_gb * 2**30 / 3:
        return None, (f"not timed: {n / 1e6:.0f} M weights = {4 * n / 2**30:.1f} GiB > a third "
                      f"of the {memory_gb:g} GiB allowance")
    chunk = getattr(model, "sampling_cfg", {}).get("batch_size")
    if solver == "compile":
        sampler = model.compiled_sampler()

        def sample_compiled(e_inc: torch.Tensor) -> torch.Tensor:
            return sampler(e_inc)

        return sample_compiled, {"params": n, "recipe": str(path.relative_to(ROOT)),
                                 "internal_batch": chunk, "warmup": chunk or 10_000}
    if solver is not None:
        solvers = [m for m in model.modules() if hasattr(m, "set_solver")]
        if not solvers:
            return None, "the model has no MAF whose inverse can be switched"
        for m in solvers:
            m.set_solver(solver)

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        return model.sample(e_inc)

    return sample, {"params": n, "recipe": str(path.relative_to(ROOT)), "internal_batch": chunk}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="2,3")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma list of " + ", ".join(ROWS))
    ap.add_argument("--scales", default="cpu,full", help="recipe sizes: cpu, full")
    ap.add_argument("--threads-list", default="1,2", help="torch thread counts")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--budget", type=float, default=120.0,
                    help="skip a measurement projected to take longer (seconds)")
    ap.add_argument("--total-budget", type=float, default=3600.0,
                    help="skip every measurement once the run has taken this long (seconds)")
    ap.add_argument("--memory-gb", type=float, default=2.5,
                    help="skip a batch projected to need more memory (GiB)")
    ap.add_argument("--teacher-all", action="store_true",
                    help="time the MAF teacher rows at every size and thread count too")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the section from benchmarks/out/sampling/layerwise-DEVICE.json")
    ap.add_argument("--output", default=None, help="results JSON (default: see above)")
    ap.add_argument("--note", action="append", default=[],
                    help="a line for the section (e.g. why a thread count was left out)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the rows already timed in the output JSON (same dataset, model "
                    "and size), time only the others")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.output) if args.output else (
        ROOT / "benchmarks" / "out" / "sampling" / f"layerwise-{device.type}.json")
    if args.render_only:
        return finish(json.loads(out.read_text()), args)

    datasets = [d for d in args.datasets.split(",") if d]
    bad = [d for d in datasets if d not in ("2", "3")] + [
        r for r in args.rows.split(",") if r and r not in ROWS] + [
        s for s in args.scales.split(",") if s and s not in ("cpu", "full")]
    if bad:
        raise SystemExit(f"--datasets/--rows/--scales: unknown {', '.join(bad)}")
    sizes = [int(b) for b in args.sizes.split(",")]
    threads = [int(t) for t in args.threads_list.split(",")]
    print(machine(), flush=True)
    t_start = time.perf_counter()
    run = {"machine": machine(), "device": str(device), "load": [os.getloadavg()[0]],
           "sizes": sizes, "threads": threads, "budget": args.budget,
           "total_budget": args.total_budget, "memory_gb": args.memory_gb,
           "min_time": args.min_time, "rows": [], "notes": args.note}
    kept = {}
    if args.keep and out.exists():
        old = json.loads(out.read_text())
        kept = {(r["dataset"], r["key"], r["scale"]): r for r in old["rows"] if "t" in r}
        run["load"] = old["load"][:1] + run["load"]
        run["notes"] = old.get("notes", []) + [n for n in args.note
                                               if n not in old.get("notes", [])]
    keys = [r for r in args.rows.split(",") if r]
    scales = [s for s in args.scales.split(",") if s]
    # measuring order: the -cpu sizes before the full ones, the teachers last (slowest)
    plan = sorted(((d, k, sc) for d in datasets for k in keys for sc in scales),
                  key=lambda x: (x[1] in TEACHER_ROWS, scales.index(x[2]), datasets.index(x[0]),
                                 list(ROWS).index(x[1])))
    # --keep: the rows timed before that this run's plan does not cover stay in the file
    planned = set(plan)
    run["rows"] = [r for key, r in kept.items() if key not in planned]
    for d, key, scale in plan:
        n_vox = 6480 if d == "2" else 40500
        rec = {"dataset": d, "key": key, "scale": scale, "label": ROWS[key][0]}
        if (d, key, scale) in kept:
            run["rows"].append(kept[(d, key, scale)])
            continue
        run["rows"].append(rec)
        print(f"DS{d} {key} ({scale}):", flush=True)
        if time.perf_counter() - t_start > args.total_budget:
            rec["skipped"] = f"not timed: the run's {args.total_budget:.0f} s budget was spent"
            continue
        try:
            fn, info = build(key, d, scale, device, args.memory_gb)
        except Exception as exc:  # noqa: BLE001 - a model under construction
            fn, info = None, f"failed to build ({type(exc).__name__}: {exc})"[:300]
        if fn is None:
            rec["skipped"] = info
            print(f"  skipped: {info}", flush=True)
            continue
        warmup = info.pop("warmup", 0)
        rec.update(info)
        weights = 4 * info["params"]
        row_sizes = (list(TEACHER_SIZES[d]) if key in TEACHER_ROWS and
                     not args.teacher_all else sizes)
        row_threads = threads[:1] if key in TEACHER_ROWS and not args.teacher_all \
            else threads
        for t in row_threads:
            torch.set_num_threads(t)
            rec.setdefault("t", {})[str(t)] = timing = {}
            fits = []
            for b in sizes:
                if b not in row_sizes:
                    timing[str(b)] = ("teacher: timed at bs "
                                      f"{', '.join(map(str, row_sizes))}, "
                                      f"{row_threads[0]} thread only")
                    continue
                need = MEMORY_FACTOR * 4 * n_vox * b + weights
                if time.perf_counter() - t_start > args.total_budget:
                    timing[str(b)] = f"run budget of {args.total_budget:.0f} s spent"
                elif need > args.memory_gb * 2**30:
                    timing[str(b)] = (f"memory: ~{need / 2**30:.1f} GiB projected > "
                                      f"{args.memory_gb:g} GiB")
                else:
                    fits.append(b)
            print(f"  {t} thread(s):", flush=True)
            cpu: dict[int, float] = {}
            got = measure(fn, fits, device, args.min_time, args.budget, cpu, warmup)
            timing.update({str(b): v for b, v in got.items()})
            rec.setdefault("cpu", {})[str(t)] = {str(b): v for b, v in cpu.items()}
        del fn
        release_memory()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(run, indent=1))
    torch.set_num_threads(max(threads))
    run["load"].append(os.getloadavg()[0])
    run["wall_s"] = time.perf_counter() - t_start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=1))
    return finish(run, args)


# --------------------------------------------------------------------------------------------
# rendering


def _ms(v: object) -> str:
    return fmt_ms(v) if isinstance(v, int | float) else "-"


def _get(run: dict, d: str, key: str, scale: str, threads: int, b: int) -> float | None:
    for r in run["rows"]:
        if (r["dataset"], r["key"], r["scale"]) == (d, key, scale):
            v = (r.get("t") or {}).get(str(threads), {}).get(str(b))
            return v if isinstance(v, int | float) else None
    return None


def target_lines(run: dict) -> list[str]:
    """The issue targets, each with the measured figures (or why it could not be checked)."""
    lines = ["**Targets** (issues 12 and 13), per recipe size:", ""]
    for d in sorted({r["dataset"] for r in run["rows"]}):
        for scale in ("cpu", "full"):
            def at(key: str, threads: int, b: int = 1000, d: str = d, scale: str = scale
                   ) -> float | None:
                return _get(run, d, key, scale, threads, b)

            def two(key: str, at=at) -> tuple[float | None, str]:
                """The faster of the 1- and 2-thread figures at bs 1,000 (2 cores may run
                either), and which it is."""
                got = [(v, f"{t} thread{'s' if t > 1 else ''}") for t in (1, 2)
                       if (v := at(key, t)) is not None]
                return min(got) if got else (None, "")

            where = f"DS{d}, {scale} size"
            eager, comp = at("icaloflow-student", 1), at("icaloflow-student-compiled", 1)
            stu = min(v for v in (eager, comp, float("inf")) if v)
            stu = None if stu == float("inf") else stu
            which = ("eager" if stu == eager else "splines compiled") if stu else ""
            tb, inc = at("icaloflow-textbook", 1), at("icaloflow", 1)
            if stu and (tb or inc):
                parts = []
                if tb:
                    r = tb / stu
                    parts.append(f"{r:,.0f}x the textbook MAF teacher "
                                 f"({'met' if r >= STUDENT_VS_TEACHER else 'not met'})")
                if inc:
                    parts.append(f"{inc / stu:,.1f}x the incremental teacher")
                other = ""
                if eager and comp:
                    other = (f" (eager {_ms(eager)}, splines compiled {_ms(comp)} ms/shower: "
                             f"{eager / comp:.2f}x)")
                lines.append(f"* {where}: student ({which}) vs teacher at bs 1,000, 1 thread "
                             f"(target >= {STUDENT_VS_TEACHER}x the textbook teacher): "
                             + "; ".join(parts) + other + ".")
            if d == "3":
                for key, ref in DS3_CPU_MS.items():
                    v, how = two(key)
                    if v is not None:
                        ok = 1e3 * v < ref
                        lines.append(f"* {where}: {ROWS[key][0]} at bs 1,000 on {how}: "
                                     f"{_ms(v)} ms/shower vs the challenge's CPU {ref:.0f} ms "
                                     f"({'met' if ok else 'not met'}).")
            cm, how = two("caloman")
            if cm is not None:
                ok = 1e3 * cm <= CALOMAN_MS[d]
                # each at its faster setting; the student eager or compiled, the faster
                got2 = [g for g in (two("icaloflow-student"), two("icaloflow-student-compiled"))
                        if g[0] is not None]
                stu2, how2 = min(got2) if got2 else (None, "")
                ratio = (f"; {stu2 / cm:,.1f}x faster than the student of the same run on "
                         f"{how2} ({'met' if stu2 / cm >= CALOMAN_VS_STUDENT else 'not met'}, "
                         f"target >= {CALOMAN_VS_STUDENT}x)" if stu2 else "")
                proc = next(((r.get("cpu") or {}).get("1", {}).get(str(TARGET_BS))
                             for r in run["rows"] if (r["dataset"], r["key"], r["scale"])
                             == (d, "caloman", scale)), None)
                cpu_s = (f"; process CPU time {_ms(proc)} ms/shower, "
                         f"{'within' if 1e3 * proc <= CALOMAN_MS[d] else 'above'} the target "
                         "(what an idle core would take, roughly)" if proc else "")
                lines.append(f"* {where}: CaloMan at bs 1,000 on {how}: {_ms(cm)} ms/shower "
                             f"wall (target <= {CALOMAN_MS[d]:g} ms: "
                             f"{'met' if ok else 'not met'}{cpu_s})"
                             f"{ratio}.")
    if len(lines) == 2:
        lines.append("* none measurable in this run (rows or batch sizes missing).")
    return lines


def render(run: dict) -> str:
    sizes = run["sizes"]
    threads = sorted({int(t) for r in run["rows"] for t in r.get("t", {})} | set(run["threads"]))
    ref = challenge_figures()
    header = ["dataset", "model", "size (weights)",
              *[f"{t} thr, bs {b:,}" for t in threads for b in sizes],
              "1 thr, bs 1,000: CPU time", "challenge CPU bs 1 / 100 / 10k",
              "challenge GPU bs 10k"]
    rows, skips = [], []
    for r in run["rows"]:
        name = f"{r['label']}"
        if "skipped" in r:
            skips.append(f"* DS{r['dataset']} {r['label']}, {r['scale']} size: {r['skipped']}")
            continue
        cells = []
        for t in threads:
            said = set()
            for b in sizes:
                v = (r.get("t") or {}).get(str(t), {}).get(str(b))
                v = v if v is not None else (f"{t} thread(s) not in this run's "
                                             "--threads-list")
                cells.append(_ms(v))
                if isinstance(v, str) and v not in said:
                    said.add(v)
                    skips.append(f"* DS{r['dataset']} {r['label']} ({r['scale']} size), "
                                 f"{t} thread(s), bs {b:,}: {v}")
        figs = next((ref[(r["dataset"], m)] for m in ROWS[r["key"]][4]
                     if (r["dataset"], m) in ref), None)
        cpu = (" / ".join(_ms(figs.get(f"cpu {b}") and figs[f"cpu {b}"] / 1e3)
                          for b in (1, 100, 10000)) if figs else "no entry")
        gpu = _ms(figs.get("gpu 10000") and figs["gpu 10000"] / 1e3) if figs else "no entry"
        proc = (r.get("cpu") or {}).get("1", {}).get(str(TARGET_BS))
        rows.append([f"DS{r['dataset']}", name,
                     f"{r['scale']}: `{r['recipe']}` ({r['params'] / 1e6:.2f} M)", *cells,
                     _ms(proc), cpu, gpu])
    load = run["load"]
    md = [
        f"Sampling speed on datasets 2 and 3, ms per shower; measured on {run['machine']} "
        f"(device {run['device']}); 1-min load average {load[0]:.1f} at the start"
        + (f", {load[1]:.1f} at the end" if len(load) > 1 else "")
        + " (a load above the core count means the machine was shared with other jobs: "
        "absolute times are inflated and indicative only; one and two threads are "
        "measured back to back per row).",
        "",
        table(header, rows),
        "",
        "Models are **untrained**, built from their recipes at the `-cpu` twin's size and at "
        "the full recipe's size (the size column names the recipe and the weight count; "
        "sampling cost does not depend on the weights). End-to-end `model.sample` "
        "(all flows, decoders and postprocessing), inference mode, a warm-up call, the "
        f"fastest of repeated calls over {run['min_time']:g} s; a call of bs showers runs in "
        "passes of the recipe's `sampling.batch_size` where it has one. The \"splines "
        "compiled\" student row is the same student sampled through `model.compiled_sampler()` "
        "(what `caloforge generate --compile` runs): on a CPU its spline inversions run "
        "through `torch.compile`, its MADE matmuls stay eager; each batch size's pass shape is "
        "compiled by an untimed call before it is timed. The two teacher rows "
        "are one model: the textbook inverse runs the whole MADE once per voxel and block "
        "(as nflows and zuko sample a MAF), caloforge's incremental inverse updates the "
        "first hidden layer one column per voxel. \"-\": not measured, for the reason listed "
        f"below: projected over the {run['budget']:.0f} s per-measurement budget (teacher rows "
        "at large batches: fewer showers timed), over the "
        f"{run['memory_gb']:g} GiB memory allowance, or the run's "
        f"{run['total_budget']:.0f} s budget spent.",
        "",
        "CPU time: the process CPU seconds of the first one-thread call at bs 1,000 per "
        "shower; on a shared machine it is close to what the call takes on an idle core, "
        "while the wall times above include the waits for the shared cores.",
        "",
        "Challenge columns: **their** figures from `shared/calochallenge/results/"
        "final_results_scalars.csv` (the CaloChallenge's own hardware, batch 1 / 100 / "
        "10,000; not measured here; CaloMan has no dataset-2/3 entry there).",
        "",
        *target_lines(run),
    ]
    md += [f"* {n}" for n in run.get("notes", [])]
    if skips:
        md += ["", "Not measured:", "", *skips]
    return "\n".join(md)


def finish(run: dict, args: argparse.Namespace) -> int:
    text = render(run)
    print(text)
    if not args.no_write:
        title = "Sampling speed, datasets 2 and 3 (`benchmarks/sampling.py --datasets 2,3`)"
        if run["device"] != "cpu":
            title += f" ({run['device']}, GPU figures)"
        update_section("sampling_layerwise", f"## {title}\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
