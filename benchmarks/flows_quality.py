"""Normalizing-flow quality on a CPU subset: CaloINN, the CaloFlow teacher and its distilled
student, trained briefly on simulated dataset-1 photons and compared with reference showers.

Short CPU runs on caloforge-simulator data with reduced architectures and few epochs, not the
published configurations (configs/caloinn/1-photons.yaml, configs/caloflow/1-photons*.yaml);
the numbers compare models under one small budget and are not comparable to CaloChallenge
Geant4 results. An untrained CaloINN (fitted preprocessing, random flow) is the baseline.

Metrics against the reference showers: classifier AUCs (low-level voxels and high-level
features, the quick classifier settings of ``caloman_fidelity.py``: width 2048 default,
``--cls-epochs`` epochs), FPD/KPD on the high-level feature vector and the mean separation
power over the high-level-feature histograms.
The MAF teacher samples one voxel at a time, so it generates only ``--n-teacher-sample``
showers (the reference is subsampled to match for its row).

Usage::

    python benchmarks/flows_quality.py [--n-train 9000] [--n-test 4000] [--epochs-scale 1]
    python benchmarks/flows_quality.py --quick --no-write   # < 1 min smoke test

Writes the ``flows_quality`` section of BENCHMARKS.md and the raw numbers to
``benchmarks/out/flows_quality/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    ROOT,
    TAGS,
    auc_cell,
    classifier_fields,
    fill_from_metrics,
    machine,
    table,
    update_section,
)

STAGE = {"batch_size": 256, "device": "cpu", "progress": False, "dtype": "float32"}


def configs(epochs_scale: float) -> dict[str, dict]:
    """Reduced configurations (name -> config); epochs are multiplied by ``epochs_scale``."""

    def ep(n: int) -> int:
        return max(1, round(n * epochs_scale))

    caloinn = {"model": "caloinn", "dataset": "1-photons",
               "flow": {"transforms": 6, "bins": 8, "hidden": [96, 96]},
               "training": {**STAGE, "epochs": ep(12), "lr": 1e-5, "max_lr": 1e-3,
                            "scheduler": "onecycle", "optimizer": "adamw",
                            "weight_decay": 0.01, "grad_clip": 10.0}}
    flow_stage = {**STAGE, "batch_size": 200, "scheduler": "onecycle", "lr": 1e-4,
                  "max_lr": 1e-3}
    teacher = {"model": "caloflow", "dataset": "1-photons",
               "flow1": {"transforms": 6, "hidden": [64, 64], "bins": 8},
               "flow2": {"transforms": 4, "hidden": [96], "bins": 8},
               "training": {"flow1": {**flow_stage, "epochs": ep(6)},
                            "flow2": {**flow_stage, "epochs": ep(4)}}}
    student = {"model": "caloflow-student", "dataset": "1-photons",
               "flow2": {"hidden": [128], "dropout": 0.0},
               "distillation": {"beta": 0.5, "kl_samples": 500},
               "sampling": {"batch_size": 2000},
               "training": {"student": {**STAGE, "epochs": ep(4), "batch_size": 175,
                                        "lr": 1e-4, "scheduler": "onecycle",
                                        "max_lr": 1e-3}}}
    return {"caloinn": caloinn, "caloflow": teacher, "caloflow-student": student}


def _evaluate(model, ref, n: int, args: argparse.Namespace, out_dir: Path) -> dict:
    """Sample at the first ``n`` reference energies (timed) and score against them."""
    from caloforge.data import ShowerSet
    from caloforge.evaluation import evaluate, mean_separation_power

    ref = ShowerSet(ref.e_inc[:n], ref.showers[:n], ref.geometry)
    e = torch.as_tensor(ref.e_inc, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        model.sample(e[:min(50, n)])  # warm-up
        t0 = time.perf_counter()
        x = model.sample(e)
        ms = 1e3 * (time.perf_counter() - t0) / n
    gen = ShowerSet(ref.e_inc, x.double().numpy(), ref.geometry)
    m = evaluate(gen, ref, modes=("cls-low", "cls-high", "cls-gbdt-low", "cls-gbdt-high",
                                  "fpd", "kpd"), out_dir=out_dir,
                 epochs=args.cls_epochs, width=256, seed=0, device="cpu", progress=False,
                 overwrite=True)
    return {"n_sampled": n, "ms_per_shower": ms, **classifier_fields(m),
            "fpd": m.get("fpd"), "fpd_err": m.get("fpd_err"),
            "kpd": m.get("kpd"), "kpd_err": m.get("kpd_err"),
            "sep_mean": mean_separation_power(gen, ref)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=9_000, help="simulated, 10%% validate")
    ap.add_argument("--n-test", type=int, default=4_000, help="reference showers")
    ap.add_argument("--n-teacher-sample", type=int, default=2_000)
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--cls-epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke test: 600 train, 300 test, 1 epoch each, 2 cls epochs")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "flows_quality"))
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--only", default="",
                    help="comma list of models to (re)run with the same settings, merged into "
                    "WORK/full/results.json (caloflow-student needs caloflow in the list)")
    ap.add_argument("--render-only", action="store_true",
                    help="only rewrite the BENCHMARKS.md section from WORK/full/results.json")
    args = ap.parse_args(argv)
    if args.render_only:
        torch.set_num_threads(args.threads)
        results = json.loads((Path(args.work) / "full" / "results.json").read_text())
        n_val = round(0.1 * args.n_train)
        results = fill_from_metrics(results, Path(args.work) / "full")
        update_section("flows_quality", render(results, args, args.n_train - n_val, n_val))
        return 0
    if args.quick:
        args.n_train, args.n_test, args.n_teacher_sample = 600, 300, 200
        args.epochs_scale, args.cls_epochs = 0.01, 2
    torch.set_num_threads(args.threads)

    from caloforge.data import split
    from caloforge.models import model_class
    from caloforge.simulate import simulate

    work = Path(args.work) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = simulate("1-photons", args.n_train, seed=0)
    ref = simulate("1-photons", args.n_test, seed=1)
    print(f"simulated {args.n_train} + {args.n_test} showers in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    train, val = split(data, (0.9, 0.1), seed=0)
    geo = train.geometry
    cfgs = configs(args.epochs_scale)
    json_path = work / "results.json"
    only = [m for m in args.only.split(",") if m]
    results: dict[str, dict] = json.loads(json_path.read_text()) if only else {}

    def record(name: str, model, t_train: float | None, n: int) -> None:
        model.eval()
        r = _evaluate(model, ref, n, args, work / name / "eval")
        r["train_s"] = t_train
        r["config"] = cfgs.get(name.replace("untrained ", ""))
        results[name] = r
        print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()
                                      if isinstance(v, int | float)), flush=True)
        json_path.write_text(json.dumps(results, indent=1, default=float))

    if not only:  # baseline: fitted preprocessing, random flow
        torch.manual_seed(0)
        untrained = model_class("caloinn")(geo, cfgs["caloinn"])
        untrained.preprocess(train, fit_scalers=True)
        untrained.float()
        record("untrained caloinn", untrained, None, len(ref))

    trained = {}
    for name in only or ("caloinn", "caloflow", "caloflow-student"):
        torch.manual_seed(0)
        model = model_class(name)(geo, cfgs[name])
        extra = {"teacher": trained["caloflow"]} if name == "caloflow-student" else {}
        t0 = time.perf_counter()
        model.fit(train, val, work / name, progress=False, **extra)
        t_train = time.perf_counter() - t0
        print(f"{name}: trained in {t_train:.1f} s", flush=True)
        trained[name] = model
        n = min(args.n_teacher_sample, len(ref)) if name == "caloflow" else len(ref)
        record(name, model, t_train, n)

    if not args.no_write:
        update_section("flows_quality", render(results, args, len(train), len(val)))
    return 0


def _f(v: object, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, int | float) else "–"


def render(results: dict, args: argparse.Namespace, n_train: int, n_val: int) -> str:
    c = configs(args.epochs_scale)
    def pm(r: dict, key: str) -> str:
        if r.get(key) is None:
            return "–"
        return f"{r[key]:.3g} ± {r[key + '_err']:.2g}"

    rows = [[name, _f(r["train_s"], 0), r["n_sampled"], _f(r["ms_per_shower"], 2),
             *(auc_cell(r, t) for t in TAGS),
             pm(r, "fpd"), pm(r, "kpd"), _f(r["sep_mean"], 4)]
            for name, r in results.items()]
    inn, tea, stu = c["caloinn"], c["caloflow"], c["caloflow-student"]
    return "\n".join([
        "## Normalizing flows on a CPU subset (`benchmarks/flows_quality.py`)",
        "",
        f"Machine: {machine()}.",
        "",
        "**These are short CPU runs on caloforge-simulator data with reduced architectures, "
        "not the published configurations, and not comparable to CaloChallenge Geant4 "
        "numbers.** They check that each flow learns something in minutes and compare the "
        "models under one small budget.",
        "",
        f"Data: simulator dataset-1 photons, {n_train} training + {n_val} validation showers "
        f"(seed 0), {args.n_test} reference showers (seed 1). Models (epochs scale "
        f"{args.epochs_scale}):",
        "",
        f"* CaloINN: {inn['flow']['transforms']} coupling blocks, hidden "
        f"{inn['flow']['hidden']}, {inn['flow']['bins']} bins, {inn['training']['epochs']} "
        "epochs, batch 256, AdamW + OneCycle (max lr 1e-3) (published: 12 blocks, "
        "[256, 256, 256], 200 epochs);",
        f"* CaloFlow teacher: flow I {tea['flow1']['transforms']} MADE-RQS blocks "
        f"{tea['flow1']['hidden']}, {tea['training']['flow1']['epochs']} epochs; flow II MAF "
        f"{tea['flow2']['transforms']} blocks, hidden {tea['flow2']['hidden']}, "
        f"{tea['training']['flow2']['epochs']} epochs; batch 200, OneCycle max lr 1e-3 "
        "(published: 8 blocks, hidden [378], 100 + 100 epochs);",
        f"* CaloFlow student: IAF with the teacher's blocks, hidden {stu['flow2']['hidden']}, "
        f"{stu['training']['student']['epochs']} epochs of distillation (beta 0.5), batch 175 "
        "(published: hidden [736], 100 epochs);",
        "* untrained CaloINN: same network as above, preprocessing fitted on the training "
        "set, flow weights at initialisation (the baseline).",
        "",
        "Each model samples at the reference energies (n sampled showers, one `sample` call; "
        "internal batch: CaloINN the whole call, teacher 1000 (caloflow default), student "
        f"{stu['sampling']['batch_size']}"
        + (f"; the MAF teacher samples voxel by voxel, so only the first "
           f"{args.n_teacher_sample} reference energies, and its row is scored against those "
           f"{args.n_teacher_sample} reference showers" if args.n_teacher_sample < args.n_test
           else "; the MAF teacher samples voxel by voxel, which was still cheap at this size, "
           "so it samples the full reference set too")
        + f"). AUCs (± 68 % bootstrap interval; `*` = the classifier did not learn, so no "
        f"evidence either way): the quick DNN ({args.cls_epochs} epochs, width 256, "
        "standardised inputs, ≥ 1000 steps) and the boosted-tree judges `cls-gbdt-low` / "
        "`cls-gbdt-high`, whose power at these sizes `benchmarks/judge_power.py` measures; "
        "mean separation power over the "
        "high-level-feature histograms (0 = identical); FPD and KPD (x 10^3) on the "
        "classifier's high-level feature vector with the CaloChallenge settings (bootstrap "
        "batches drawn with replacement from the showers available). Train s = wall clock "
        "of `fit` (teacher: flow I + flow II; student: "
        "distillation only, teacher excluded); times are from runs on the machine above "
        "(with `--only`, some rows come from a later run with the same settings and seeds) "
        "and are indicative only.",
        "",
        table(["model", "train s", "n sampled", "sample ms/shower", "AUC low (DNN)",
               "AUC high (DNN)", "AUC gbdt-low", "AUC gbdt-high", "FPD x 10^3", "KPD x 10^3",
               "mean sep. power"], rows),
    ])


if __name__ == "__main__":
    sys.exit(main())
