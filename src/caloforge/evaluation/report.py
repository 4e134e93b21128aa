"""The evaluation's outputs: ``metrics.json`` (every number) and one self-contained
``report.html`` (metrics tables plus every picture embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from caloforge.atomic import atomic_path


def clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, metrics: dict, overwrite: bool) -> None:
    """Write ``metrics`` as indented JSON, atomically."""
    write_bytes(path, (json.dumps(clean(metrics), indent=2) + "\n").encode(), overwrite)


#: (metrics tag, display name) of every classifier test.
CLASSIFIERS = (("low", "cls-low"), ("low_normed", "cls-low-normed"), ("high", "cls-high"),
               ("gbdt_low", "cls-gbdt-low"), ("gbdt_high", "cls-gbdt-high"),
               ("resnet", "cls-resnet"))


def _fmt(value: Any, err: Any = None, scale: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:.4g}"
    if err is not None:
        text += f" ± {err:.2g}"
    return text + scale


def _rows(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    for tag, label in CLASSIFIERS:
        if metrics.get(f"auc_{tag}") is not None:
            err = metrics.get(f"auc_{tag}_err", metrics[f"auc_{tag}_std"])
            rows.append((f"AUC {label}", _fmt(metrics[f"auc_{tag}"], err)))
            rows.append((f"JSD {label}", _fmt(metrics[f"jsd_{tag}"], metrics[f"jsd_{tag}_std"])))
            if metrics.get(f"reading_{tag}"):
                rows.append((f"reading {label}", metrics[f"reading_{tag}"]))
    if metrics.get("fpd") is not None:
        rows.append(("FPD × 10³", _fmt(metrics["fpd"], metrics["fpd_err"])))
    if metrics.get("kpd") is not None:
        rows.append(("KPD × 10³", _fmt(metrics["kpd"], metrics["kpd_err"])))
    for key, value in (metrics.get("prdc") or {}).items():
        rows.append((key, _fmt(value)))
    if metrics.get("mean_separation_power_official") is not None:
        rows.append(("mean separation power (official feature set)",
                     _fmt(metrics["mean_separation_power_official"])))
    if metrics.get("mean_separation_power") is not None:
        rows.append(("mean separation power (all high-level features)",
                     _fmt(metrics["mean_separation_power"])))
    return rows


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>"
                   for a, b in rows)
    return f"<table>{body}</table>"


def render_html(metrics: dict, images: list[tuple[str, str, bytes | str]]) -> str:
    """The report page: summary, metrics, separation powers and every image by section
    (PNG bytes become ``<img>``; strings are inline SVG/HTML fragments, placed as they are)."""
    info = [("dataset", str(metrics.get("dataset"))),
            ("showers (generated / reference)",
             f"{metrics.get('n_generated')} / {metrics.get('n_reference')}"),
            ("voxel threshold", f"{metrics.get('threshold_mev'):.4g} MeV"),
            ("modes", ", ".join(metrics.get("modes", []))),
            ("classifier", json.dumps(clean(metrics.get("settings", {}))))]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>caloforge evaluation</title><style>",
             "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
             "margin-bottom:1em}td{border:1px solid #ccc;padding:2px 8px}"
             "img{max-width:32%;margin:2px;vertical-align:top}img.wide{max-width:100%}"
             "svg{margin:2px;vertical-align:top}figure{margin:0 0 1em 0}"
             "figcaption{font-size:small;color:#444}",
             "</style></head><body><h1>caloforge evaluation</h1>",
             _table(info), "<h2>Metrics</h2>", _table(_rows(metrics))]
    seps = metrics.get("separation_power") or {}
    if seps:
        parts.append("<h2>Separation power per histogram</h2>")
        parts.append(_table([(k, f"{v:.4g}") for k, v in seps.items() if v is not None]))
    section = None
    for sec, name, png in images:
        if sec != section:
            parts.append(f"<h2>{html.escape(sec)}</h2>")
            section = sec
        if isinstance(png, str):  # an inline SVG or HTML figure
            parts.append(png)
            continue
        data = base64.b64encode(png).decode()
        parts.append(f"<img alt='{html.escape(name)}' title='{html.escape(name)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "".join(parts)
