"""``caloforge evaluate``: the CaloChallenge metrics of a generated file against a reference."""

from __future__ import annotations

import argparse

ORDER = 40


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from caloforge.geometry import DATASETS

    p = sub.add_parser(
        "evaluate", help="CaloChallenge metrics: histograms, classifier AUC, FPD/KPD, PRDC",
        description="Compare generated showers with reference showers using the CaloChallenge "
                    "evaluation. Writes OUTDIR/metrics.json and OUTDIR/report.html (with "
                    "every histogram as inline SVG), and OUTDIR/plots/*.png with --plots all.")
    p.add_argument("-g", "--generated", required=True, nargs="+", metavar="GENERATED.h5",
                   help="generated showers: one or more CaloChallenge or CaloGAN files of one "
                        "geometry (read block by block, never loaded whole)")
    p.add_argument("-r", "--reference", required=True, nargs="+", metavar="REFERENCE.h5",
                   help="reference showers, e.g. Geant4 or the reference simulator; several "
                        "files allowed (e.g. dataset_3_3.hdf5 dataset_3_4.hdf5)")
    p.add_argument("-d", "--dataset", choices=DATASETS, default=None,
                   help="geometry (default: inferred from the voxel count)")
    p.add_argument("-m", "--mode", action="append", default=None, metavar="MODE",
                   help="all (default: hist, cls-low, cls-high, fpd, kpd, prdc), hist, cls-low, "
                        "cls-low-normed, cls-high, cls-gbdt-low, cls-gbdt-high, gbdt (both "
                        "boosted-tree tests: strong at CPU sample sizes), cls-resnet (the 3D "
                        "ResNet of datasets 2 and 3), fpd, kpd or prdc; repeat or "
                        "comma-separate")
    p.add_argument("--epochs", type=int, default=50,
                   help="DNN classifier epochs (official 50; other settings run the quick "
                        "protocol: standardised inputs, at least 1000 optimiser steps)")
    p.add_argument("--repeats", type=int, default=1,
                   help="independent classifier trainings; reports mean ± std (paper: 10)")
    p.add_argument("--width", type=int, default=2048, help="classifier width (official 2048)")
    p.add_argument("--resnet-width", type=int, default=None,
                   help="cls-resnet base width (channels w/2w/2w/4w; official 32; default 32 "
                        "with the official DNN settings, else the quick 8)")
    p.add_argument("--resnet-batch", type=int, default=None,
                   help="cls-resnet batch size (default 1000 with the official DNN settings, "
                        "else the quick 128)")
    p.add_argument("--resnet-lr", type=float, default=None,
                   help="cls-resnet learning rate (default 2e-4 with the official DNN settings, "
                        "else the quick 1e-3)")
    p.add_argument("--min-steps", type=int, default=None,
                   help="fewest classifier optimiser steps (default: none for official "
                        "settings, 1000 for a quick DNN, 300 for a quick ResNet)")
    p.add_argument("--seed", type=int, default=0, help="seed of splits and classifier")
    p.add_argument("--subsample", action="store_true",
                   help="draw the larger sample down to the size of the smaller one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="classifier device (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of torch and of the BLAS/OpenMP libraries (the boosted "
                        "trees)")
    p.add_argument("--sums", choices=("file", "float64"), default="file",
                   help="sum layer energies in the files' dtype like the official evaluate.py "
                        "(default) or in float64")
    p.add_argument("--plots", choices=("summary", "all", "none"), default="summary",
                   help="pictures: summary (default: every histogram as inline SVG and the "
                        "average showers as PNG mosaics in report.html, cheap), all (matplotlib "
                        "PNGs of every histogram and polar average showers, in report.html and "
                        "OUTDIR/plots/, slow: minutes on dataset 3) or none")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    return p


def _lines(metrics: dict) -> list[str]:
    from caloforge.evaluation.report import CLASSIFIERS

    lines = []
    for tag, name in CLASSIFIERS:
        if metrics.get(f"auc_{tag}") is not None:
            lines.append(f"{name:15s} AUC {metrics[f'auc_{tag}']:.4f} ± "
                         f"{metrics[f'auc_{tag}_err']:.4f}   JSD {metrics[f'jsd_{tag}']:.4f} ± "
                         f"{metrics[f'jsd_{tag}_std']:.4f}   {metrics[f'reading_{tag}']}")
    for mode, info in (metrics.get("classifier") or {}).items():
        for key in ("power_warning", "note"):
            if info.get(key):
                lines.append(f"  {mode}: {info[key]}")
    for key in ("fpd", "kpd"):
        if metrics.get(key) is not None:
            err = metrics[key + "_err"]
            lines.append(f"{key.upper()} x 1e3       {metrics[key]:.4f} ± {err:.4f}")
    if metrics.get("prdc"):
        lines.append("PRDC            " + ", ".join(f"{k} {v:.4f}"
                                                    for k, v in metrics["prdc"].items()))
    if metrics.get("mean_separation_power") is not None:
        lines.append(f"separation power (mean, official features / all high-level features) "
                     f"{metrics['mean_separation_power_official']:.5f} / "
                     f"{metrics['mean_separation_power']:.5f}")
    return lines


def run(args: argparse.Namespace) -> int:
    from caloforge.commands._options import set_threads
    from caloforge.diskset import open_showers
    from caloforge.evaluation import evaluate

    set_threads(args.threads)  # torch and the boosted trees' OpenMP
    # the showers stay in their files: features, histograms and classifier inputs are
    # computed block by block (classifier inputs through a scratch file under OUTDIR)
    generated = open_showers(args.generated, args.dataset)
    reference = open_showers(args.reference, args.dataset)
    metrics = evaluate(generated, reference, args.mode or ["all"], args.output,
                       epochs=args.epochs, repeats=args.repeats, width=args.width, seed=args.seed,
                       device=args.device, progress=not args.quiet, subsample=args.subsample,
                       overwrite=args.overwrite, sums=args.sums,
                       resnet_width=args.resnet_width, resnet_batch=args.resnet_batch,
                       resnet_lr=args.resnet_lr, min_steps=args.min_steps, plots=args.plots)
    for line in _lines(metrics):
        print(line)
    print(f"wrote {args.output}/metrics.json and {args.output}/report.html")
    return 0
