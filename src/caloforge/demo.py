"""``caloforge demo``: the whole pipeline from nothing, in a few minutes on a laptop CPU.

1. simulate a small dataset-1 photon set with caloforge's reference simulator;
2. train a small CaloMan (energy flow, autoencoder with the zero-inflated decoder, latent flow);
3. generate as many showers as the held-out set holds, at the same incident energies;
4. evaluate them against the held-out simulation (histograms + separation power and the
   boosted-tree classifiers, which see real differences at the demo's 3,000 showers per side,
   unlike a quick DNN; see ``benchmarks/judge_power.py``) and write the HTML report;
5. print where the report is.

Rerunning into the same directory is safe: every output is written atomically, finished
steps are reused (training resumes from its last checkpoint after a kill), and a directory
made with other settings is only replaced with ``overwrite=True``, which deletes exactly the
demo's own outputs and starts again. The settings are stamped in ``DIR/demo.json``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from caloforge.atomic import atomic_path
from caloforge.errors import CaloforgeError
from caloforge.evaluation.report import CLASSIFIERS

#: The demo's CaloMan (also in configs/demo.yaml; a test keeps the two equal). Sized for
#: ~5 minutes end to end on 2 CPU cores.
DEMO_CONFIG: dict[str, Any] = {
    "model": "caloman",
    "dataset": "1-photons",
    "preprocessing": "caloflow",
    "autoencoder": "ae",
    "latent_dim": 20,
    "hidden": [256, 256],
    "decoder_noise": "zero-inflated",
    "condition_on_layers": True,
    "threshold_mev": 0.01,
    "energy_flow": {"type": "coupling", "transforms": 4, "bins": 8, "hidden": [64, 64],
                    "residual": True, "bound": 5.0},
    "latent_flow": {"type": "coupling", "transforms": 4, "bins": 8, "hidden": [128, 128],
                    "residual": True, "bound": 5.0},
    "training": {
        "energy_flow": {"epochs": 12, "batch_size": 512, "lr": 1e-3, "device": "cpu"},
        "autoencoder": {"epochs": 12, "batch_size": 256, "lr": 1e-3, "scheduler": "onecycle",
                        "max_lr": 2e-3, "device": "cpu"},
        "latent_flow": {"epochs": 15, "batch_size": 512, "lr": 1e-3, "device": "cpu"},
    },
}

#: Files and folders the demo owns inside its output directory.
OWNED = ("demo.json", "simulated.h5", "run", "generated.h5", "evaluation")


@dataclass
class DemoSettings:
    """What the demo does (stamped in ``demo.json``; a rerun must match or overwrite).

    Attributes:
        n_train: Simulated showers for training (10 % of them validate).
        n_test: Held-out simulated showers (the evaluation reference).
        seed: Seed of simulation, training and generation.
        cls_epochs: Epochs of a DNN classifier test, if ``modes`` asks for one.
        modes: Evaluation modes passed to :func:`caloforge.evaluation.evaluate`.
        config: The CaloMan recipe.
    """

    n_train: int = 10_000
    n_test: int = 3_000
    seed: int = 0
    cls_epochs: int = 10
    modes: tuple[str, ...] = ("hist", "cls-gbdt-low", "cls-gbdt-high")
    config: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEMO_CONFIG))

    def stamp(self) -> dict[str, Any]:
        d = asdict(self)
        d["modes"] = list(self.modes)
        return d


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[demo] {msg}", flush=True)


def prepare_dir(out: Path, settings: DemoSettings, overwrite: bool) -> None:
    """Create ``out`` or check that it is this demo's directory; with ``overwrite`` delete
    the demo's own outputs (only the names in :data:`OWNED`)."""
    stamp_path = out / "demo.json"
    if out.exists() and not out.is_dir():
        raise CaloforgeError(f"{out}: expected a directory for the demo, found a file")
    if overwrite and out.exists():
        for name in OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if stamp_path.exists():
        try:
            old = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            old = None
        if old != json.loads(json.dumps(settings.stamp())):
            raise CaloforgeError(f"{stamp_path}: expected the settings of this demo, found a "
                                 f"demo made with other settings (use --overwrite)")
    else:
        others = [p.name for p in out.iterdir() if p.name not in OWNED]
        if any(not n.startswith(".") for n in others):
            raise CaloforgeError(f"{out}: expected an empty or demo directory, found other "
                                 f"files ({', '.join(sorted(others)[:3])}); choose another -o")
        with atomic_path(stamp_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(settings.stamp(), indent=2))


def run_demo(out: str | os.PathLike = "caloforge_demo", *, overwrite: bool = False,
             settings: DemoSettings | None = None, progress: bool = True,
             simulate_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run (or finish) the demo in ``out``; return a summary with the report path.

    Args:
        out: Output directory (created).
        overwrite: Replace a previous demo's outputs instead of reusing them.
        settings: Sizes, seed and the CaloMan recipe (default :class:`DemoSettings`).
        progress: Progress bars and step messages.
        simulate_fn: Replacement for :func:`caloforge.simulate.simulate` (tests).

    Returns:
        ``{"report": path, "metrics": dict, "seconds": {step: s}, "out": path}``.
    """
    import numpy as np
    import torch

    from caloforge.data import ShowerSet, read_showers, split, write_showers
    from caloforge.geometry import Geometry
    from caloforge.models import model_class
    from caloforge.models.base import load_model

    settings = settings or DemoSettings()
    out = Path(out)
    prepare_dir(out, settings, overwrite)
    cfg = settings.config
    dataset = cfg.get("dataset", "1-photons")
    geo = Geometry.preset(dataset)
    seconds: dict[str, float] = {}

    # 1. simulate -------------------------------------------------------------------------
    t0 = time.perf_counter()
    sim_path = out / "simulated.h5"
    n_total = settings.n_train + settings.n_test
    if sim_path.exists():
        _say(f"reusing {sim_path}", progress)
        data = read_showers(sim_path, geo)
    else:
        _say(f"simulating {n_total} {dataset} showers ...", progress)
        if simulate_fn is None:
            from caloforge.simulate import simulate as simulate_fn
        data = simulate_fn(dataset, n_total, seed=settings.seed, progress=progress)
        write_showers(sim_path, data, overwrite=True)
    if len(data) != n_total:
        raise CaloforgeError(f"{sim_path}: expected {n_total} showers, found {len(data)} "
                             f"(use --overwrite)")
    seconds["simulate"] = time.perf_counter() - t0
    f_test = settings.n_test / n_total
    f_val = 0.1 * (1 - f_test)
    train, val, test = split(data, (1 - f_test - f_val, f_val, f_test), seed=settings.seed)

    # 2. train ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    run_dir = out / "run"
    model_path = run_dir / "model.pt"
    if model_path.exists():
        _say(f"reusing {model_path}", progress)
        model = load_model(model_path)
    else:
        _say(f"training CaloMan on {len(train)} showers (checkpoints in {run_dir}) ...",
             progress)
        torch.manual_seed(settings.seed)
        model = model_class(cfg["model"])(geo, cfg)
        model.fit(train, val, run_dir, resume=True, progress=progress, seed=settings.seed)
        model.save(model_path)
    seconds["train"] = time.perf_counter() - t0

    # 3. generate -------------------------------------------------------------------------
    t0 = time.perf_counter()
    gen_path = out / "generated.h5"
    if gen_path.exists():
        _say(f"reusing {gen_path}", progress)
        generated = read_showers(gen_path, geo)
    else:
        _say(f"generating {len(test)} showers ...", progress)
        torch.manual_seed(settings.seed + 1)
        t_gen = time.perf_counter()
        x = model.sample(torch.as_tensor(test.e_inc, dtype=torch.float32))
        gen_ms = 1e3 * (time.perf_counter() - t_gen) / max(len(test), 1)
        _say(f"generated in {gen_ms:.3f} ms per shower", progress)
        generated = ShowerSet(test.e_inc, x.double().numpy().astype(np.float32), geo)
        write_showers(gen_path, generated, overwrite=True)
    seconds["generate"] = time.perf_counter() - t0

    # 4. evaluate -------------------------------------------------------------------------
    t0 = time.perf_counter()
    from caloforge.evaluation import evaluate

    eval_dir = out / "evaluation"
    metrics_path = eval_dir / "metrics.json"
    if metrics_path.exists() and (eval_dir / "report.html").exists():
        _say(f"reusing {eval_dir}", progress)
        metrics = json.loads(metrics_path.read_text())
    else:
        _say("evaluating (histograms, separation power, boosted-tree classifiers) ...",
             progress)
        eval_dir.mkdir(parents=True, exist_ok=True)
        metrics = evaluate(generated, test, modes=settings.modes, out_dir=eval_dir,
                           epochs=settings.cls_epochs, seed=settings.seed, device="cpu",
                           progress=progress, overwrite=True)
    seconds["evaluate"] = time.perf_counter() - t0
    report = eval_dir / "report.html"
    return {"report": report, "metrics": metrics, "seconds": seconds, "out": out}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines about a finished demo."""
    m = result.get("metrics") or {}
    lines = []
    for tag, name in CLASSIFIERS:
        if m.get(f"auc_{tag}") is not None:
            err = m.get(f"auc_{tag}_err") or 0.0
            lines.append(f"classifier AUC ({name}, {m.get('n_reference')} showers per side): "
                         f"{m[f'auc_{tag}']:.3f} ± {err:.3f}: {m.get(f'reading_{tag}')}")
    sep = m.get("separation_power") or {}
    if sep:
        vals = [v for v in sep.values() if isinstance(v, int | float)]
        if vals:
            lines.append(f"mean separation power over {len(vals)} features: "
                         f"{sum(vals) / len(vals):.4f}  (0 = identical histograms)")
    secs = result.get("seconds", {})
    lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items())
                 + f" (total {sum(secs.values()):.0f} s)")
    lines.append(f"report: {Path(result['report']).resolve()}")
    return lines
