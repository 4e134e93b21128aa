"""Quality of the dataset-2/3 generators on simulator data after a wall-time budget, each beside
an untrained model of the same recipe (issue 12 item 7, issue 13 item 4).

Pipeline, all through the ``caloforge`` command line (one subprocess per step, so each step's
memory is its own):

1. ``caloforge simulate``: ``--n-train`` training showers (seed 1, official energy mix) and
   ``--n-test`` held-out reference showers (seed 2) of dataset 2 (or 3) with incident
   energies inside the training file's range (``--energy-range``: generate refuses to
   extrapolate), written to ``WORK/data``.
2. For every recipe (``--recipes``; default: the ``-cpu`` twins of iCaloFlow, L2LFlows conv
   and MAF, CaloMan and VAE+INN), ``caloforge train`` with a derived recipe that caps the
   training at ``--minutes`` wall-clock minutes: every stage gets ``time_limit`` = budget /
   number of stages (:class:`caloforge.training.TrainConfig`; the recipe's epochs are kept,
   so a stage may finish before its cap). The iCaloFlow student (``--student``) is trained
   with ``--teacher`` from the trained teacher's run, under the same budget.
3. The **untrained** twin of every recipe: the same recipe with ``time_limit: 0`` for every
   stage, i.e. the statistics (standardisers, ...) fitted on the same data and the networks
   as initialised (zero optimiser steps). The untrained student distils from the *trained*
   teacher (its own IAFs untouched).
4. ``caloforge generate`` at the reference file's incident energies, then ``caloforge
   evaluate`` of the generated against the reference showers with the same settings for every
   row (``--modes``; default: boosted trees on voxels and high-level features, the 3D ResNet,
   histograms for the mean separation power, FPD/KPD and PRDC). A mode that caloforge does
   not have is an error at the start, never a silently missing column.

Results are cached in ``benchmarks/out/layerwise_quality/ds{2,3}/results.json`` (one entry per
row, merged across runs, so ``--only`` reruns a few rows and ``--render-only`` rewrites the
BENCHMARKS.md section without retraining); the big files (data, runs, generated showers) live
under ``--scratch`` (default ``WORK``).

Usage::

    python benchmarks/layerwise_quality.py --n-train 10000 --n-test 2000 --minutes 4
    python benchmarks/layerwise_quality.py --dataset 3 --n-train 2000 --n-test 1000 --minutes 3
    python benchmarks/layerwise_quality.py --render-only          # section from the cache
    python benchmarks/layerwise_quality.py --smoke --no-write     # whole pipeline, toy size

Numbers from a shared CPU machine: the load is recorded with every row and printed in the
section; training budgets, sizes and sample counts are stated there as well.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    ROOT,
    auc_cell,
    classifier_fields,
    machine,
    num_cell,
    table,
    update_section,
)

OUT = ROOT / "benchmarks" / "out" / "layerwise_quality"
#: Default recipes per dataset (the MAF L2LFlows twin is used where it exists).
RECIPES = {
    "2": ["icaloflow/2-cpu.yaml", "l2lflows/2-cpu.yaml", "l2lflows/2-maf-cpu.yaml",
          "caloman/2-cpu.yaml", "vae-inn/2-cpu.yaml"],
    "3": ["icaloflow/3-cpu.yaml", "l2lflows/3-cpu.yaml", "l2lflows/3-maf-cpu.yaml",
          "caloman/3-cpu.yaml", "vae-inn/3-cpu.yaml"],
}
STUDENT = {"2": "icaloflow/2-student-cpu.yaml", "3": "icaloflow/3-student-cpu.yaml"}
MODES = "cls-gbdt-low,cls-gbdt-high,cls-resnet,hist,fpd,kpd,prdc"
#: Classifier tags of the table (metrics.json ``auc_<tag>``) and their column titles.
CLASSIFIERS = {"gbdt_low": "AUC gbdt-low", "gbdt_high": "AUC gbdt-high",
               "resnet": "AUC ResNet"}
#: --smoke: toy sizes; FPD/KPD left out (their CaloChallenge settings draw 10k-50k showers
#: with replacement whatever N is: about a CPU minute each, tested in tests/test_evaluation*).
SMOKE = {"n_train": 300, "n_test": 150, "minutes": 0.05, "recipes": ["caloman/2-cpu.yaml"],
         "student": "", "min_steps": 20, "energy_quantile": 0.1,
         "modes": "cls-gbdt-low,cls-gbdt-high,cls-resnet,hist,prdc"}


# --------------------------------------------------------------------------------------------
# steps


def _die_with_parent() -> None:
    """Linux: the step gets SIGTERM when the benchmark dies (e.g. a test's timeout kills
    it), instead of running on as an orphan."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_cli(args: list[str], log: Path, threads: int) -> str:
    """Run ``caloforge ARGS`` (stdout and stderr into ``log``); its stdout on success, a
    RuntimeError with the last lines of the log otherwise."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "caloforge", *map(str, args)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        fh.write("$ caloforge " + " ".join(map(str, args)) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env,
                              check=False, preexec_fn=_die_with_parent)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        tail = " | ".join(log.read_text().strip().splitlines()[-3:])
        raise RuntimeError(f"caloforge {args[0]} exited {proc.returncode}: {tail[-400:]}")
    return proc.stdout


def load() -> float:
    """1-minute load average (NaN where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def simulate(dataset: str, n: int, seed: int, path: Path, threads: int,
             within: Path | None = None, quantile: float = 0.0) -> None:
    """``caloforge simulate`` (the official energy mix; with ``within``, incident energies
    drawn from that file's E_inc range between its ``quantile`` and ``1 - quantile``
    quantiles, so that no model is asked to extrapolate: generate refuses to, and the
    streamed training holds out whole chunks for validation, which can narrow the range a
    model was trained on when the file is small)."""
    if path.exists():
        return
    extra = []
    if within is not None:
        import h5py

        with h5py.File(within, "r") as fh:
            e = fh["incident_energies"][:]
        lo, hi = (float(v) for v in np.quantile(e, [quantile, 1.0 - quantile]))
        extra = ["--energy-range", f"{lo},{hi}"]
    run_cli(["simulate", "--dataset", dataset, "-n", n, "--seed", seed, "--no-progress",
             *extra, "-o", path], path.with_suffix(".log"), threads)


def stage_count(recipe: dict) -> tuple[list[str] | None, int]:
    """(stage names of the recipe's ``training`` section or None for a single-stage recipe,
    number of :func:`caloforge.training.fit` calls the model makes). The count comes from the
    model's ``stage_tags()`` (built at the recipe's size, no data) where it can be built,
    else from the recipe's stages."""
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    training = recipe.get("training") or {}
    stages = (list(training) if training and all(isinstance(v, dict)
                                                 for v in training.values()) else None)
    try:
        model = model_class(recipe["model"])(Geometry.preset(str(recipe["dataset"])), recipe)
        n = len(model.stage_tags())
    except Exception:  # noqa: BLE001 - the count is only a budget split
        n = len(stages) if stages else 1
    return stages, max(n, 1)


def derived_recipe(src: Path, seconds: float, out: Path) -> dict:
    """Write ``src`` with ``time_limit`` = ``seconds`` / number of stages in every training
    stage (0 for the untrained twin) to ``out``; return the budget split."""
    recipe = yaml.safe_load(src.read_text())
    stages, n = stage_count(recipe)
    per_stage = seconds / n
    training = recipe.setdefault("training", {})
    for cfg in ([training[s] for s in stages] if stages else [training]):
        cfg["time_limit"] = round(per_stage, 1)
        cfg["progress"] = False
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return {"stages": stages or ["model"], "fits": n, "seconds_per_stage": per_stage,
            "epochs": {s: training[s].get("epochs") for s in stages} if stages
            else {"model": training.get("epochs")}}


def stage_epochs(run_dir: Path) -> dict[str, dict]:
    """Per training stage (``{tag}metrics.csv``): epochs done and seconds spent."""
    out = {}
    for path in sorted(run_dir.glob("*metrics.csv")):
        tag = path.name[:-len("metrics.csv")].rstrip("_") or "model"
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
        keys = [k for k in (rows[0] if rows else {}) if k.endswith("seconds")]
        secs = sum(float(r[keys[0]]) for r in rows) if keys else None
        out[tag] = {"epochs": len(rows), "seconds": secs}
    return out


def train(model: str, recipe: Path, data: Path, run_dir: Path, threads: int,
          teacher: Path | None = None) -> dict:
    """``caloforge train`` (streamed for datasets 2 and 3); wall seconds and stage epochs."""
    args = ["train", "--model", model, "--config", recipe, "--data", data, "--seed", 0,
            "--threads", threads, "--quiet", "-o", run_dir]
    if teacher is not None:
        args += ["--teacher", teacher]
    t0 = time.perf_counter()
    run_cli(args, run_dir.with_suffix(".train.log"), threads)
    return {"train_s": time.perf_counter() - t0, "stages": stage_epochs(run_dir)}


def generate(checkpoint: Path, ref: Path, n: int, out: Path, threads: int) -> dict:
    """``caloforge generate`` at the first ``n`` reference energies; wall seconds and the
    sampling time per shower it reports."""
    t0 = time.perf_counter()
    text = run_cli(["generate", "--checkpoint", checkpoint, "--energies-from", ref, "-n", n,
                    "--seed", 1, "--threads", threads, "--quiet", "--overwrite", "-o", out],
                   out.with_suffix(".generate.log"), threads)
    wall = time.perf_counter() - t0
    found = re.search(r"time per shower: ([0-9.]+) ms", text)
    redrawn = re.search(r"re-drew (\d+) of", text)
    return {"generate_s": wall, "ms_per_shower": float(found.group(1)) if found else None,
            "n_generated": n, "redrawn": int(redrawn.group(1)) if redrawn else 0}


def evaluate(gen: Path, ref: Path, out: Path, args: argparse.Namespace, subsample: bool
             ) -> dict:
    """``caloforge evaluate`` with the run's modes and classifier settings; the metrics."""
    cmd = ["evaluate", "-g", gen, "-r", ref, "-m", args.modes, "--seed", 0, "--device", "cpu",
           "--epochs", args.cls_epochs, "--width", 256, "--threads", args.eval_threads,
           "--plots", "none", "--quiet", "--overwrite", "-o", out]
    if args.min_steps is not None:
        cmd += ["--min-steps", args.min_steps]
    if subsample:
        cmd.append("--subsample")
    t0 = time.perf_counter()
    run_cli(cmd, out.with_suffix(".evaluate.log"), args.eval_threads)
    m = json.loads((out / "metrics.json").read_text())
    prdc = m.get("prdc") or {}
    row = {"evaluate_s": time.perf_counter() - t0, "n_evaluated": m.get("n_reference"),
           "fpd": m.get("fpd"), "fpd_err": m.get("fpd_err"), "kpd": m.get("kpd"),
           "kpd_err": m.get("kpd_err"), "sep_mean": m.get("mean_separation_power"),
           "sep_mean_official": m.get("mean_separation_power_official"),
           "precision": prdc.get("precision"), "recall": prdc.get("recall"),
           "density": prdc.get("density"), "coverage": prdc.get("coverage"),
           "classifier_settings": {k: v.get("protocol") for k, v in
                                   (m.get("classifier") or {}).items()}}
    row.update(classifier_fields(m, CLASSIFIERS))
    return row


# --------------------------------------------------------------------------------------------
# driver


def row_names(recipe: str) -> tuple[str, str]:
    """(trained row name, untrained row name) of a recipe path relative to configs/."""
    name = recipe.removesuffix(".yaml")
    return name, f"{name} (untrained)"


def run_recipe(recipe: str, model: str, untrained: bool, args: argparse.Namespace,
               data: dict[str, Path], teacher: Path | None) -> dict:
    """Train (or initialise), generate and evaluate one row; its result."""
    name = row_names(recipe)[1 if untrained else 0]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    scratch = Path(args.scratch) / slug
    seconds = 0.0 if untrained else 60.0 * args.minutes
    row: dict = {"recipe": f"configs/{recipe}", "model": model, "untrained": untrained,
                 "load_start": load()}
    row["budget"] = derived_recipe(ROOT / "configs" / recipe, seconds,
                                   scratch.with_suffix(".yaml"))
    row["budget"]["minutes"] = seconds / 60.0
    if teacher is not None:
        row["teacher"] = str(teacher)
    # a rerun of the row (--only, or after an interrupted run) starts over: train refuses
    # an -o directory that holds checkpoints
    shutil.rmtree(scratch / "run", ignore_errors=True)
    print(f"[{name}] training (budget {seconds / 60:.1f} min)", flush=True)
    row.update(train(model, scratch.with_suffix(".yaml"), data["train"], scratch / "run",
                     args.threads, teacher))
    n = args.n_test if model != "icaloflow" else min(args.n_test, args.n_teacher)
    print(f"[{name}] trained in {row['train_s']:.0f} s {row['stages']}; generating {n}",
          flush=True)
    row.update(generate(scratch / "run" / "model.pt", data["test"], n,
                        scratch / "gen.h5", args.threads))
    print(f"[{name}] generated in {row['generate_s']:.0f} s; evaluating", flush=True)
    row.update(evaluate(scratch / "gen.h5", data["test"], scratch / "eval", args,
                        subsample=n < args.n_test))
    row["load_end"] = load()
    print(f"[{name}] " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                   if isinstance(v, float)), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="2", choices=("2", "3"))
    ap.add_argument("--recipes", default=None,
                    help="comma list of recipes under configs/ (default: the dataset's -cpu "
                    "twins of iCaloFlow, L2LFlows conv and MAF, CaloMan, VAE+INN)")
    ap.add_argument("--student", default=None,
                    help="student recipe under configs/, trained from the iCaloFlow teacher "
                    "row ('' for none; default icaloflow/{2,3}-student-cpu.yaml)")
    ap.add_argument("--only", default="",
                    help="comma list of row names (e.g. caloman/2-cpu) to (re)run, merged into "
                    "the cached results; the student needs its teacher's run in --scratch")
    ap.add_argument("--minutes", type=float, default=30.0,
                    help="training wall-clock budget per model (issue: <= 30)")
    ap.add_argument("--n-train", type=int, default=20_000, help="simulated training showers")
    ap.add_argument("--n-test", type=int, default=5_000,
                    help="held-out reference showers (= showers generated per row)")
    ap.add_argument("--n-teacher", type=int, default=5_000,
                    help="showers the iCaloFlow MAF teacher generates (it samples layer by "
                    "layer, voxel by voxel; its reference is subsampled to match)")
    ap.add_argument("--energy-quantile", type=float, default=0.0,
                    help="reference E_inc drawn between these quantiles of the training "
                    "file's E_inc (0: its whole range; --smoke: 0.1)")
    ap.add_argument("--modes", default=None, help=f"caloforge evaluate modes (default {MODES})")
    ap.add_argument("--cls-epochs", type=int, default=10,
                    help="epochs of the neural judges (ResNet; quick protocol unless 50)")
    ap.add_argument("--min-steps", type=int, default=None,
                    help="evaluate --min-steps for the quick DNN/ResNet (default: evaluate's)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads of training and generation")
    ap.add_argument("--eval-threads", type=int, default=1,
                    help="threads of evaluate (1: OpenMP's boosted trees do not spin-wait on "
                    "a shared machine)")
    ap.add_argument("--scratch", default=None,
                    help="data, runs and generated files (default OUT/ds{2,3}[-smoke])")
    ap.add_argument("--smoke", action="store_true",
                    help="whole pipeline at toy size (< 2 min): " + ", ".join(
                        f"{k} {v}" for k, v in SMOKE.items()))
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the BENCHMARKS.md section from the cached results")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n_train, args.n_test, args.minutes = (SMOKE["n_train"], SMOKE["n_test"],
                                                   SMOKE["minutes"])
        args.n_teacher = args.n_test
        args.recipes = args.recipes or ",".join(SMOKE["recipes"])
        args.student = SMOKE["student"] if args.student is None else args.student
        args.min_steps = SMOKE["min_steps"] if args.min_steps is None else args.min_steps
        args.modes = args.modes or SMOKE["modes"]
        args.energy_quantile = args.energy_quantile or SMOKE["energy_quantile"]
    args.modes = args.modes or MODES
    tag = f"ds{args.dataset}" + ("-smoke" if args.smoke else "")
    work = OUT / tag
    args.scratch = args.scratch or str(work)
    json_path = Path(args.scratch if args.smoke else work) / "results.json"
    cached = json.loads(json_path.read_text()) if json_path.exists() else {}
    if args.render_only:
        return finish(cached, args, tag)

    from caloforge.evaluation.runner import parse_modes

    args.modes = ",".join(parse_modes(args.modes))  # an unknown mode is an error, up front
    recipes = [r for r in (args.recipes.split(",") if args.recipes is not None
                           else RECIPES[args.dataset]) if r]
    student = STUDENT[args.dataset] if args.student is None else args.student
    missing = [r for r in recipes if not (ROOT / "configs" / r).exists()]
    if args.recipes is not None and missing:
        raise SystemExit(f"--recipes: no such recipe under configs/: {', '.join(missing)}")
    notes = [f"{r}: recipe not in this checkout, not run" for r in missing]
    recipes = [r for r in recipes if r not in missing]
    only = {o for o in args.only.split(",") if o}

    scratch = Path(args.scratch)
    data = {"train": scratch / "data" / f"train_{args.n_train}.h5",
            "test": scratch / "data" / f"test_{args.n_test}.h5"}
    t0 = time.perf_counter()
    simulate(args.dataset, args.n_train, 1, data["train"], args.threads)
    simulate(args.dataset, args.n_test, 2, data["test"], args.threads, within=data["train"],
             quantile=args.energy_quantile)
    print(f"data ready ({time.perf_counter() - t0:.0f} s): {data}", flush=True)

    results = dict(cached.get("rows", {})) if only or not args.smoke else {}
    settings = {"dataset": args.dataset, "n_train": args.n_train, "n_test": args.n_test,
                "n_teacher": args.n_teacher, "energy_quantile": args.energy_quantile,
                "minutes": args.minutes, "modes": args.modes,
                "min_steps": args.min_steps, "cls_epochs": args.cls_epochs,
                "threads": args.threads, "eval_threads": args.eval_threads,
                "machine": machine(), "smoke": args.smoke}
    plan: list[tuple[str, str, Path | None]] = []  # (recipe, model, teacher)
    for r in recipes:
        plan.append((r, yaml.safe_load((ROOT / "configs" / r).read_text())["model"], None))
    if student:
        teacher_recipe = next((r for r in recipes if r.startswith("icaloflow/")), None)
        if teacher_recipe is None:
            notes.append(f"{student}: no iCaloFlow teacher recipe in this run, not run")
        else:
            slug = re.sub(r"[^A-Za-z0-9]+", "_", row_names(teacher_recipe)[0]).strip("_")
            plan.append((student, "icaloflow-student", scratch / slug / "run" / "model.pt"))
    for recipe, model, teacher in plan:
        for untrained in (False, True):
            name = row_names(recipe)[1 if untrained else 0]
            if only and name not in only:
                continue
            try:
                if teacher is not None and not teacher.exists():
                    raise RuntimeError(f"teacher checkpoint {teacher} missing (its row failed "
                                       "or was not run)")
                results[name] = run_recipe(recipe, model, untrained, args, data, teacher)
            except Exception as exc:  # noqa: BLE001 - a model under construction elsewhere
                print(f"[{name}] FAILED: {exc}", flush=True)
                results[name] = {"recipe": f"configs/{recipe}", "model": model,
                                 "untrained": untrained, "error": str(exc)[:500]}
            save_row(json_path, settings, name, results[name], notes, fresh=not (
                only or not args.smoke) and len(results) == 1)
    run = json.loads(json_path.read_text()) if json_path.exists() else {
        "settings": settings, "rows": results, "notes": notes}
    return finish(run, args, tag)


def save_row(path: Path, settings: dict, name: str, row: dict, notes: list[str],
             fresh: bool = False) -> None:
    """Merge one row into the results file under an exclusive lock (several invocations with
    different ``--only`` rows may run at once); ``fresh`` starts the file over."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = json.loads(path.read_text()) if path.exists() and not fresh else {}
        run["settings"] = settings
        run.setdefault("rows", {})[name] = row
        run["notes"] = sorted(set(run.get("notes", [])) | set(notes))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run, indent=1, default=float))
        os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# rendering


def finish(run: dict, args: argparse.Namespace, tag: str) -> int:
    if not run:
        raise SystemExit("no cached results to render: run the benchmark first")
    text = render(run)
    print(text)
    if not args.no_write and not run["settings"].get("smoke"):
        update_section("layerwise_quality" + ("" if tag == "ds2" else f"_{tag}"), text)
    return 0


def _pm(r: dict, key: str) -> str:
    v, e = r.get(key), r.get(f"{key}_err")
    if not isinstance(v, int | float):
        return "–"
    return f"{v:.3g}" + (f" ± {e:.2g}" if isinstance(e, int | float) else "")


def _trained_for(r: dict) -> str:
    """Wall minutes of ``caloforge train`` and epochs done / in the recipe per stage."""
    if r.get("untrained"):
        return (f"none: 0 optimiser steps ({r['train_s'] / 60:.1f} min of statistics and "
                "validation passes)")
    stages = r.get("stages") or {}
    planned = (r.get("budget") or {}).get("epochs") or {}
    parts = [f"{s} {v['epochs']}/{planned.get(s, '?')}" for s, v in stages.items()]
    return f"{r['train_s'] / 60:.1f} min; " + ", ".join(parts)


def render(run: dict) -> str:
    """The BENCHMARKS.md section of one dataset's cached results."""
    s, rows = run["settings"], run["rows"]
    header = ["model (recipe)", "training: wall, epochs done/recipe per stage", "n",
              *CLASSIFIERS.values(), "FPD x 10^3", "KPD x 10^3", "mean sep. power",
              "PRDC precision / recall", "generate ms/shower", "load (start-end)"]
    body, failed = [], []
    known = [n.removesuffix(".yaml") for d in RECIPES for n in (*RECIPES[d], STUDENT[d])]

    def order(item: tuple[str, dict]) -> tuple:
        base = item[0].removesuffix(" (untrained)")  # each model beside its untrained twin
        return (known.index(base) if base in known else len(known), base, item[1]["untrained"])

    for name, r in sorted(rows.items(), key=order):
        if "error" in r:
            failed.append(f"* `{name}`: not in the table: {r['error']}")
            continue
        body.append([f"**{name}**" if not r["untrained"] else name, _trained_for(r),
                     r.get("n_evaluated", "–"), *(auc_cell(r, t) for t in CLASSIFIERS),
                     _pm(r, "fpd"), _pm(r, "kpd"), num_cell(r.get("sep_mean"), 4),
                     f"{num_cell(r.get('precision'), 2)} / {num_cell(r.get('recall'), 2)}",
                     num_cell(r.get("ms_per_shower"), 2),
                     f"{r.get('load_start', float('nan')):.1f}-"
                     f"{r.get('load_end', float('nan')):.1f}"])
    budgets = sorted({(r["budget"]["minutes"], r["budget"]["fits"]) for r in rows.values()
                      if "budget" in r and not r["untrained"]})
    label = "Dataset 2" if s["dataset"] == "2" else "Dataset 3 (reduced scale, see below)"
    md = [
        f"## Layer-by-layer flows, CaloMan and VAE+INN on simulator data: {label} "
        "(`benchmarks/layerwise_quality.py`)",
        "",
        f"Machine: {s['machine']}; {s['threads']} threads per step. The machine was shared "
        "with other jobs: the 1-minute load average at the start and end of each row is in "
        "the last column (2 cores: a load above 2 means the row got less than the cores), "
        "so wall times are indicative only and the training budget bought less than it "
        "would on an idle machine.",
        "",
        "**Caloforge-simulator showers, `-cpu` recipes, minutes of CPU training: not the "
        "published models and not comparable to CaloChallenge Geant4 numbers.** Every "
        "reduction: "
        f"N = {s['n_train']:,} training showers (seed 1; 10 % of the chunks validate, "
        f"streamed), {s['n_test']:,} held-out reference showers (seed 2, E_inc drawn "
        + ("within the training file's E_inc range" if not s.get("energy_quantile") else
           f"between the {s['energy_quantile']:g} and {1 - s['energy_quantile']:g} quantiles "
           "of the training file's E_inc")
        + ") instead of the "
        f"official 100k + 100k; training capped at {s['minutes']:g} wall-clock minutes per "
        "model (issue: ≤ 30), split equally over the model's training stages as "
        "`time_limit` (budget / stages: "
        + "; ".join(f"{m:g} min / {k} stages" for m, k in budgets)
        + "), each stage keeping its recipe's epochs, so it stops at its epochs or its "
        "cap, whichever comes first (the column gives epochs done / recipe epochs, the "
        "epoch in progress at the cap counting as done; a capped stage's learning-rate "
        "schedule is cut short). The cap stops optimiser steps; the statistics pass, the "
        "validation passes and checkpoints come on top, so the wall time of `caloforge "
        "train` (first number in the column) exceeds the budget on a loaded machine. "
        "Network sizes: each recipe's `-cpu` twin as committed (see the recipe files). "
        f"The iCaloFlow MAF teacher generates {min(s['n_teacher'], s['n_test']):,} showers "
        "(its reference subsampled to match, seeded) because it samples voxel by voxel; "
        "every other row generates one shower per reference shower.",
        "",
        "**Untrained** rows: the same recipe with `time_limit: 0` in every stage: "
        "preprocessing statistics fitted on the same data, networks as initialised, zero "
        "optimiser steps (the untrained student distils from the trained teacher, so it "
        "shares the teacher's trained flow-1). A trained model should sit clearly below "
        "its untrained twin.",
        "",
        f"Judges, the same settings for every row (`caloforge evaluate -m {s['modes']} "
        f"--epochs {s.get('cls_epochs', 10)} --width 256"
        + (f" --min-steps {s['min_steps']}" if s.get("min_steps") is not None else "")
        + " --seed 0`): boosted trees on voxels (`cls-gbdt-low`) and high-level features "
        "(`cls-gbdt-high`), the 3D ResNet-18 (`cls-resnet`, quick protocol: "
        f"{s.get('cls_epochs', 10)} epochs, width 8, batch 128, lr 1e-3, standardised inputs, "
        "≥ 300 steps unless `--min-steps` says otherwise), AUC ± 68 % bootstrap interval "
        "(`*` = the classifier did not learn: no evidence either way); FPD/KPD (x 10^3) "
        "on the high-level vector; mean separation power over the high-level-feature "
        "histograms (0 = identical); PRDC (k = 5) on log voxel energies. generate "
        "ms/shower: `caloforge generate`'s sampling time at batch 1000 with the threads "
        "above (the sampling section has the timing benchmark).",
        "",
        table(header, body),
    ]
    if failed or run.get("notes"):
        md += ["", "Not run or failed (run without them):", "", *failed,
               *[f"* {n}" for n in run.get("notes", [])]]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
