"""Sampling speed of the flow generators: ms per shower at batch sizes 1, 100 and 10,000.

Rows (dataset-1 photons, each built at its recipe's size from ``configs/``): the CaloFlow
teacher (MAF flow II) twice, with the textbook inverse (a whole MADE pass per voxel and block,
as nflows and zuko sample a MAF) and with caloforge's incremental inverse; the CaloFlow student
(IAF flow II), CaloINN (RQS coupling INN), CaloMan (energy flow + latent flow + decoder). Each
is followed by baselines of the same job and size (:data:`BASELINES`): a plain zuko MAF for the
teacher, the same zuko MAF in its one-pass direction for the student (an IAF samples that
way), a zuko RQS *coupling* flow for CaloINN (373 features, 12 blocks, 10 bins, 3 x 256
hidden), and a plain MLP with the model's weight count for every one-pass generator (the lower
bound). The models are **untrained**: sampling cost does not depend on the weights, so the
timings are those of trained models of the same size.

Each row is built by a small function; a model whose module is missing (or fails to build) is
skipped with a printed note. Timing: ``torch.inference_mode``, one warm-up call per batch size,
then repeated calls until ``--min-time`` seconds have passed (CUDA synchronised). A
measurement whose projected duration (from the smaller batch's per-shower time) exceeds
``--budget`` seconds is skipped and marked "-"; the textbook teacher is timed at batch
sizes 1, 100 and 1,000 only (``ONLY_SIZES``). ``torch.compile`` (``model.compiled_sampler()``) is
measured for the rows in ``--compile`` at the largest batch size (first-call compile time
reported).

The CaloMan part also reproduces the seed talk's timing table: batch sizes 500 ... 50,000
over 100,000 showers (``--caloman-total``).

Datasets 2 and 3 (``--datasets 2,3``; issue 12 item 6, issue 13 item 5) are a separate section,
``sampling_layerwise``, measured by :mod:`sampling_layerwise` (the layer-by-layer flows,
CaloMan and VAE+INN at their ``-cpu`` and full recipe sizes, one and two threads, beside the
CaloChallenge's own timing figures).

Usage::

    python benchmarks/sampling.py                 # CPU, writes the "sampling" section
    python benchmarks/sampling.py --datasets 2,3  # the dataset-2/3 section (see sampling_layerwise)
    python benchmarks/sampling.py --device cuda   # on a GPU
    python benchmarks/sampling.py --quick         # batch sizes 1 and 100 only, no compile
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, table, update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = "1-photons"
Sampler = Callable[[torch.Tensor], torch.Tensor]

#: CaloChallenge / paper figures (theirs, GPU, per shower at batch 10,000), for comparison.
REFERENCE = [
    ("CaloFlow student (CaloChallenge DS1 photons, 2210.14245)", "0.26 ms", "their GPU"),
    ("CaloINN (2312.09290)", "0.19 ms", "their GPU"),
    ("CaloFlow v1 teacher / v2 student, CaloGAN (seed talk, TITAN V)", "36.2 ms / 0.08 ms",
     "their GPU"),
]


# --------------------------------------------------------------------------------------------
# row builders: each returns (sampler, note); ImportError/any error -> row skipped


def _model(name: str, config: str, device: torch.device, solver: str | None = None
           ) -> tuple[Sampler, str]:
    from caloforge.config import load_config
    from caloforge.geometry import Geometry
    from caloforge.models import model_class

    cfg = load_config(ROOT / "configs" / config)
    model = model_class(name)(Geometry.preset(cfg.get("dataset", DATASET)), cfg)
    model.to(device).eval()
    if solver is not None:
        model.flow2.set_solver(solver)
    n = sum(p.numel() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    chunk = getattr(model, "sampling_cfg", {}).get("batch_size")

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        return model.sample(e_inc)

    sample.compiled = model.compiled_sampler  # type: ignore[attr-defined]
    return sample, (f"{n / 1e6:.2f} M params, {str(dtype).replace('torch.', '')}"
                    + (f", internal batch {chunk:,}" if chunk else ""))


def build_teacher(device: torch.device) -> tuple[Sampler, str]:
    return _model("caloflow", "caloflow/1-photons.yaml", device)


def build_teacher_full(device: torch.device) -> tuple[Sampler, str]:
    return _model("caloflow", "caloflow/1-photons.yaml", device, solver="full")


def build_student(device: torch.device) -> tuple[Sampler, str]:
    return _model("caloflow-student", "caloflow/1-photons-student.yaml", device)


def build_caloinn(device: torch.device) -> tuple[Sampler, str]:
    return _model("caloinn", "caloinn/1-photons.yaml", device)


def build_caloman(device: torch.device) -> tuple[Sampler, str]:
    return _model("caloman", "caloman/1-photons-faithful.yaml", device)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _condition(e_inc: torch.Tensor, device: torch.device, width: int) -> torch.Tensor:
    """A (N, width) float32 context from E_inc (the baselines' conditioning cost)."""
    c = torch.log2(e_inc.to(device, torch.float32) / 1000.0)[:, None]
    return c.expand(-1, width).contiguous()


def build_zuko_coupling(device: torch.device) -> tuple[Sampler, str]:
    """CaloINN's job in plain zuko: 373 features, context 1, 12 RQS *coupling* blocks (one
    hyper-network pass per block in both directions; a seeded random half-mask per block in
    place of CaloINN's permutations), 10 bins, 3 x 256 LeakyReLU hyper-networks."""
    import zuko
    from zuko.distributions import DiagNormal
    from zuko.flows import Flow, GeneralCouplingTransform, UnconditionalDistribution
    from zuko.transforms import MonotonicRQSTransform

    features, bins = 368 + 5, 10
    gen = torch.Generator().manual_seed(0)
    blocks = []
    for _ in range(12):
        mask = torch.zeros(features, dtype=torch.bool)
        mask[torch.randperm(features, generator=gen)[:features // 2]] = True
        blocks.append(GeneralCouplingTransform(
            features, 1, mask=mask, univariate=MonotonicRQSTransform,
            shapes=[(bins,), (bins,), (bins - 1,)], hidden_features=(256, 256, 256),
            activation=torch.nn.LeakyReLU))
    base = UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features),
                                     buffer=True)
    flow = Flow(blocks, base).to(device).eval()

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        z = torch.randn(len(e_inc), features, device=device)
        return flow(_condition(e_inc, device, 1)).transform.inv(z)

    return sample, (f"{_params(flow) / 1e6:.2f} M params, float32, zuko {zuko.__version__} "
                    "GeneralCouplingTransform + MonotonicRQSTransform")


def _zuko_maf(hidden: int, device: torch.device) -> torch.nn.Module:
    import zuko

    return zuko.flows.NSF(368, 6, bins=8, transforms=8, hidden_features=(hidden,)
                          ).to(device).eval()


def build_zuko_maf(device: torch.device) -> tuple[Sampler, str]:
    """The teacher's flow II in plain zuko: MAF (NSF, fully autoregressive) on 368 features,
    context 6, 8 blocks, 8 bins, hidden [378]; zuko samples it with one MADE pass per
    feature and block (the textbook inverse)."""
    import zuko

    flow = _zuko_maf(378, device)

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        z = torch.randn(len(e_inc), 368, device=device)
        return flow(_condition(e_inc, device, 6)).transform.inv(z)

    return sample, f"{_params(flow) / 1e6:.2f} M params, float32, zuko {zuko.__version__} NSF"


def build_zuko_iaf(device: torch.device) -> tuple[Sampler, str]:
    """The student's flow II in plain zuko: the same MAF at the student's width (hidden
    [736]) used in its one-pass direction, which is how an IAF samples."""
    import zuko

    flow = _zuko_maf(736, device)

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        z = torch.randn(len(e_inc), 368, device=device)
        return flow(_condition(e_inc, device, 6)).transform(z)

    return sample, (f"{_params(flow) / 1e6:.2f} M params, float32, zuko {zuko.__version__} "
                    "NSF, one-pass direction")


def _mlp_builder(target_params: float) -> Callable[[torch.device], tuple[Sampler, str]]:
    """A plain ReLU MLP (noise 368 + E_inc) -> 368 voxels with three hidden layers of one
    width, sized to ``target_params`` parameters: the lower bound of any one-pass generator
    with that many weights (matmuls only, no spline, no postprocessing)."""

    def build(device: torch.device) -> tuple[Sampler, str]:
        n_in, n_out = 369, 368
        # 2 w^2 + (n_in + n_out + 4) w + n_out = target_params
        b = n_in + n_out + 4
        w = max(1, round((-b + (b * b + 8 * (target_params - n_out)) ** 0.5) / 4))
        net = torch.nn.Sequential(
            torch.nn.Linear(n_in, w), torch.nn.ReLU(), torch.nn.Linear(w, w), torch.nn.ReLU(),
            torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Linear(w, n_out)).to(device).eval()

        def sample(e_inc: torch.Tensor) -> torch.Tensor:
            z = torch.randn(len(e_inc), n_in - 1, device=device)
            return net(torch.cat([z, _condition(e_inc, device, 1)], 1))

        return sample, f"{_params(net) / 1e6:.2f} M params, float32, 3 hidden x {w}"

    return build


#: Rows measured at exactly these batch sizes, whatever the projection (the textbook MAF
#: inverses: their cost per shower falls steeply from batch 1 to 100, so the linear projection
#: from batch 1 overestimates batch 100; one call of batch 1,000 takes 20-40 minutes on one
#: thread of a shared 2-core machine).
ONLY_SIZES: dict[str, tuple[int, ...]] = {"teacher-full": (1, 100), "zuko-maf": (1,)}
#: Rows in measuring order: each model is followed by its baselines (same job, same size),
#: so that a change of the machine's load between rows affects a pair as little as possible.
ROWS: dict[str, tuple[str, Callable[[torch.device], tuple[Sampler, str]]]] = {
    "teacher-full": ("CaloFlow teacher (MAF), textbook inverse: a full MADE pass per voxel",
                     build_teacher_full),
    "zuko-maf": ("baseline: zuko MAF (NSF), teacher's flow II size", build_zuko_maf),
    "teacher": ("CaloFlow teacher (MAF), caloforge incremental inverse", build_teacher),
    "student": ("CaloFlow student (IAF)", build_student),
    "zuko-iaf": ("baseline: zuko MAF in its one-pass direction (IAF), student's flow II size",
                 build_zuko_iaf),
    "mlp-student": ("lower bound: plain MLP, student's weight count",
                    _mlp_builder(52.59e6)),
    "caloinn": ("CaloINN (RQS coupling)", build_caloinn),
    "zuko-coupling": ("baseline: zuko RQS coupling flow, CaloINN size", build_zuko_coupling),
    "mlp-caloinn": ("lower bound: plain MLP, CaloINN's weight count", _mlp_builder(18.85e6)),
    "caloman": ("CaloMan, zero-inflated decoder (caloforge fix)", build_caloman),
    "mlp-caloman": ("lower bound: plain MLP, CaloMan's weight count", _mlp_builder(4.10e6)),
}
#: model row -> its zuko baseline and its MLP lower bound (same job, same weight count).
BASELINES: dict[str, tuple[str | None, str | None]] = {
    "teacher-full": ("zuko-maf", None), "teacher": ("zuko-maf", None),
    "student": ("zuko-iaf", "mlp-student"), "caloinn": ("zuko-coupling", "mlp-caloinn"),
    "caloman": (None, "mlp-caloman"),
}


# --------------------------------------------------------------------------------------------
# timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Sampler, batch: int, device: torch.device, min_time: float,
              warmup: bool = True, min_calls: int = 1) -> float:
    """Seconds per call of ``fn`` on ``batch`` showers at 65,536 MeV: the fastest of at least
    ``min_calls`` calls made over at least ``min_time`` seconds (on a machine shared with other
    jobs the fastest call is the one the load disturbed least)."""
    e = torch.full((batch,), 65536.0, dtype=torch.float64, device=device)
    with torch.inference_mode():
        if warmup:
            fn(e)
        _sync(device)
        calls, best, t0 = 0, float("inf"), time.perf_counter()
        while True:
            t = time.perf_counter()
            fn(e)
            _sync(device)
            best = min(best, time.perf_counter() - t)
            calls += 1
            if time.perf_counter() - t0 >= min_time and calls >= min_calls:
                break
    return best


def fmt_ms(seconds_per_shower: float | None) -> str:
    if seconds_per_shower is None:
        return "-"
    ms = 1e3 * seconds_per_shower
    return f"{ms:.3g}" if ms < 1000 else f"{ms:,.0f}"


def measure_row(fn: Sampler, sizes: list[int], device: torch.device, min_time: float,
                budget: float, only: tuple[int, ...] | None = None) -> dict[int, float | None]:
    """Seconds per shower at each batch size: None where the projection (linear in the batch
    size) exceeds ``budget`` or the size is not in ``only``. A warm-up call precedes each
    measurement unless it is projected to take over 10 s; the mean is over at least two calls
    unless one is projected to take over a minute."""
    out: dict[int, float | None] = {}
    per_shower = None
    for b in sizes:
        if only is not None and b not in only:
            out[b] = None
            continue
        projected = per_shower * b if per_shower is not None else 0.0
        if only is None and projected > budget:
            print(f"    bs {b}: skipped (projected {projected:.0f} s per call)", flush=True)
            out[b] = None
            continue
        t = time_call(fn, b, device, min_time, warmup=projected < 10.0,
                      min_calls=2 if projected < 60.0 else 1)
        per_shower = t / b
        out[b] = per_shower
        print(f"    bs {b}: {1e3 * per_shower:.4g} ms/shower", flush=True)
    return out


def release_memory() -> None:
    """Free the last row's model, compiled graphs and cached blocks before the next row (one
    run holds several large models in turn; without this a 24 GB machine ran out of memory
    at the last row)."""
    import ctypes
    import gc

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:  # give freed heap pages back to the OS (glibc)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def count_gflop(fn: Sampler, device: torch.device, batch: int = 2) -> float:
    """Matrix-multiply GFLOP per shower of one call (``torch.utils.flop_counter``; the
    elementwise spline work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    e = torch.full((batch,), 65536.0, dtype=torch.float64, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(e)
    return counter.get_total_flops() / batch / 1e9


def measure_compiled(fn: Sampler, batch: int, device: torch.device, min_time: float
                     ) -> tuple[float, float]:
    """(compile + first call seconds, seconds per shower) of ``torch.compile(fn)``."""
    compiled = fn.compiled() if hasattr(fn, "compiled") else torch.compile(fn)
    e = torch.full((batch,), 65536.0, dtype=torch.float64, device=device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        compiled(e)
    _sync(device)
    first = time.perf_counter() - t0
    return first, time_call(compiled, batch, device, min_time, warmup=False,
                            min_calls=2) / batch


def caloman_table(fn: Sampler, device: torch.device, total: int, sizes: list[int],
                  per_shower: float | None = None, budget: float = float("inf")) -> list[list]:
    """The seed talk's CaloMan table: seconds for ``total`` showers (and for one batch); a
    batch size whose projected time (``per_shower`` x ``total``) exceeds ``budget`` is
    marked "-"."""
    rows = []
    for b in sizes:
        if per_shower is not None and per_shower * (total + 2 * b) > budget:
            rows.append([f"{b:,}", "-", "-", "-"])
            continue
        one = time_call(fn, b, device, 0.0, warmup=True)
        t0 = time.perf_counter()
        e = torch.full((b,), 65536.0, dtype=torch.float64, device=device)
        with torch.inference_mode():
            for _ in range(max(total // b, 1)):
                fn(e)
        _sync(device)
        full = time.perf_counter() - t0
        n = b * max(total // b, 1)
        rows.append([f"{b:,}", f"{one:.4f}", f"{full:.3f}", f"{1e3 * full / n:.4f}"])
        print(f"    caloman bs {b}: one batch {one:.4f} s, {n:,} showers {full:.3f} s",
              flush=True)
    return rows


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: every row alike on a shared machine)")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma list of " + ", ".join(ROWS))
    ap.add_argument("--sizes", default="1,100,1000", help="batch sizes")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="skip a measurement projected to take longer (seconds)")
    ap.add_argument("--compile", default="student,zuko-iaf,caloinn,zuko-coupling",
                    help="rows also measured under torch.compile ('' for none)")
    ap.add_argument("--caloman-sizes", default="500,1000,5000,10000,50000")
    ap.add_argument("--caloman-total", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="sizes 1,100; no compile; no table")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--section", default="sampling", help="BENCHMARKS.md section to write")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the section from benchmarks/out/sampling/DEVICE.json")
    ap.add_argument("--datasets", default="",
                    help="e.g. 2,3: the dataset-2/3 rows instead; then every option is "
                    "benchmarks/sampling_layerwise.py's (its --help lists them)")
    args, rest = ap.parse_known_args(argv)
    if args.datasets:  # every option goes to the dataset-2/3 script, which checks them
        import sampling_layerwise

        return sampling_layerwise.main(sys.argv[1:] if argv is None else list(argv))
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.render_only:
        path = ROOT / "benchmarks" / "out" / "sampling" / f"{torch.device(args.device).type}.json"
        run = json.loads(path.read_text())
        for r in run["results"].values():  # JSON object keys are strings
            r["t"] = {int(b): v for b, v in r["t"].items()}
        return finish(run, args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [1, 100] if args.quick else [int(s) for s in args.sizes.split(",")]
    compile_rows = [] if args.quick else [r for r in args.compile.split(",") if r]
    print(machine(), flush=True)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    results: dict[str, dict] = {}
    notes: list[str] = []
    caloman_md: list[str] = []
    for key in [r for r in args.rows.split(",") if r]:
        label, build = ROWS[key]
        print(f"{label}:", flush=True)
        try:
            fn, info = build(device)
        except ImportError as exc:
            notes.append(f"{label}: skipped, module not available ({exc})")
            print(f"  skipped: {exc}", flush=True)
            continue
        except Exception as exc:  # a model under construction elsewhere; keep the others
            notes.append(f"{label}: skipped, failed to build ({type(exc).__name__}: {exc})")
            print(f"  skipped: {type(exc).__name__}: {exc}", flush=True)
            continue
        timing = measure_row(fn, sizes, device, args.min_time, args.budget,
                             ONLY_SIZES.get(key))
        results[key] = {"label": label, "info": info, "t": timing,
                        "gflop": count_gflop(fn, device)}
        if key == "caloman" and not args.quick:  # before any torch.compile run in this process
            print("CaloMan seed timing table:", flush=True)
            measured = [v for v in timing.values() if v is not None]
            cm = caloman_table(fn, device, args.caloman_total,
                               [int(s) for s in args.caloman_sizes.split(",")],
                               min(measured) if measured else None, args.budget)
            caloman_md = ["", f"CaloMan timing in the seed talk's form "
                          f"({args.caloman_total:,} showers):", "",
                          table(["batch size", "one batch (s)",
                                 f"{args.caloman_total:,} showers (s)", "ms per shower"], cm)]
        done = [b for b in sizes if timing.get(b) is not None and b > 1]
        if key in compile_rows and done:
            b = max(done)
            try:
                first, t = measure_compiled(fn, b, device, args.min_time)
                results[key]["compiled"] = (b, first, t)
                print(f"    torch.compile bs {b}: {1e3 * t:.4g} ms/shower (first call "
                      f"{first:.0f} s)", flush=True)
            except Exception as exc:  # compile support differs between platforms
                notes.append(f"{label}: torch.compile failed ({type(exc).__name__})")
        del fn
        release_memory()

    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    run = {"machine": machine(), "device": str(device), "load": [load0, load1],
           "sizes": sizes, "budget": args.budget, "results": results,
           "caloman_md": caloman_md, "notes": notes}
    out = ROOT / "benchmarks" / "out" / "sampling"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device.type}.json").write_text(json.dumps(run, indent=1))
    return finish(run, args)


def finish(run: dict, args: argparse.Namespace) -> int:
    text = render(run)
    print(text)
    if not args.no_write:
        title = "Sampling speed" + ("" if args.section == "sampling" else f" ({args.rows})")
        if run["device"] != "cpu":
            title += f" ({run['device']}, GPU figures)"
        update_section(args.section, f"## {title}\n\n" + text)
    return 0


def _best(r: dict, b: int) -> float | None:
    """Fastest measured seconds per shower of row ``r`` at batch ``b`` (eager or compiled)."""
    vals = [r["t"].get(b)]
    if r.get("compiled") and r["compiled"][0] == b:
        vals.append(r["compiled"][2])
    vals = [v for v in vals if v]
    return min(vals) if vals else None


def _ratio(r: dict, ref: dict, sizes: list[int]) -> tuple[float, int] | None:
    """(speed-up of ``r`` over ``ref``, batch size) at the largest batch size both have."""
    common = [b for b in sizes if _best(r, b) and _best(ref, b)]
    return (_best(ref, max(common)) / _best(r, max(common)), max(common)) if common else None


def _x(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def baseline_ratio(r: dict, base: dict, sizes: list[int]) -> str:
    """``base`` time / ``r`` time at the largest common batch size, eager vs eager (and
    compiled vs compiled where both were compiled at the same batch size)."""
    common = [b for b in sizes if r["t"].get(b) and base["t"].get(b)]
    if not common:
        return "-"
    b = max(common)
    out = f"{base['t'][b] / r['t'][b]:.2f}x eager (bs {b:,})"
    rc, bc = r.get("compiled"), base.get("compiled")
    if rc and bc and rc[0] == bc[0]:
        out += f"; {bc[2] / rc[2]:.2f}x compiled"
    return out


def render(run: dict) -> str:
    """The BENCHMARKS.md section of one run (see :func:`main`)."""
    results, sizes = run["results"], run["sizes"]

    def speedup(r: dict, ref_key: str) -> str:
        ref = results.get(ref_key)
        got = _ratio(r, ref, sizes) if ref is not None and ref is not r else None
        return f"{_x(got[0])} (bs {got[1]:,})" if got else "-"

    def versus(key: str, which: int) -> str:
        base = results.get((BASELINES.get(key) or (None, None))[which] or "")
        return baseline_ratio(results[key], base, sizes) if base is not None else "-"

    header = ["model", *[f"bs {b:,}" for b in sizes], "torch.compile (bs)",
              "speed vs zuko baseline", "speed vs MLP lower bound",
              "speed-up vs incremental teacher", "speed-up vs textbook teacher",
              "GFLOP per shower (matmul)", "size"]
    rows = []
    for key, r in results.items():
        comp = r.get("compiled")
        comp_s = (f"{fmt_ms(comp[2])} (bs {comp[0]:,}; first call {comp[1]:.0f} s)"
                  if comp else "-")
        rows.append([r["label"], *[fmt_ms(r["t"].get(b)) for b in sizes], comp_s,
                     versus(key, 0), versus(key, 1),
                     speedup(r, "teacher"), speedup(r, "teacher-full"), f"{r['gflop']:.3g}",
                     r["info"]])
    load0, load1 = run["load"]
    md = [f"Sampling speed, ms per shower (dataset-1 photons); measured on {run['machine']} "
          f"(device {run['device']}); 1-min load average {load0:.1f} at the start, "
          f"{load1:.1f} at the end (a load above the core count means the machine was "
          "shared).", "",
          table(header, rows), "",
          f"Machine load during this run: 1-min load average {load0:.1f} at the start and "
          f"{load1:.1f} at the end on {os.cpu_count()} cores (other engineers' test runs "
          "shared the machine), so absolute times are inflated; every row ran with one torch "
          "thread, model and baselines back to back.", "",
          "Each model row is followed by its baselines, built for the same job at the same "
          "size: the teacher's flow II as a plain zuko MAF (`zuko.flows.NSF`, sampled with "
          "zuko's textbook inverse), the student's flow II as the same zuko MAF at the "
          "student's width in its one-pass direction (the IAF's sampling direction), CaloINN as "
          "a zuko RQS *coupling* flow (`GeneralCouplingTransform`, one hyper-network pass per "
          "block and direction), and for every one-pass generator a plain ReLU MLP with the "
          "same weight count from noise to 368 voxels (matmuls only: a lower bound). The zuko "
          "rows time the flow alone; the caloforge rows include their pre- and postprocessing "
          "(and, for the CaloFlow models, flow I). \"speed vs\": baseline time / model time at "
          "the largest batch size both were measured at, eager against eager and compiled "
          "against compiled (> 1: caloforge is faster). All rows run with one torch thread, "
          "one after the other in this order, each timed as the fastest of its calls; the "
          "machine was shared with other jobs (load above).", "",
          "Models are untrained, built at their `configs/` sizes (sampling cost does not depend "
          "on the weights). End-to-end `model.sample` (flows + postprocessing), inference mode, "
          "after a warm-up call; a call of bs showers is split into passes of the recipe's "
          "`sampling.batch_size` where the size column names one. torch.compile: "
          "`model.compiled_sampler()` (the student compiles its one-pass flow II). Speed-ups "
          "use the fastest measured figure (eager or compiled) of both rows at the largest "
          "batch size both were measured at. \"-\": not measured: the textbook teacher and the "
          "zuko MAF run only at the batch sizes of `ONLY_SIZES` (a larger call would take "
          "tens of minutes on one thread), other rows where the projected time of one call "
          f"(linear in the batch size) exceeded the {run['budget']:.0f} s budget. "
          "The two teacher rows are the same model: the textbook MAF inverse runs the whole "
          "MADE once per voxel and block (368 x 8 passes, as nflows and zuko do), caloforge's "
          "incremental inverse updates the first hidden layer by one column per voxel and "
          "evaluates only that voxel's spline parameters (tested equal). GFLOP per shower: "
          "matrix-multiply FLOPs of one `sample` call at batch 2 counted by "
          "`torch.utils.flop_counter` (spline and other elementwise work not included); on a "
          "CPU, where large-batch sampling is compute-bound, a speed-up cannot much exceed "
          "the ratio of these counts.", "",
          *target_check(results, sizes), "",
          "For comparison, **their** published figures (not measured here):", "",
          table(["model", "ms per shower", "hardware"], [list(r) for r in REFERENCE])]
    if run["caloman_md"]:
        md += run["caloman_md"]
    if run["notes"]:
        md += ["", *[f"* {n}" for n in run["notes"]]]
    return "\n".join(md)


#: Issue 5's speed target: student and CaloINN this many times faster than the teacher.
TARGET, TARGET_BS = 500, 10_000


def target_check(results: dict, sizes: list[int]) -> list[str]:
    """Lines stating the measured ratios against the 500x-at-batch-10,000 target."""
    lines = [f"**Target check**: student and CaloINN >= {TARGET}x faster than the teacher at "
             f"batch {TARGET_BS:,}.", ""]
    for key in ("student", "caloinn"):
        r = results.get(key)
        if r is None:
            continue
        parts = []
        for ref_key, name in (("teacher", "incremental teacher"),
                              ("teacher-full", "textbook teacher")):
            ref = results.get(ref_key)
            got = _ratio(r, ref, sizes) if ref is not None else None
            if got is None:
                continue
            ratio, b = got
            if b == TARGET_BS:
                verdict = "met" if ratio >= TARGET else "not met"
                parts.append(f"{_x(ratio)} vs the {name} at bs {b:,} ({verdict})")
            else:
                parts.append(f"{_x(ratio)} vs the {name} at bs {b:,} (bs {TARGET_BS:,} not "
                             f"measured; matmul FLOP ratio {_x(ref['gflop'] / r['gflop'])})")
        if parts:
            lines.append(f"* {r['label']}: " + "; ".join(parts) + ".")
    inc, stu = results.get("teacher"), results.get("student")
    fewer = (f", and caloforge's incremental teacher needs {_x(stu['gflop'] / inc['gflop'])} "
             "fewer matmul FLOPs per shower than the student" if inc and stu
             and inc["gflop"] < stu["gflop"] else "")
    lines += ["", "On a CPU, large-batch sampling is compute-bound, so a speed-up over the "
              f"textbook teacher cannot much exceed the matmul FLOP ratio{fewer}. The "
              "published 500x (CaloFlow v2 vs v1) is a GPU figure, where the teacher's "
              "368 x 8 sequential passes are latency-bound; it needs a GPU run "
              "(`--device cuda`) to check."]
    return lines


if __name__ == "__main__":
    importlib.invalidate_caches()
    sys.exit(main())
