"""The report's cheap pictures: histograms as inline SVG, average showers as a PNG mosaic."""

from __future__ import annotations

import io
import re
import xml.dom.minidom

import numpy as np
from matplotlib.image import imread

from caloforge.evaluation.histograms import Histogram
from caloforge.evaluation.svg import DECADES, histogram_svg, mosaic_png
from caloforge.geometry import Geometry


def _polylines(svg: str) -> list[np.ndarray]:
    return [np.array([[float(v) for v in p.split(",")] for p in pts.split()])
            for pts in re.findall(r"<polyline points='([^']*)'", svg)]


def test_histogram_svg_draws_densities_on_a_log_axis_and_the_ratio() -> None:
    edges = np.array([0.0, 1.0, 2.0, 4.0])
    ref = np.array([100.0, 10.0, 2.0])
    gen = np.array([100.0, 20.0, 2.0])
    svg = histogram_svg(Histogram("E_layer_3", edges, ref, gen, label="E [MeV]"), 260, 200)
    xml.dom.minidom.parseString(svg)  # well-formed
    assert "<title>E_layer_3  S = " in svg and "E [MeV]" in svg
    line, ratio = _polylines(svg)
    assert len(line) == 2 * len(ref)  # a step: two points per bin
    # generated densities 1/1.22, 0.2/1.22 ... : y = mid - (log10 d - (log10 peak - 4)) / 4 * h
    top, mid = 18.0, 200 - 64.0
    dens = gen / (gen.sum() * np.diff(edges))
    peak = max(dens.max(), (ref / (ref.sum() * np.diff(edges))).max())  # the reference's here
    expected = mid - (np.log10(dens) - (np.log10(peak) - DECADES)) / DECADES * (mid - top)
    assert np.allclose(line[::2, 1], expected, atol=0.06)
    # x: bin edges mapped linearly onto [6, 254]
    assert np.allclose(line[::2, 0], 6.0 + edges[:-1] / 4.0 * 248.0, atol=0.06)
    # ratio panel: gen/ref = 1, 2 (clipped to 1.5), 1 relative to the normalised densities
    r_top, r_bot = mid + 8.0, 200 - 14.0
    q = np.clip((gen / gen.sum()) / (ref / ref.sum()), 0.5, 1.5)
    assert np.allclose(ratio[::2, 1], r_bot - (q - 0.5) * (r_bot - r_top), atol=0.06)


def test_mosaic_places_every_layer_reference_above_generated() -> None:
    geo = Geometry.preset("2")
    ref = np.zeros(geo.n_voxels)
    gen = np.zeros(geo.n_voxels)
    ref[geo.layer_slice(0)] = 1.0  # only the first layer of the reference
    gen[geo.layer_slice(44)] = 1.0  # only the last layer of the generated
    img = imread(io.BytesIO(mosaic_png(gen, ref, geo)))
    lit = (img[..., 1] > 0.5) & (img[..., 2] < 0.5)  # yellow: the top of viridis (not white)
    rows = np.nonzero(lit)[0]
    h = img.shape[0]
    assert rows.min() < h / 2 < rows.max()  # lit pixels in both halves ...
    upper, lower = lit[: h // 2], lit[h // 2:]
    assert np.nonzero(upper)[1].max() < img.shape[1] / 9  # ... first tile of the top block
    assert np.nonzero(lower)[1].min() > img.shape[1] * 8 / 9  # ... last tile (9 per row)
