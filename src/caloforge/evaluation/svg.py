"""Cheap pictures for the report: histograms as inline SVG, average showers as one PNG mosaic.

Drawing every histogram of a dataset-3 evaluation (366 of them) with matplotlib cost ~96 % of
``evaluate -m hist`` (issue 15). These pictures are built from strings and numpy arrays, with
no figure, axes or font rendering:

* :func:`histogram_svg`: one histogram as an inline ``<svg>`` (vector, sharp at any zoom):
  reference filled grey, generated as a red step line, both normalised (density), logarithmic
  y axis over four decades below the maximum, a gen/ref ratio panel on [0.5, 1.5] below, the
  x range written at both ends, the separation power in the title;
* :func:`mosaic_png`: the average shower of reference and generated as one PNG: every layer
  an image of n_alpha rows (alpha downward) by n_r columns (r to the right; CaloGAN: phi by
  eta), layers left to right, nine per row, the reference block above the generated one, one
  logarithmic viridis scale (MeV) for both.

The matplotlib versions (:mod:`caloforge.evaluation.plots`) remain for ``plots="all"``.
"""

from __future__ import annotations

import html
import io
import math

import numpy as np

from caloforge.evaluation.histograms import Histogram
from caloforge.geometry import Geometry

REF_FILL, GEN_LINE = "#bbbbbb", "#d62728"
#: Decades of the log y axis below the highest density.
DECADES = 4.0


def _density(counts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / (total * widths) if total > 0 else np.zeros_like(widths, dtype=float)


def _points(x: np.ndarray, y: np.ndarray) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x.tolist(), y.tolist(), strict=True))


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def histogram_svg(h: Histogram, width: int = 260, height: int = 200) -> str:
    """One histogram (normalised reference and generated, ratio panel) as an SVG element."""
    edges = np.asarray(h.edges, dtype=float)
    widths = np.diff(edges)
    ref, gen = _density(np.asarray(h.ref, float), widths), _density(np.asarray(h.gen, float),
                                                                       widths)
    xs = np.log10(edges) if h.log and edges[0] > 0 else edges
    left, right, top, mid, bottom = 6.0, width - 6.0, 18.0, height - 64.0, height - 14.0
    span = xs[-1] - xs[0] if xs[-1] > xs[0] else 1.0
    px = left + (xs - xs[0]) / span * (right - left)
    peak = max(ref.max(initial=0.0), gen.max(initial=0.0))
    lo = math.log10(peak) - DECADES if peak > 0 else 0.0

    def py(d: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            v = np.where(d > 0, np.log10(np.maximum(d, 1e-300)), lo)
        return mid - np.clip((v - lo) / DECADES, 0.0, 1.0) * (mid - top)

    sx = np.repeat(px, 2)[1:-1]
    yr, yg = np.repeat(py(ref), 2), np.repeat(py(gen), 2)
    fill = _points(np.r_[sx[0], sx, sx[-1]], np.r_[mid, yr, mid])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref > 0, gen / ref, 1.0)
    r_top, r_bot = mid + 8.0, bottom
    yq = r_bot - (np.clip(ratio, 0.5, 1.5) - 0.5) * (r_bot - r_top)
    one = 0.5 * (r_top + r_bot)
    title = html.escape(f"{h.name}  S = {h.separation:.4f}")
    xlabel = html.escape(h.label or h.name)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"font-family='sans-serif' font-size='9'><title>{title}</title>"
        f"<text x='{left}' y='11' font-size='10'>{title}</text>"
        f"<rect x='{left}' y='{top}' width='{right - left}' height='{mid - top}' fill='none' "
        f"stroke='#444' stroke-width='0.5'/>"
        f"<polygon points='{fill}' fill='{REF_FILL}' stroke='none'/>"
        f"<polyline points='{_points(sx, yg)}' fill='none' stroke='{GEN_LINE}' "
        f"stroke-width='1.2'/>"
        f"<rect x='{left}' y='{r_top}' width='{right - left}' height='{r_bot - r_top}' "
        f"fill='none' stroke='#444' stroke-width='0.5'/>"
        f"<line x1='{left}' x2='{right}' y1='{one}' y2='{one}' stroke='#444' "
        f"stroke-width='0.5'/>"
        f"<polyline points='{_points(sx, np.repeat(yq, 2))}' fill='none' stroke='{GEN_LINE}' "
        f"stroke-width='0.9'/>"
        f"<text x='{right - 2}' y='{top + 10}' text-anchor='end' fill='#666'>log density, "
        f"{DECADES:.0f} decades</text>"
        f"<text x='{right - 2}' y='{r_top + 9}' text-anchor='end' fill='#666'>gen/ref "
        f"0.5–1.5</text>"
        f"<text x='{left}' y='{height - 3}'>{_fmt(edges[0])}</text>"
        f"<text x='{0.5 * (left + right)}' y='{height - 3}' text-anchor='middle'>{xlabel}"
        f"{' (log)' if h.log else ''}</text>"
        f"<text x='{right}' y='{height - 3}' text-anchor='end'>{_fmt(edges[-1])}</text>"
        "</svg>")


def _log_range(values: np.ndarray) -> tuple[float, float]:
    """(vmin, vmax) of the log colour scale: the positive values, at most six decades (one
    decade below a single positive value)."""
    positive = values[np.isfinite(values) & (values > 0)]
    vmax = float(positive.max()) if positive.size else 1.0
    vmin = max(float(positive.min()) if positive.size else 1e-3, vmax * 1e-6)
    return (vmax / 10.0 if vmin >= vmax else vmin), vmax


def _layer_tiles(mean: np.ndarray, geometry: Geometry, scale: int) -> list[np.ndarray]:
    return [np.kron(mean[geometry.layer_slice(i)].reshape(layer.shape), np.ones((scale, scale)))
            for i, layer in enumerate(geometry.layers)]


def mosaic_png(gen_mean: np.ndarray, ref_mean: np.ndarray, geometry: Geometry,
               per_row: int = 9) -> bytes:
    """Average voxel energies (MeV) of reference (top block) and generated (bottom block), one
    tile per layer, as PNG bytes (see module doc)."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    biggest = max(max(layer.shape) for layer in geometry.layers)
    scale = max(1, 48 // max(biggest, 1))
    tiles = {"ref": _layer_tiles(ref_mean, geometry, scale),
             "gen": _layer_tiles(gen_mean, geometry, scale)}
    th = max(t.shape[0] for t in tiles["ref"]) + 2
    tw = max(t.shape[1] for t in tiles["ref"]) + 2
    n = geometry.n_layers
    rows = math.ceil(n / per_row)
    canvas = np.full((2 * rows * th + 4, min(n, per_row) * tw), np.nan)
    for b, key in enumerate(("ref", "gen")):
        for i, tile in enumerate(tiles[key]):
            r, c = divmod(i, per_row)
            y0 = b * (rows * th + 4) + r * th + 1
            canvas[y0:y0 + tile.shape[0], c * tw + 1:c * tw + 1 + tile.shape[1]] = tile
    vmin, vmax = _log_range(canvas)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = (np.log10(np.clip(canvas, vmin, vmax)) - math.log10(vmin)) / \
            max(math.log10(vmax / vmin), 1e-12)
    rgba = colormaps["viridis"](np.nan_to_num(level, nan=0.0))
    rgba[~np.isfinite(canvas)] = (1.0, 1.0, 1.0, 1.0)
    buf = io.BytesIO()
    imsave(buf, rgba, format="png")
    return buf.getvalue()


def mosaic_caption(geometry: Geometry, gen_mean: np.ndarray, ref_mean: np.ndarray,
                   title: str) -> str:
    """The text under a :func:`mosaic_png` picture: layout and colour range."""
    vmin, vmax = _log_range(np.concatenate([gen_mean, ref_mean]))
    axes = "phi down, eta right" if geometry.layers[0].cartesian else "alpha down, r right"
    return (f"{title}: top block reference, bottom block generated; layers "
            f"{geometry.layer_ids[0]}–{geometry.layer_ids[-1]} left to right, 9 per row; "
            f"in each layer {axes}; log colour scale (viridis) {vmin:.3g}–{vmax:.3g} MeV")
