"""Pictures of the evaluation, rendered to PNG bytes (matplotlib, no pyplot, no display).

* every histogram with a ratio panel (generated / reference);
* average shower images per layer, reference above generated, overall and per incident energy;
* classifier-score histograms.

Polar (CaloChallenge) layers are drawn in polar coordinates over their r edges (mm) and alpha
bins; cartesian (CaloGAN) layers as images. Colour scales are logarithmic in MeV.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from caloforge.evaluation.histograms import Histogram
from caloforge.geometry import Geometry

REF_COLOUR, GEN_COLOUR = "#888888", "#d62728"


def to_png(fig: Figure, dpi: int = 90) -> bytes:
    """Render a figure to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def histogram_png(h: Histogram) -> bytes:
    """Normalised histograms of reference and generated with a gen/ref ratio panel."""
    fig = Figure(figsize=(5.0, 4.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    widths = np.diff(h.edges)
    dens = []
    for counts in (h.ref, h.gen):
        total = counts.sum()
        dens.append(counts / (total * widths) if total > 0 else np.zeros_like(widths))
    top.stairs(dens[0], h.edges, fill=True, color=REF_COLOUR, alpha=0.4, label="reference")
    top.stairs(dens[1], h.edges, color=GEN_COLOUR, linewidth=1.5, label="generated")
    if (dens[0] > 0).any() or (dens[1] > 0).any():
        top.set_yscale("log")
    top.set_ylabel("normalised entries")
    top.legend(fontsize=8, loc="upper right")
    top.set_title(f"{h.name}: separation power {h.separation:.4f}", fontsize=9)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dens[0] > 0, dens[1] / dens[0], np.nan)
    bottom.stairs(ratio, h.edges, color=GEN_COLOUR, linewidth=1.2)
    bottom.axhline(1.0, color="k", linewidth=0.6)
    bottom.set_ylim(0.5, 1.5)
    bottom.set_ylabel("gen / ref")
    bottom.set_xlabel(h.label or h.name)
    if h.log:
        bottom.set_xscale("log")
    fig.subplots_adjust(left=0.16, right=0.97, top=0.93, bottom=0.11, hspace=0.06)
    return to_png(fig)


def _draw_layer(fig: Figure, pos: tuple[int, int, int], geometry: Geometry, i: int,
                values: np.ndarray, norm: LogNorm, title: str):
    layer = geometry.layers[i]
    img = np.clip(values.reshape(layer.shape), norm.vmin, None)
    if layer.cartesian:
        ax = fig.add_subplot(*pos)
        mesh = ax.imshow(img, norm=norm, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax = fig.add_subplot(*pos, projection="polar")
        sub = max(1, 64 // layer.n_alpha)  # subdivide wide angular bins to draw them round
        theta = np.linspace(-math.pi, math.pi, layer.n_alpha * sub + 1)
        r = np.asarray(layer.r_edges)
        mesh = ax.pcolormesh(theta, r, np.repeat(img, sub, axis=0).T, norm=norm, cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    return mesh


def average_shower_png(gen_mean: np.ndarray, ref_mean: np.ndarray, geometry: Geometry,
                       title: str) -> bytes:
    """Average voxel energies (MeV) per layer: reference row above generated row."""
    n = geometry.n_layers
    cols = min(n, 9)
    blocks = math.ceil(n / cols)
    fig = Figure(figsize=(1.9 * cols + 0.8, 3.8 * blocks + 0.4))
    positive = np.concatenate([ref_mean[ref_mean > 0], gen_mean[gen_mean > 0]])
    vmax = float(positive.max()) if positive.size else 1.0
    vmin = max(float(positive.min()) if positive.size else 1e-3, vmax * 1e-6)
    norm = LogNorm(vmin=vmin, vmax=vmax)
    mesh = None
    for i in range(n):
        block, col = divmod(i, cols)
        sl = geometry.layer_slice(i)
        lid = geometry.layers[i].id
        mesh = _draw_layer(fig, (2 * blocks, cols, 2 * block * cols + col + 1), geometry, i,
                           ref_mean[sl], norm, f"ref, layer {lid}")
        _draw_layer(fig, (2 * blocks, cols, (2 * block + 1) * cols + col + 1), geometry, i,
                    gen_mean[sl], norm, f"gen, layer {lid}")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(right=0.9, hspace=0.35, wspace=0.15)
    cax = fig.add_axes((0.92, 0.15, 0.015, 0.7))
    fig.colorbar(mesh, cax=cax, label="mean energy [MeV]")
    return to_png(fig)


def _classes_png(ref_values: np.ndarray, gen_values: np.ndarray, edges: np.ndarray,
                 xlabel: str, title: str, vline: float | None = None) -> bytes:
    """Reference (filled) and generated (step) histograms on a log count axis."""
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.subplots()
    ax.hist(ref_values, edges, color=REF_COLOUR, alpha=0.5, label="reference")
    ax.hist(gen_values, edges, histtype="step", color=GEN_COLOUR, linewidth=1.5,
            label="generated")
    if vline is not None:
        ax.axvline(vline, color="k", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("showers")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.16)
    return to_png(fig)


def scores_png(scores: np.ndarray, labels: np.ndarray, title: str) -> bytes:
    """Histogram of calibrated classifier outputs for generated (0) and reference (1) showers."""
    return _classes_png(scores[labels == 1], scores[labels == 0], np.linspace(0.0, 1.0, 51),
                        "calibrated classifier output (1 = reference)", title)


def weights_png(scores: np.ndarray, labels: np.ndarray, title: str) -> bytes:
    """Histogram of ``log10 w``, ``w = p / (1 - p)``, for reference and generated showers.

    ``w`` estimates the density ratio p_ref / p_gen at each shower (seed talk 001, "Failure
    modes"): generated showers piling up at small ``w`` lie where the reference has little
    density (the model over-populates a region), reference showers at large ``w`` lie where the
    model puts too little (it misses part of the manifold)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    logw = np.clip(np.log10(p / (1.0 - p)), -6.0, 6.0)
    return _classes_png(logw[labels == 1], logw[labels == 0], np.linspace(-6.0, 6.0, 61),
                        r"$\log_{10} w$, $w = p/(1-p)$ (> 0: looks like reference)", title,
                        vline=0.0)
