"""Shared helpers of the benchmark scripts: machine description and BENCHMARKS.md sections.

Each benchmark owns one section of ``BENCHMARKS.md`` between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` markers and rewrites only that section, so the scripts can run in any order.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def run_measured(args: list[str]) -> tuple[float, float, int, str, str]:
    """``python -m caloforge ARGS`` in a child process: (wall s, the child's own peak RSS in
    MiB from ``os.wait4``'s ``ru_maxrss``, exit code, stdout, stderr)."""
    import subprocess
    import sys
    import tempfile
    import time

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "caloforge", *args], stdout=out,
                                stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024, code, out.read(), err.read()


def machine() -> str:
    """One line naming the CPU cores (and GPU) the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cores} CPU cores ({cpu}), {gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def update_section(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md, atomically."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + block + "\n"
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, BENCHMARKS_MD)


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


#: Classifier tags of the quality tables (metrics.json keys ``auc_<tag>`` ...).
TAGS = ("low", "high", "gbdt_low", "gbdt_high")


def classifier_fields(m: dict, tags: Iterable[str] = TAGS) -> dict:
    """AUC, its uncertainty and the learned flag of every classifier in ``tags`` from a
    metrics.json dict, under the keys the tables read (``auc_<t>``, ``auc_err_<t>``,
    ``learned_<t>``)."""
    out = {}
    for t in tags:
        out.update({f"auc_{t}": m.get(f"auc_{t}"), f"auc_err_{t}": m.get(f"auc_{t}_err"),
                    f"learned_{t}": m.get(f"learned_{t}")})
    return out


def fill_from_metrics(results: dict, work: Path) -> dict:
    """Complete each result's AUC uncertainties and learned flags from the ``metrics.json``
    its evaluation wrote (``WORK/<name>/eval``), where the result lacks them."""
    import json

    for name, r in results.items():
        path = work / name / "eval" / "metrics.json"
        if not path.exists():
            continue
        for key, value in classifier_fields(json.loads(path.read_text())).items():
            if r.get(key) is None and value is not None:
                r[key] = value
    return results


def auc_cell(r: dict, tag: str) -> str:
    """``AUC ± err`` of classifier ``tag``, with ``*`` when that classifier did not learn."""
    auc = r.get(f"auc_{tag}")
    if not isinstance(auc, int | float):
        return "–"
    err = r.get(f"auc_err_{tag}")
    text = f"{auc:.3f}" + (f" ± {err:.3f}" if isinstance(err, int | float) else "")
    return text + ("" if r.get(f"learned_{tag}") else "*")


def num_cell(v: object, nd: int = 3) -> str:
    """``v`` with ``nd`` decimals, ``–`` when it is not a number."""
    return f"{v:.{nd}f}" if isinstance(v, int | float) else "–"
