"""The GPU campaign: every caloforge speed and quality figure that needs a GPU, in one command.

One run, on one GPU, within ``--budget`` seconds of wall time (default 520 s, for a 9-minute
slot), on a machine that has PyTorch, NumPy, SciPy, h5py and scikit-learn but neither caloforge
nor zuko installed: the script puts ``src/`` on ``sys.path`` itself and imports zuko (and tqdm,
PyYAML where missing) from the wheels in ``--wheels`` (default ``benchmarks/wheels``; zuko and
tqdm are committed there, both pure Python). Steps:

1. **data**: 121,000 dataset-1 photon showers from the reference simulator (training) and a
   second, independent reference sample (``--ref-n``, default 121,000), in memory (or
   ``--data`` / ``--reference`` files);
2. **judge**: judge-power cells of the official CaloChallenge DNNs (``cls-low`` and
   ``cls-high``, 50 epochs, width 2048) at the official dataset-1 size, 121,000 showers per
   side, on the known distortions of ``benchmarks/judge_power.py`` (the same simulator seeds:
   reference = seed 1, distorted = seed 2): the cells a 2-core CPU can hardly afford (41-66 min
   a cell there; all eight are now measured on CPU). Cells already in
   ``benchmarks/out/judge_power/results_default.json`` are skipped; ``python
   benchmarks/judge_power.py --import-campaign JSON`` adds the others to its table, marked as
   GPU cells;
3. **sampling**: every shipped sampler (CaloFlow teacher with the textbook and the incremental
   MAF inverse, student, CaloINN, CaloMan, and every ``configs/*/`` recipe for datasets 2/3)
   untrained at recipe size, ms per shower at batch 1, 100 and 10,000 in the variants
   ``fp32`` (eager), ``bf16`` (eager under ``torch.autocast``), ``compile`` (the model's
   ``compiled_sampler()``, largest batch only) and ``cuda-graph`` (the one-pass flow part
   replayed from a CUDA graph; GPU only); then student/teacher and CaloINN/teacher speed-ups
   at batch 10,000 (the published CaloFlow v2 figure is 500x);
4. **train-caloinn**, **train-caloman**: the recipes ``configs/caloinn/1-photons.yaml`` and
   ``configs/caloman/1-photons-faithful.yaml`` at full size on the training sample, for as
   many epochs as the step's time budget allows (one calibration epoch measures the time per
   epoch; the table states epochs run vs the recipe's);
5. **eval-caloinn**, **eval-caloman**: showers generated at the reference energies, judged
   with the official protocol: the CaloChallenge DNN classifiers ``cls-low`` and ``cls-high``
   (50 epochs, width 2048, on the GPU) and the boosted-tree classifiers ``cls-gbdt-*`` where
   the installed evaluation offers them; plus the mean separation power of fp32 vs bf16
   samples.

Every step runs under its own time limit (``SIGALRM``); a step that runs out of time or fails
is recorded in the JSON with its error and the script continues with the steps that do not
depend on it, then exits with status 1 and a message naming the failed steps. Outputs in
``--out``: ``campaign.json`` (rewritten after every step, so a killed run leaves its partial
results) and ``campaign.md`` (the tables; every row names the GPU).

``--smoke`` runs the same steps at toy sizes on the CPU (tiny networks, 2,000 showers, batch
sizes 1 and 10, 2 classifier epochs, torch.compile with the eager backend): about one minute
on an idle 2-core machine (its budget, 215 s, leaves room for a shared one);
``tests/test_gpu_campaign.py`` runs it in the default test suite. ``--render JSON``
writes the "gpu" section of ``BENCHMARKS.md`` from a campaign JSON (smoke results are
refused).

Usage (on the GPU machine, from the repository root)::

    pip download pyyaml --no-deps -d benchmarks/wheels   # beforehand, only if PyYAML is missing
    python benchmarks/gpu_campaign.py --out OUTDIR        # about 9 minutes on one GPU
    python benchmarks/gpu_campaign.py --render OUTDIR/campaign.json   # back on the dev machine
    python benchmarks/gpu_campaign.py --smoke --out /tmp/smoke        # CPU, < 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

#: Modules the campaign needs, with what provides them when missing.
REQUIRED = {"torch": "PyTorch", "numpy": "NumPy", "scipy": "SciPy", "h5py": "h5py",
            "sklearn": "scikit-learn",
            "yaml": "PyYAML: pip download pyyaml --no-deps -d benchmarks/wheels",
            "tqdm": "tqdm: wheel in benchmarks/wheels", "zuko": "zuko: wheel in benchmarks/wheels"}


# --------------------------------------------------------------------------------------------
# environment


def bootstrap(wheels: Path | None) -> list[str]:
    """Put ``src/`` first on ``sys.path`` and every ``*.whl`` of ``wheels`` last (installed
    packages win; a pure-Python wheel is importable as a zip). Returns the wheels added."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    added = []
    if wheels is not None and wheels.is_dir():
        for whl in sorted(wheels.glob("*.whl")):
            if str(whl) not in sys.path:
                sys.path.append(str(whl))
                added.append(whl.name)
    importlib.invalidate_caches()
    return added


def preflight() -> dict[str, str]:
    """Import every required module; exit with status 2 and one message naming the missing
    ones. Returns module -> where it was imported from."""
    found, missing = {}, []
    for mod, what in REQUIRED.items():
        try:
            m = importlib.import_module(mod)
            found[mod] = f"{getattr(m, '__version__', '?')} ({Path(m.__file__).parent})"
        except ImportError as exc:
            missing.append(f"{mod} [{what}]: {exc}")
    if missing:
        print("gpu_campaign: error: missing modules: " + "; ".join(missing), file=sys.stderr)
        raise SystemExit(2)
    import caloforge  # noqa: F401  (src/ on the path)

    found["caloforge"] = str(Path(caloforge.__file__).parent)
    return found


# --------------------------------------------------------------------------------------------
# time limits


class StepTimeout(Exception):
    """A step (or a measurement inside one) used up its time budget; ``what`` names the
    limit that fired."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`StepTimeout` in the main thread when the block runs longer than
    ``seconds`` (wall). Nests: an enclosing, shorter limit still fires with its own message,
    and it is re-armed with its remaining time on exit."""
    if seconds <= 0:
        raise StepTimeout(f"{what}: no time left (budget {seconds:.1f} s)", what)
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
    start = time.monotonic()
    old_handler = signal.getsignal(signal.SIGALRM)
    own = not outer_left or seconds < outer_left

    def handler(signum: int, frame: Any) -> None:
        raise StepTimeout(f"{what} ran out of time (budget {seconds:.1f} s)", what)

    if own:
        signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds if own else outer_left)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer_left - (time.monotonic() - start), 1e-3))


class Campaign:
    """Runs the steps against one global deadline and records everything in one JSON."""

    def __init__(self, out: Path, budget: float, info: dict[str, Any]) -> None:
        self.out, self.budget = out, budget
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget
        self.failures: list[str] = []
        self.result: dict[str, Any] = {**info, "budget_s": budget, "steps": [], "sampling": [],
                                       "ratios": [], "training": [], "evaluation": [],
                                       "judge": []}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        """Seconds to the global deadline."""
        return self.deadline - time.monotonic()

    def step(self, name: str, fn: Callable[[float], Any], cap: float, reserve: float = 0.0
             ) -> Any:
        """Run ``fn(budget)`` with ``budget = min(cap, time left - reserve)`` seconds; record
        status ``ok``, ``timeout`` or ``error``; return its value (None when it failed)."""
        budget = min(cap, self.left() - reserve)
        rec: dict[str, Any] = {"name": name, "budget_s": round(budget, 1)}
        print(f"== {name} (budget {budget:.0f} s, {self.left():.0f} s left in all)", flush=True)
        t = time.monotonic()
        value = None
        try:
            with time_limit(budget, f"step {name!r}"):
                value = fn(budget)
            rec["status"] = "ok"
        except StepTimeout as exc:
            rec.update(status="timeout", error=str(exc))
        except Exception as exc:  # recorded and reported; the independent steps still run
            traceback.print_exc()
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        rec["seconds"] = round(time.monotonic() - t, 2)
        if rec["status"] != "ok":
            self.failures.append(f"{name}: {rec['error']}")
            print(f"!! gpu_campaign: step {name} FAILED ({rec['status']}): {rec['error']}",
                  file=sys.stderr, flush=True)
        self.result["steps"].append(rec)
        self.save()
        return value

    def skip(self, name: str, why: str) -> None:
        """Record a step that could not run because a step it needs failed."""
        self.result["steps"].append({"name": name, "status": "skipped", "error": why,
                                     "budget_s": 0, "seconds": 0})
        self.failures.append(f"{name}: skipped ({why})")
        self.save()

    def save(self) -> None:
        """Write campaign.json and campaign.md (atomically: temp file + rename)."""
        self.result["wall_s"] = round(time.monotonic() - self.t0, 1)
        self.result["failures"] = list(self.failures)
        for name, text in (("campaign.json", json.dumps(self.result, indent=1)),
                           ("campaign.md", render_markdown(self.result))):
            tmp = self.out / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.out / name)


# --------------------------------------------------------------------------------------------
# models


#: Toy-size overrides of each recipe for --smoke (the same code paths, tiny networks).
SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {
    "caloflow": {"flow1": {"transforms": 2, "hidden": [16]},
                 "flow2": {"transforms": 2, "hidden": [24]}, "sampling": {"batch_size": 100}},
    "caloflow-student": {"flow2": {"hidden": [24]}, "sampling": {"batch_size": 100},
                         "teacher": {"flow1": {"transforms": 2, "hidden": [16]},
                                     "flow2": {"transforms": 2}}},
    "caloinn": {"flow": {"transforms": 2, "hidden": [32, 32], "bins": 4}},
    "caloman": {"hidden": [32, 32], "latent_dim": 4,
                "energy_flow": {"transforms": 2, "hidden": [16, 16]},
                "latent_flow": {"transforms": 2, "hidden": [16, 16]}},
}


def deep_update(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with the nested mapping ``over`` merged in."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else copy.deepcopy(v)
    return out


def recipe(config: str, smoke: bool, device: str) -> dict[str, Any]:
    """The recipe ``configs/<config>``, toy-sized under ``smoke``, training on ``device``."""
    from caloforge.config import load_config, override_training

    cfg = load_config(ROOT / "configs" / config)
    if smoke:
        cfg = deep_update(cfg, SMOKE_OVERRIDES.get(cfg["model"], {}))
    return override_training(cfg, device=device)


def build(name: str, cfg: dict[str, Any], device: Any) -> Any:
    """An untrained model ``name`` from recipe ``cfg`` on ``device`` (eval mode)."""
    import torch

    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    torch.manual_seed(0)
    model = model_class(name)(Geometry.preset(cfg.get("dataset", "1-photons")), cfg)
    return model.to(device).eval()


def sampler_rows(smoke: bool = False) -> list[tuple[str, str, str, str, str | None]]:
    """(key, label, model name, recipe, MAF solver) of every shipped sampler: the dataset-1
    photon models and every recipe under ``configs/`` for datasets 2 and 3 (keys
    ``<model>-ds<d>`` plus ``-cpu`` etc. from the recipe name). ``smoke``: of datasets 2 and 3
    only the dataset-2 ``-cpu`` recipes of the one-pass samplers (the sequential MAF teachers
    take seconds per call even at toy sizes on a CPU)."""
    rows: list[tuple[str, str, str, str, str | None]] = [
        ("teacher-full", "CaloFlow teacher (MAF), textbook inverse", "caloflow",
         "caloflow/1-photons.yaml", "full"),
        ("teacher", "CaloFlow teacher (MAF), incremental inverse", "caloflow",
         "caloflow/1-photons.yaml", "incremental"),
        ("student", "CaloFlow student (IAF)", "caloflow-student",
         "caloflow/1-photons-student.yaml", None),
        ("caloinn", "CaloINN (RQS coupling)", "caloinn", "caloinn/1-photons.yaml", None),
        ("caloman", "CaloMan, zero-inflated decoder", "caloman",
         "caloman/1-photons-faithful.yaml", None),
    ]
    import yaml

    for path in sorted((ROOT / "configs").glob("*/*.yaml")):
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            continue
        if str(cfg.get("dataset")) in ("2", "3") and cfg.get("model") != "caloflow-student":
            rel = str(path.relative_to(ROOT / "configs"))
            variant = path.stem[1:].lstrip("-")  # "2-student-cpu" -> "student-cpu"
            if smoke and not (path.stem == "2-cpu" and cfg.get("model") in SMOKE_DS_MODELS):
                continue
            rows.append((f"{cfg['model']}-ds{cfg['dataset']}" + (f"-{variant}" if variant else ""),
                         f"{cfg['model']}, dataset {cfg['dataset']} ({rel})", str(cfg["model"]),
                         rel, None))
    return rows


#: Dataset-2/3 models whose sampler is one pass per block (cheap enough for --smoke on a CPU).
SMOKE_DS_MODELS = ("caloman", "vae-inn", "l2lflows")


# --------------------------------------------------------------------------------------------
# sampling


class NotApplicable(Exception):
    """A variant that does not exist for a model or device."""


class GraphedFn:
    """``fn(*tensors) -> tensor`` replayed from one CUDA graph per input shape.

    The first call at a shape warms ``fn`` up on a side stream and captures it; later calls
    copy the inputs into the captured buffers, replay and return a copy of the output.
    ``fn`` must be free of host synchronisation and host-to-device copies."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.graphs: dict[tuple, tuple[Any, list, Any]] = {}

    def __call__(self, *args: Any) -> Any:
        import torch

        key = tuple((tuple(a.shape), a.dtype) for a in args)
        if key not in self.graphs:
            static = [a.clone() for a in args]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.fn(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self.fn(*static)
            self.graphs[key] = (graph, static, out)
        graph, static, out = self.graphs[key]
        for s, a in zip(static, args, strict=True):
            s.copy_(a)
        graph.replay()
        return out.clone()


#: Relative share of the sampling budget per row (the textbook teacher is the slowest).
ROW_WEIGHT = {"teacher-full": 4.0, "teacher": 1.5}


def make_variant(variant: str, model: Any, device: Any) -> Callable[[Any], Any]:
    """The sampler of ``model`` in ``variant`` (see the module docstring); raises
    :class:`NotApplicable` where the variant does not exist."""
    import torch

    if variant == "fp32":
        return model.sample
    if variant == "bf16":
        def bf16(e: Any) -> Any:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return model.sample(e)
        return bf16
    is_maf = type(getattr(model, "flow2", None)).__name__ == "MAF"
    if variant == "compile":
        if is_maf:
            raise NotApplicable("the MAF inverse is a loop of voxels x blocks steps")
        return model.compiled_sampler()
    if variant == "cuda-graph":
        if device.type != "cuda":
            raise NotApplicable("CUDA graphs need a GPU")
        if hasattr(model, "flow2") and hasattr(model, "_flow2_inverse"):
            model._flow2_inverse = GraphedFn(model.flow2.inverse)
            return model.sample
        if hasattr(model, "from_noise") and hasattr(model, "flow"):
            graphed = GraphedFn(model.from_noise)
            ref = model.scaler.mean

            def graph_sample(e: Any) -> Any:
                e = torch.as_tensor(e, dtype=ref.dtype, device=ref.device).reshape(-1)
                return graphed(model.flow.noise(len(e), ref), e)
            return graph_sample
        raise NotApplicable("the sampler draws noise inside its passes")
    raise ValueError(f"unknown variant {variant!r}")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler(fn: Callable[[Any], Any], batch: int, device: Any, min_time: float,
                 min_calls: int = 2) -> tuple[float, float, Any]:
    """(first call s, mean s per call over >= ``min_calls`` calls and ``min_time`` s, last
    output) of
    ``fn`` on ``batch`` showers at 65,536 MeV (CUDA synchronised, inference mode)."""
    import torch

    e = torch.full((batch,), 65536.0, dtype=torch.float64, device=device)
    with torch.inference_mode():
        t = time.perf_counter()
        out = fn(e)
        _sync(device)
        first = time.perf_counter() - t
        calls, t = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - t < min_time:
            out = fn(e)
            _sync(device)
            calls += 1
    return first, (time.perf_counter() - t) / calls, out


def step_sampling(budget: float, camp: Campaign, args: argparse.Namespace, device: Any) -> None:
    """Every sampler x variant x batch size; each model gets an equal share of the budget and
    skips a measurement projected not to fit (marked as skipped, with the projection)."""
    import torch

    sys.path.insert(0, str(HERE))
    from sampling import count_gflop, release_memory

    t_end = time.monotonic() + budget - 2.0
    rows = [r for r in sampler_rows(args.smoke)
            if not args.rows or r[0] in args.rows.split(",")]
    variants = ["fp32", "cuda-graph", "bf16", "compile"]
    weights = [ROW_WEIGHT.get(r[0], 1.0) for r in rows]
    for i, (key, label, name, config, solver) in enumerate(rows):
        share = (t_end - time.monotonic()) * weights[i] / sum(weights[i:])
        row_end = time.monotonic() + share
        print(f"  {label} ({share:.0f} s)", flush=True)
        cfg = recipe(config, args.smoke, str(device))
        model = build(name, cfg, device)
        if solver is not None:
            model.flow2.set_solver(solver)
        internal = getattr(model, "sampling_cfg", {}).get("batch_size")
        if internal is not None and device.type == "cuda":
            model.sampling_cfg["batch_size"] = internal = max(internal, max(args.sizes))
        rec: dict[str, Any] = {
            "key": key, "label": label, "recipe": config, "gpu": camp.result["gpu"],
            "params": sum(p.numel() for p in model.parameters()), "internal_batch": internal,
            "variants": {}}
        reference = None
        for j, variant in enumerate(variants):
            # fp32 (the reference figure) may use half of the row's time, the others share
            v_share = (row_end - time.monotonic()) * (0.5 if j == 0 else 1 / (len(variants) - j))
            vrec: dict[str, Any] = {"ms": {}, "first_call_s": {}, "skipped": {}}
            rec["variants"][variant] = vrec
            try:
                fn = make_variant(variant, model, device)
            except NotApplicable as exc:
                vrec["not_applicable"] = str(exc)
                continue
            sizes = [max(args.sizes)] if variant == "compile" or (
                args.smoke and variant != "fp32") else list(args.sizes)
            if args.smoke and key.startswith("teacher"):  # 368 x blocks Python steps per call
                sizes = [min(args.sizes)]
            if args.smoke and "-ds" in key and variant != "fp32":  # big geometries: one check
                vrec["not_applicable"] = "smoke: fp32 only for datasets 2/3"
                continue
            per_shower, last_b = None, 1
            try:
                with time_limit(v_share, f"{key} {variant}"):
                    for b in sizes:
                        # linear in the batch size on a CPU; on a GPU a larger batch is
                        # at least as slow per call (a lower bound: the limit catches the rest)
                        projected = 0.0 if per_shower is None else 3 * per_shower * (
                            last_b if device.type == "cuda" else b)
                        remaining = row_end - time.monotonic()
                        if projected > remaining:
                            vrec["skipped"][b] = f"projected {projected:.0f} s > {remaining:.0f} s"
                            continue
                        first, t, out = time_sampler(fn, b, device, args.min_time,
                                                     args.min_calls)
                        per_shower, last_b = t / b, b
                        vrec["ms"][b] = 1e3 * per_shower
                        vrec["first_call_s"][b] = round(first, 3)
                        finite = torch.isfinite(out).all(1).float().mean().item()
                        vrec.setdefault("finite_fraction", {})[b] = finite
                        if variant == "fp32" and b == max(sizes):
                            reference = out.double().sum(1).mean().item()
                        elif b == max(args.sizes) and reference:
                            vrec["mean_energy_vs_fp32"] = (
                                out.double().sum(1).mean().item() / reference)
                        print(f"    {variant} bs {b}: {1e3 * per_shower:.4g} ms/shower "
                              f"(first call {first:.2f} s)", flush=True)
            except StepTimeout as exc:
                if exc.what != f"{key} {variant}":  # the whole step's limit: stop the step
                    raise
                vrec["timeout"] = str(exc)
                camp.failures.append(f"sampling {key} {variant}: {exc}")
                print(f"!! gpu_campaign: {exc}", file=sys.stderr, flush=True)
            except Exception as exc:  # compile / capture support differs between platforms
                if "step 'sampling'" in str(exc):  # the step's limit, wrapped by dynamo
                    raise StepTimeout(str(exc), "sampling") from exc
                timeout = "StepTimeout" in f"{type(exc).__name__} {exc}"  # wrapped by dynamo
                what = "timeout" if timeout else "error"
                vrec[what] = (f"{key} {variant} ran out of time (budget {v_share:.1f} s)"
                              if timeout else f"{type(exc).__name__}: {str(exc)[:300]}")
                camp.failures.append(f"sampling {key} {variant}: {vrec[what]}")
                print(f"!! gpu_campaign: sampling {key} {variant}: {vrec[what]}",
                      file=sys.stderr, flush=True)
            finally:
                if hasattr(model, "_flow2_inverse"):
                    model._flow2_inverse = None
        if row_end - time.monotonic() > 0.2 * share:  # FlopCounterMode is slow: if time is left
            try:
                with time_limit(row_end - time.monotonic(), f"{key} FLOP count"):
                    rec["gflop_per_shower"] = count_gflop(model.sample, device)
            except StepTimeout as exc:
                if exc.what != f"{key} FLOP count":
                    raise
            except Exception as exc:  # FLOP counting is informative only
                rec["gflop_error"] = f"{type(exc).__name__}: {exc}"[:200]
        camp.result["sampling"].append(rec)
        camp.save()
        del model
        release_memory()
    camp.result["ratios"] = speedups(camp.result["sampling"], args.sizes)
    camp.save()
    torch._dynamo.reset()
    torch.set_grad_enabled(True)  # a limit that fired inside dynamo may leave grad mode off


def best_ms(rec: dict[str, Any], b: int) -> tuple[float, str] | None:
    """Fastest (ms per shower, variant) of a sampling record at batch ``b``."""
    got = [(v["ms"][b], name) for name, v in rec["variants"].items() if b in v.get("ms", {})]
    return min(got) if got else None


def speedups(sampling: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """Student/CaloINN/CaloMan speed-ups over both teachers (fastest variants) at the largest
    batch size of ``sizes`` at which both rows were measured (10,000 on a GPU)."""
    by_key = {r["key"]: r for r in sampling}
    out = []
    for fast in ("student", "caloinn", "caloman"):
        for slow in ("teacher-full", "teacher"):
            if fast not in by_key or slow not in by_key:
                continue
            for b in sorted(sizes, reverse=True):
                f, s = best_ms(by_key[fast], b), best_ms(by_key[slow], b)
                if f and s:
                    out.append({"fast": fast, "slow": slow, "batch": b, "ratio": s[0] / f[0],
                                "fast_ms": f[0], "fast_variant": f[1], "slow_ms": s[0],
                                "slow_variant": s[1]})
                    break
    return out


# --------------------------------------------------------------------------------------------
# training and evaluation


def step_data(budget: float, args: argparse.Namespace) -> tuple[Any, Any]:
    """(training showers, reference showers): from files or simulated in memory."""
    from caloforge.data import read_showers
    from caloforge.simulate import simulate

    workers = 1 if args.smoke else max(1, min(16, (os.cpu_count() or 2) - 1))
    if args.data:
        train = read_showers(args.data)
    else:
        train = simulate("1-photons", args.train_n, seed=1, workers=workers)
    ref = read_showers(args.reference) if args.reference else \
        simulate("1-photons", args.ref_n, seed=2, workers=workers)
    print(f"  {len(train):,} training and {len(ref):,} reference showers", flush=True)
    return train, ref


#: The judge-power cells of the **judge** step, most needed first: (setting, distortion).
#: Settings and distortions as named in ``benchmarks/judge_power.py``.
JUDGE_CELLS = [("dnn-official-low", "lateral +10%"), ("dnn-official-low", "energies shuffled"),
               ("dnn-official-high", "scale 1.10"), ("dnn-official-high", "lateral +10%"),
               ("dnn-official-high", "energies shuffled"), ("dnn-official-low", "null"),
               ("dnn-official-high", "null"), ("dnn-official-low", "scale 1.10")]
#: Where ``benchmarks/judge_power.py`` keeps its dataset-1 cells.
JUDGE_STORE = ROOT / "benchmarks" / "out" / "judge_power" / "results_default.json"


def step_judge(budget: float, camp: Campaign, args: argparse.Namespace, data: tuple[Any, Any],
               device: Any) -> None:
    """Judge-power cells (:data:`JUDGE_CELLS`) at ``args.judge_n`` showers per side (121,000;
    500 under ``--smoke``): the reference is the first n showers of the seed-1 sample, the
    "generated" side the first n of the seed-2 sample, distorted; the DNN runs on ``device``
    with the campaign's classifier settings (official outside ``--smoke``). Cells already
    measured (on a CPU) in :data:`JUDGE_STORE` are skipped, except under ``--smoke``. Each
    cell is saved at once; a cell that would not finish before the step's budget (judged by
    the last cell's time) is left for a later run and listed in ``judge_not_run``."""
    import judge_power  # benchmarks/ is on sys.path (main)

    from caloforge.evaluation.distortions import distort
    from caloforge.evaluation.inputs import classifier_input

    ref_all, other_all = data
    n = min(args.judge_n, len(ref_all), len(other_all))
    ref, other = ref_all.subset(slice(0, n)), other_all.subset(slice(0, n))
    done = {} if args.smoke or not JUDGE_STORE.exists() else json.loads(JUDGE_STORE.read_text())
    toy = {"epochs": args.cls_epochs, "width": args.cls_width, "min_steps": 0} \
        if args.smoke else {}
    ref_x: dict[str, Any] = {}
    deadline, last = time.monotonic() + budget, 0.0
    for i, (setting, dist) in enumerate(JUDGE_CELLS):
        key = f"{setting}|{n}|{dist}"
        if key in done:
            print(f"  {key}: measured before (CPU), skipped", flush=True)
            continue
        if last > deadline - time.monotonic():  # the next cell would not finish in time
            camp.result["judge_not_run"] = [f"{a}|{n}|{b}" for a, b in JUDGE_CELLS[i:]]
            print(f"  stopped before {key}: a cell takes ~{last:.0f} s", flush=True)
            return
        mode = judge_power.SETTINGS[setting][0]
        t = time.monotonic()
        if mode not in ref_x:
            ref_x[mode] = classifier_input(mode, ref, ref.geometry.eval_threshold)
        cell = judge_power.run_cell(setting, distort(other, dist), ref, device=device.type,
                                    xr=ref_x[mode], **toy)
        camp.result["judge"].append({
            "key": key, "setting": setting, "n": n, "distortion": dist,
            "gpu": camp.result["gpu"], "device": device.type, "data": args.data_source,
            "cls_epochs": args.cls_epochs, "cls_width": args.cls_width, **cell})
        camp.save()
        last = time.monotonic() - t
        print(f"  {key}: AUC {cell['auc']:.3f} ± {cell['auc_err']:.3f}"
              f"{'' if cell['learned'] else ' (did not learn)'} in {last:.1f} s", flush=True)


def step_train(budget: float, camp: Campaign, args: argparse.Namespace, name: str,
               config: str, train: Any, device: Any) -> Any:
    """Train recipe ``config`` for as many epochs as ``budget`` allows (after one calibration
    epoch), keeping time for generation; return the trained model."""
    import numpy as np
    import torch

    start = time.monotonic()
    torch.set_grad_enabled(True)
    cfg = recipe(config, args.smoke, str(device))
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(train))
    n_val = len(train) // 10
    tr, va = train.subset(np.sort(perm[n_val:])), train.subset(np.sort(perm[:n_val]))
    training = cfg.get("training", {})
    stages = [v for v in training.values() if isinstance(v, dict)] or [training]
    recipe_epochs = max(int(s.get("epochs", 50)) for s in stages)
    model = build(name, cfg, device)
    t = time.monotonic()
    with torch.inference_mode(False), torch.enable_grad():
        model.fit(tr, va, None, epochs=1, progress=False)
    _sync(device)
    per_epoch = time.monotonic() - t
    reserve = args.generate_reserve
    left = budget - (time.monotonic() - start) - reserve
    epochs = min(recipe_epochs, args.max_epochs, int(0.75 * left / per_epoch))
    print(f"  calibration: {per_epoch:.1f} s per epoch (all stages); {left:.0f} s left -> "
          f"{epochs} of {recipe_epochs} recipe epochs", flush=True)
    if epochs < 1:
        raise StepTimeout(f"train {name}: one epoch takes {per_epoch:.1f} s, only {left:.0f} s "
                          f"left in the budget")
    model = build(name, cfg, device)
    t = time.monotonic()
    with torch.inference_mode(False), torch.enable_grad():
        history = model.fit(tr, va, None, epochs=None if epochs >= recipe_epochs else epochs,
                            progress=False)
    _sync(device)
    model.eval()
    seconds = time.monotonic() - t
    last = {k: v[-1] for k, v in (history or {}).items()
            if isinstance(v, list) and v and isinstance(v[-1], int | float)}
    camp.result["training"].append({
        "model": name, "recipe": config, "gpu": camp.result["gpu"], "n_train": len(tr),
        "n_val": len(va), "calibration_epoch_s": round(per_epoch, 2), "epochs": epochs,
        "recipe_epochs": recipe_epochs, "seconds": round(seconds, 1),
        "complete": epochs >= recipe_epochs,
        "params": sum(p.numel() for p in model.parameters()),
        "last": {k: float(v) for k, v in last.items() if k != "seconds"},
        "torch_threads": torch.get_num_threads()})
    return model


def generate(model: Any, ref: Any, chunk: int, bf16: bool = False) -> Any:
    """Showers of ``model`` at the reference energies (a ShowerSet, float32 MeV)."""
    import numpy as np
    import torch

    from caloforge.data import ShowerSet

    out = []
    device = model.device
    with torch.inference_mode():
        for lo in range(0, len(ref), chunk):
            e = torch.as_tensor(ref.e_inc[lo:lo + chunk], dtype=torch.float64)
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else \
                contextlib.nullcontext()
            with ctx:
                s = model.sample(e)
            out.append(s.detach().to("cpu", torch.float32).numpy())
    showers = np.nan_to_num(np.concatenate(out), nan=0.0, posinf=0.0).clip(min=0.0)
    return ShowerSet(ref.e_inc.copy(), showers, ref.geometry)


def classifier_metrics(gen: Any, ref: Any, args: argparse.Namespace, device: Any
                       ) -> dict[str, Any]:
    """The official classifier tests: ``evaluate`` with cls-low, cls-high and every
    ``cls-gbdt*`` mode it offers. The DNN tests go through
    :mod:`caloforge.evaluation.classifier` directly without matplotlib (which ``evaluate``
    imports for its plots) and under ``--smoke`` (toy settings without the minimum number of
    optimiser steps that ``evaluate`` imposes on non-official settings)."""
    import inspect

    settings = {"epochs": args.cls_epochs, "width": args.cls_width, "device": device.type}
    dnn = ["cls-low", "cls-high"]
    try:
        from caloforge.evaluation.runner import MODES, evaluate
    except ImportError as exc:
        MODES, evaluate, why = (), None, f"classifier module ({exc})"
    else:
        why = "classifier module (--smoke)" if args.smoke else ""
    out: dict[str, Any] = {"path": "caloforge.evaluation.evaluate", "timing_s": {}}
    if why:
        from caloforge.evaluation.classifier import classifier_test
        from caloforge.evaluation.inputs import classifier_input
        from caloforge.features import high_level_features

        if "min_steps" in inspect.signature(classifier_test).parameters:
            settings["min_steps"] = 0
        thr = ref.geometry.eval_threshold
        out["path"] = why
        feats = (high_level_features(gen, thr), high_level_features(ref, thr))
        for mode, tag in (("cls-low", "low"), ("cls-high", "high")):
            t = time.monotonic()
            xg = classifier_input(mode, gen, thr, feats[0])
            xr = classifier_input(mode, ref, thr, feats[1])
            r = classifier_test(xg, xr, ref.geometry.name, progress=False, **settings)
            out[f"auc_{tag}"], out[f"jsd_{tag}"] = float(r.auc), float(r.jsd)
            out["timing_s"][mode] = round(time.monotonic() - t, 1)
        settings.pop("min_steps", None)
        dnn = []
    gbdt = [m for m in MODES if m.startswith("cls-gbdt")]
    n = min(args.gbdt_n, len(ref))
    for modes, g, r in ((dnn, gen, ref),
                        (gbdt, gen.subset(slice(0, n)), ref.subset(slice(0, n)))):
        if not modes:
            continue
        m = evaluate(g, r, modes, None, progress=False, **settings)
        new = {k: v for k, v in m.items() if k.startswith(("auc_", "jsd_")) and v is not None}
        out.update(new)
        out["timing_s"].update(m.get("timing_s", {}))
        print(f"    {', '.join(modes)} ({len(g):,} showers): "
              + ", ".join(f"{k} {v:.4f}" for k, v in new.items() if k.startswith("auc_")
                          and not k.endswith(("_std", "_err"))), flush=True)
    out["gbdt_n"] = n if gbdt else None
    return out


def step_eval(budget: float, camp: Campaign, args: argparse.Namespace, name: str, model: Any,
              ref: Any, device: Any) -> None:
    """Generate at the reference energies and run the classifier tests; fp32 vs bf16 mean
    separation power on the first ``--sep-n`` showers."""
    from caloforge.evaluation import mean_separation_power

    t = time.monotonic()
    gen = generate(model, ref, args.gen_chunk)
    _sync(device)
    gen_s = time.monotonic() - t
    print(f"  generated {len(gen):,} showers in {gen_s:.1f} s", flush=True)
    rec: dict[str, Any] = {"model": name, "gpu": camp.result["gpu"], "n": len(gen),
                           "generate_s": round(gen_s, 2),
                           "generate_ms_per_shower": 1e3 * gen_s / len(gen),
                           "cls_epochs": args.cls_epochs, "cls_width": args.cls_width}
    camp.result["evaluation"].append(rec)
    n = min(args.sep_n, len(ref))
    sub = ref.subset(slice(0, n))
    rec["sep_power_fp32"] = float(mean_separation_power(gen.subset(slice(0, n)), sub))
    try:
        rec["sep_power_bf16"] = float(mean_separation_power(
            generate(model, sub, args.gen_chunk, bf16=True), sub))
    except Exception as exc:  # bf16 support differs between devices
        rec["sep_power_bf16_error"] = f"{type(exc).__name__}: {exc}"
    print(f"  mean separation power ({n:,} showers): fp32 {rec['sep_power_fp32']:.4f}, bf16 "
          f"{rec.get('sep_power_bf16', float('nan')):.4f}", flush=True)
    camp.save()
    rec.update(classifier_metrics(gen, ref, args, device))
    camp.save()


# --------------------------------------------------------------------------------------------
# report


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


def render_markdown(res: dict[str, Any]) -> str:
    """The campaign's tables (every row names the GPU)."""
    gpu = res.get("gpu", "?")
    sizes = res.get("sizes", [])
    lines = [f"GPU campaign (`benchmarks/gpu_campaign.py`{' --smoke' if res.get('smoke') else ''})"
             f": {gpu}; {res.get('machine', '')}; started {res.get('started', '?')}, wall "
             f"{res.get('wall_s', 0):.0f} s of a {res.get('budget_s', 0):.0f} s budget.", ""]
    if res.get("smoke"):
        lines += ["**Smoke run: toy networks on the CPU; these numbers only show that the "
                  "script works.**", ""]
    lines += ["Sampling, ms per shower (untrained models at recipe size, toy size under "
              "--smoke; end-to-end "
              "`model.sample`; \"-\": not measured, see the JSON for why):", ""]
    header = ["GPU", "model", "variant", *[f"bs {b:,}" for b in sizes], "first call s",
              "params", "GFLOP/shower"]
    rows = []
    for r in res.get("sampling", []):
        for name, v in r["variants"].items():
            if v.get("not_applicable"):
                continue
            ms = {int(k): x for k, x in v.get("ms", {}).items()}
            first = {int(k): x for k, x in v.get("first_call_s", {}).items()}
            note = v.get("timeout") or v.get("error")
            cells = [_ms(ms.get(b)) for b in sizes]
            if note:
                cells[-1] = f"{cells[-1]} ({note[:60]})"
            rows.append([gpu, r["label"], name, *cells,
                         f"{max(first.values()):.2f}" if first else "-",
                         f"{r['params'] / 1e6:.2f} M",
                         f"{r['gflop_per_shower']:.3g}" if "gflop_per_shower" in r else "-"])
    lines += [_table(header, rows), ""]
    if res.get("ratios"):
        lines += ["Speed-ups at the largest batch size (fastest variant of each; the published "
                  "CaloFlow v2 / v1 figure is 500x):", "",
                  _table(["GPU", "fast", "vs", "batch", "speed-up", "fast ms (variant)",
                          "slow ms (variant)"],
                         [[gpu, x["fast"], x["slow"], f"{x['batch']:,}", f"{x['ratio']:,.1f}x",
                           f"{_ms(x['fast_ms'])} ({x['fast_variant']})",
                           f"{_ms(x['slow_ms'])} ({x['slow_variant']})"]
                          for x in res["ratios"]]), ""]
    if res.get("training"):
        lines += ["Training (recipe at full size; epochs as many as the step's budget allowed):",
                  "", _table(["GPU", "model", "showers", "epochs run / recipe", "seconds",
                              "s per epoch (calibration)", "complete"],
                             [[gpu, t["model"], f"{t['n_train']:,}",
                               f"{t['epochs']} / {t['recipe_epochs']}", f"{t['seconds']:.0f}",
                               f"{t['calibration_epoch_s']:.1f}",
                               "yes" if t["complete"] else "no"]
                              for t in res["training"]]), ""]
    if res.get("evaluation"):
        keys = sorted({k for e in res["evaluation"] for k in e
                       if k.startswith("auc_") and not k.endswith(("_std", "_err"))})
        lines += ["Evaluation (showers generated at the reference energies; classifiers "
                  f"{res['evaluation'][0]['cls_epochs']} epochs, width "
                  f"{res['evaluation'][0]['cls_width']}):", "",
                  _table(["GPU", "model", "n", *[k.replace("auc_", "AUC ") for k in keys],
                          "sep. power fp32", "sep. power bf16", "generate ms/shower"],
                         [[gpu, e["model"], f"{e['n']:,}",
                           *[(f"{e[k]:.4f}" + (f" ± {e[k + '_err']:.4f}" if e.get(k + "_err")
                                                else "")) if k in e else "-" for k in keys],
                           f"{e.get('sep_power_fp32', float('nan')):.4f}",
                           f"{e['sep_power_bf16']:.4f}" if "sep_power_bf16" in e else "-",
                           f"{e['generate_ms_per_shower']:.4f}"]
                          for e in res["evaluation"]]), ""]
    if res.get("judge"):
        lines += ["Judge power (`benchmarks/judge_power.py` cells measured here: the official "
                  "DNNs on simulated dataset-1 photons, reference seed 1 against seed 2 "
                  "distorted; `*` = the classifier did not learn):", "",
                  _table(["GPU", "setting", "showers per side", "distortion", "AUC", "seconds"],
                         [[gpu, j["setting"], f"{j['n']:,}", j["distortion"],
                           f"{j['auc']:.3f} ± {j['auc_err']:.3f}" + ("" if j["learned"]
                                                                      else "*"),
                           f"{j['seconds']:.1f}"] for j in res["judge"]]), ""]
    lines += ["Steps:", "", _table(["step", "status", "seconds", "budget s"],
                                   [[s["name"], s["status"], f"{s['seconds']:.1f}",
                                     f"{s['budget_s']:.0f}"] for s in res.get("steps", [])])]
    if res.get("failures"):
        lines += ["", "Failures:", "", *[f"* {f}" for f in res["failures"]]]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def render_to_benchmarks(path: Path) -> int:
    """Write the "gpu" section of BENCHMARKS.md from a campaign JSON (not a smoke run)."""
    res = json.loads(path.read_text())
    if res.get("smoke") or res.get("device") != "cuda":
        print(f"gpu_campaign: error: {path}: expected the JSON of a GPU run, found a "
              f"{'smoke ' if res.get('smoke') else ''}run on {res.get('device')}",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    from _report import update_section

    update_section("gpu", "## GPU figures (`benchmarks/gpu_campaign.py`)\n\n"
                   + render_markdown(res) + f"\n\nRendered from `{path.name}` by "
                   "`python benchmarks/gpu_campaign.py --render JSON`.")
    print(f"wrote the gpu section of BENCHMARKS.md from {path}")
    return 0


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "gpu_campaign"),
                    help="output directory (campaign.json, campaign.md)")
    ap.add_argument("--wheels", default=str(HERE / "wheels"),
                    help="directory of wheels (zuko, tqdm, pyyaml) to import from when missing")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (< 2 minutes)")
    ap.add_argument("--render", metavar="JSON", default=None,
                    help="write BENCHMARKS.md's gpu section from a campaign JSON and exit")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--budget", type=float, default=None,
                    help="wall seconds for everything (default 520; smoke 215: it needs ~1 "
                         "minute on an idle 2-core machine, more when the machine is shared)")
    ap.add_argument("--rows", default="", help="sampling rows to run (default: all)")
    ap.add_argument("--data", default=None, help="training file (default: simulate in memory)")
    ap.add_argument("--reference", default=None, help="reference file (default: simulate)")
    ap.add_argument("--skip", default="", help="comma list of steps to leave out")
    ap.add_argument("--judge-budget", type=float, default=None,
                    help="cap of the judge step in seconds (default 80; e.g. 400 with the "
                         "other steps skipped: --skip sampling,train-caloinn,eval-caloinn,"
                         "train-caloman,eval-caloman)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 with --smoke)")
    args = ap.parse_args(argv)
    smoke = args.smoke
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.budget = args.budget or (215.0 if smoke else 520.0)
    args.sizes = [1, 10] if smoke else [1, 100, 10_000]
    args.min_time = 0.0 if smoke else 0.3
    args.min_calls = 1 if smoke else 2
    args.train_n = 2_000 if smoke else 121_000
    args.ref_n = 1_000 if smoke else 121_000
    args.cls_epochs = 2 if smoke else 50
    args.cls_width = 32 if smoke else 2048
    args.sep_n = 1_000 if smoke else 20_000
    args.gbdt_n = 200 if smoke else 20_000
    args.gen_chunk = 500 if smoke else 10_000
    args.generate_reserve = 2.0 if smoke else 15.0
    args.max_epochs = 2 if smoke else 10**6
    args.judge_n = 500 if smoke else 121_000
    args.data_source = ("files" if args.data or args.reference else
                        f"simulated 1-photons, seeds 1 and 2 ({args.train_n:,} / {args.ref_n:,})")
    #: step -> cap in seconds, in the order the steps run; each step leaves the caps of the
    #: steps after it that are not skipped
    args.plan = {
        "data": 15, "judge": 15, "sampling": 80, "train-caloinn": 20, "eval-caloinn": 30,
        "train-caloman": 20, "eval-caloman": 30,
    } if smoke else {
        "data": 50, "judge": 80, "sampling": 120, "train-caloinn": 95, "eval-caloinn": 45,
        "train-caloman": 85, "eval-caloman": 45}
    if args.judge_budget is not None:
        args.plan["judge"] = args.judge_budget
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wheels = bootstrap(Path(args.wheels))
    if args.render:
        return render_to_benchmarks(Path(args.render))
    found = preflight()
    import torch

    if args.threads or args.smoke:  # one thread: on a loaded small CPU, 2 threads ran 50x slower
        torch.set_num_threads(args.threads or 1)
    if args.smoke:  # dynamo tracing only: inductor's C++ build takes minutes on a small CPU
        import functools

        torch.compile = functools.partial(torch.compile, backend="eager")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_campaign: error: --device cuda: expected a CUDA GPU, found none (use --smoke "
              "for the CPU check)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    from _report import machine

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU)"
    info = {"gpu": gpu, "device": device.type, "smoke": args.smoke, "machine": machine(),
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "modules": found, "wheels": wheels,
            "sizes": args.sizes}
    camp = Campaign(Path(args.out), args.budget, info)
    skip = set(filter(None, args.skip.split(",")))
    plan = args.plan

    def run(name: str, fn: Callable[[float], Any]) -> Any:
        if name in skip:
            return None
        later = list(plan)[list(plan).index(name) + 1:]
        return camp.step(name, fn, plan[name], sum(plan[k] for k in later if k not in skip))

    data = run("data", lambda b: step_data(b, args))
    if "judge" in skip:
        pass
    elif data is None:
        camp.skip("judge", "no data")
    elif args.data_source == "files":
        camp.skip("judge", "--data/--reference given: the judge cells need the simulator's "
                           "seeds 1 and 2")
    else:
        run("judge", lambda b: step_judge(b, camp, args, data, device))
    run("sampling", lambda b: step_sampling(b, camp, args, device))
    for name, config in (("caloinn", "caloinn/1-photons.yaml"),
                         ("caloman", "caloman/1-photons-faithful.yaml")):
        if f"train-{name}" in skip:
            continue
        if data is None:
            camp.skip(f"train-{name}", "no data")
            camp.skip(f"eval-{name}", "no data")
            continue
        model = run(f"train-{name}",
                    lambda b, n=name, c=config: step_train(b, camp, args, n, c, data[0], device))
        if model is None:
            camp.skip(f"eval-{name}", f"train-{name} failed")
            continue
        run(f"eval-{name}", lambda b, n=name, m=model: step_eval(b, camp, args, n, m, data[1],
                                                                  device))
        del model
    camp.save()
    print(render_markdown(camp.result))
    print(f"wrote {camp.out / 'campaign.json'} and {camp.out / 'campaign.md'} "
          f"({camp.result['wall_s']:.0f} s)")
    if camp.failures:
        print("gpu_campaign: FAILED: " + "; ".join(camp.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
