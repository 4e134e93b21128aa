"""CaloMan fidelity before/after: recall (PRDC), classifier AUCs and separation power of
CaloMan variants trained on the same simulated dataset-1 photon subset.

Variants (same data, same network sizes, same epochs; see caloforge.models.caloman):

* ``caloman``: the CaloChallenge submission's scheme (NF + VAE + NF): energy flow on the
  layer energies, VAE with a deterministic decoder (one learned global sigma, generation =
  decoder mean), RQS coupling flow on the posterior means;
* ``gaussian``: the same with a learned per-voxel Gaussian decoder in logit space, sampled;
* ``zero-inflated``: the same with the zero-inflated log-normal decoder, sampled (the fix).

Usage::

    python benchmarks/caloman_fidelity.py [--n-train 10000] [--n-test 5000] [--threads 2]

Writes the ``caloman_fidelity`` section of BENCHMARKS.md and the raw numbers to
``benchmarks/out/caloman_fidelity/results.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
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

BASE = {
    "model": "caloman",
    "dataset": "1-photons",
    "preprocessing": "caloflow",
    "autoencoder": "vae",
    "beta": 1.0,
    "latent_dim": 20,
    "hidden": [256, 256, 256],
    "decoder_noise": "none",
    "condition_on_layers": True,
    "threshold_mev": 0.01,
    "energy_flow": {"type": "coupling", "transforms": 4, "bins": 8, "hidden": [64, 64],
                    "residual": True},
    "latent_flow": {"type": "coupling", "transforms": 4, "bins": 8, "hidden": [128, 128],
                    "residual": True},
    "training": {
        "energy_flow": {"epochs": 10, "batch_size": 256, "lr": 1e-3, "device": "cpu"},
        "autoencoder": {"epochs": 15, "batch_size": 256, "lr": 1e-3, "scheduler": "onecycle",
                        "max_lr": 2e-3, "device": "cpu"},
        "latent_flow": {"epochs": 15, "batch_size": 256, "lr": 1e-3, "device": "cpu"},
    },
}

VARIANTS = {
    "caloman": {},
    "gaussian": {"decoder_noise": "gaussian"},
    "zero-inflated": {"decoder_noise": "zero-inflated"},
    "zero-inflated-ae": {"decoder_noise": "zero-inflated", "autoencoder": "ae"},
}


def variant_config(name: str, epochs_scale: float) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg.update(copy.deepcopy(VARIANTS[name]))
    for stage in cfg["training"].values():
        stage["epochs"] = max(1, round(stage["epochs"] * epochs_scale))
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=5_000)
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cls-epochs", type=int, default=10)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "caloman_fidelity"))
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--render-only", action="store_true",
                    help="only rewrite the BENCHMARKS.md section from WORK/results.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render_only:
        results = json.loads((Path(args.work) / "results.json").read_text())
        n_train = round(0.9 * args.n_train)
        results = fill_from_metrics(results, Path(args.work))
        update_section("caloman_fidelity", render(results, args, n_train, args.n_test))
        return 0

    from caloforge.data import ShowerSet, read_showers, split, write_showers
    from caloforge.evaluation import evaluate
    from caloforge.geometry import Geometry
    from caloforge.models import model_class
    from caloforge.simulate import simulate

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    geo = Geometry.preset("1-photons")
    n_total = args.n_train + args.n_test
    sim = work / f"sim_{n_total}.h5"
    if sim.exists():
        data = read_showers(sim, geo)
    else:
        t0 = time.perf_counter()
        data = simulate("1-photons", n_total, seed=0, progress=True)
        write_showers(sim, data, overwrite=True)
        print(f"simulated {n_total} showers in {time.perf_counter() - t0:.0f} s")
    f_test = args.n_test / n_total
    train, val, test = split(data, (0.9 * (1 - f_test), 0.1 * (1 - f_test), f_test), seed=0)

    results = {}
    json_path = work / "results.json"
    if json_path.exists():
        results = json.loads(json_path.read_text())
    for name in args.variants.split(","):
        cfg = variant_config(name, args.epochs_scale)
        torch.manual_seed(0)
        model = model_class("caloman")(geo, cfg)
        first = work / args.variants.split(",")[0] / "energy_flow_final.pt"
        mine = work / name / "energy_flow_final.pt"
        if first.exists() and not mine.exists():  # identical config and seed: reuse stage 0
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, mine)
        t0 = time.perf_counter()
        model.fit(train, val, work / name, resume=True, progress=False)
        t_train = time.perf_counter() - t0
        torch.manual_seed(1)
        e = torch.as_tensor(test.e_inc, dtype=torch.float32)
        model.sample(e[:100])  # warm-up
        t0 = time.perf_counter()
        x = model.sample(e)
        ms = 1e3 * (time.perf_counter() - t0) / len(e)
        gen = ShowerSet(test.e_inc, x.double().numpy(), geo)
        m = evaluate(gen, test, modes=("hist", "cls-low", "cls-high", "cls-gbdt-low",
                                       "cls-gbdt-high", "prdc"),
                     out_dir=work / name / "eval", epochs=args.cls_epochs, width=256, seed=0,
                     device="cpu", progress=False, overwrite=True)
        sep = m.get("separation_power") or {}
        sep_vals = [v for v in sep.values() if isinstance(v, int | float) and np.isfinite(v)]
        prdc = m.get("prdc") or {}
        results[name] = {**classifier_fields(m),
                         **{f"reading_{t}": m.get(f"reading_{t}") for t in TAGS},
                         "precision": prdc.get("precision"), "recall": prdc.get("recall"),
                         "density": prdc.get("density"), "coverage": prdc.get("coverage"),
                         "sep_mean": float(np.mean(sep_vals)) if sep_vals else None,
                         "sep": sep, "train_s": t_train, "ms_per_shower": ms,
                         "config": cfg}
        print(name, {k: v for k, v in results[name].items() if k not in ("sep", "config")},
              flush=True)
        json_path.write_text(json.dumps(results, indent=1, default=float))

    if not args.no_write:
        update_section("caloman_fidelity", render(results, args, len(train), len(test)))
    return 0


GROUPS = ("E_ratio", "E_layer", "EC_r", "EC_eta", "EC_phi", "Width", "sparsity")


def _group(sep: dict, prefix: str) -> float | None:
    """Mean separation power of the features named ``prefix_*`` (not the per-energy ones)."""
    vals = [v for k, v in sep.items() if k.split("_E")[0].startswith(prefix) and
            isinstance(v, int | float) and (k == prefix or not k[len(prefix):].startswith("_E"))]
    return float(np.mean(vals)) if vals else None


def _f(v: object, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, int | float) else "–"


def render(results: dict, args: argparse.Namespace, n_train: int, n_test: int) -> str:
    rows = [["CaloMan, CaloChallenge official (Geant4 DS1 γ, official DNN)", "0.9997",
             "0.9988", "–", "–", "0.888", "0.010", "–", "–"]]
    for name, r in results.items():
        rows.append([name, auc_cell(r, "low"), auc_cell(r, "high"), auc_cell(r, "gbdt_low"),
                     auc_cell(r, "gbdt_high"), _f(r["precision"]), _f(r["recall"]),
                     _f(r["sep_mean"], 4), _f(r["ms_per_shower"], 3)])
    return "\n".join([
        "## CaloMan fidelity: before / after (`benchmarks/caloman_fidelity.py`)",
        "",
        f"Machine: {machine()}.",
        f"Data: caloforge simulator, dataset-1 photons, {n_train} training showers (10 % of "
        f"them validate), {n_test} held-out reference showers; same networks and epochs for "
        f"every variant (epochs scale {args.epochs_scale}). AUCs (± 68 % bootstrap "
        f"interval; `*` = the classifier did not learn: no evidence either way): the quick "
        f"DNN ({args.cls_epochs} epochs, width 256, standardised inputs, ≥ 1000 steps) and "
        f"the boosted-tree judges `cls-gbdt-low` / `cls-gbdt-high`, which "
        f"`benchmarks/judge_power.py` shows see a 2 % voxel scale at 5,000 showers per side. "
        f"PRDC on log voxels, mean separation power "
        f"over the high-level features; ms/shower = sampling time at batch {n_test} measured "
        f"during the run (the machine was shared: indicative only; the sampling section has "
        f"the timing benchmark).",
        "",
        table(["variant", "AUC low (DNN)", "AUC high (DNN)", "AUC gbdt-low", "AUC gbdt-high",
               "precision", "recall", "mean sep. power", "ms/shower"], rows),
        "",
        "**Diagnosis.** The faithful CaloMan (`caloman`: NF + VAE + NF as submitted, decoder "
        "mean at generation) reproduces the challenge failure on our data: precision ~1 with "
        "recall ~0 and a PRDC *density* far above 1 means every generated shower sits in a "
        "small, over-dense region of the reference manifold. The cause is the deterministic "
        "decoder: it returns the conditional *mean* shower of a latent neighbourhood, which "
        "has no empty voxels and no voxel-to-voxel fluctuations (sparsity and shower-width "
        "features show it), so the showers of all modes collapse onto one smooth template "
        "per energy. Neither the latent prior nor the layer energies explain the gap: the "
        "energy flow is shared and the layer-energy separation is the same in every variant, "
        "the latent flows' validation NLL was still improving, and the fix below changes "
        "only the decoder.",
        "",
        "Mean separation power by feature group (lower is better):",
        "",
        table(["variant", *GROUPS], [[name, *(_f(_group(r.get("sep") or {}, g), 4)
                                            for g in GROUPS)] for name, r in results.items()]),
        "",
        "**The zero-inflated decoder fixes mode dropping, not fidelity.** "
        "`decoder_noise: zero-inflated` (configs/caloman/1-photons-faithful.yaml, the demo): "
        "the decoder predicts, per voxel, a hit probability and a log-normal energy "
        "fraction, trained by likelihood, and generation *samples* both before the layers "
        "are renormalised to the energy-flow layer energies. Recall goes from ~0 to ~0.7 "
        "and the mean separation power drops about fourfold. But judges that see still "
        "tell its showers from the reference almost perfectly (the AUC columns above). "
        "The AUCs of 0.55 / 0.53 published before for this variant came from a 10-epoch DNN "
        "that `benchmarks/judge_power.py` shows to be blind at this sample size; they were "
        "wrong. Numbers are CPU-scale (minutes of training on a shared 2-core machine, far "
        "from converged).",
    ])


if __name__ == "__main__":
    sys.exit(main())
