"""Geometry: presets, XML parsing, voxel order and centres, malformed binning files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from caloforge.errors import CaloforgeError, GeometryError
from caloforge.geometry import DATASETS, Geometry, Layer

BINNING = Path(__file__).resolve().parents[1] / "src" / "caloforge" / "data_files"


@pytest.mark.parametrize(("name", "n_vox", "ids"), [
    ("1-photons", 368, [0, 1, 2, 3, 12]),
    ("1-pions", 533, [0, 1, 2, 3, 12, 13, 14]),
    ("2", 6480, list(range(45))),
    ("3", 40500, list(range(45))),
    ("calogan", 504, [0, 1, 2]),
])
def test_preset_voxel_counts(name: str, n_vox: int, ids: list[int]) -> None:
    g = Geometry.preset(name)
    assert g.n_voxels == n_vox
    assert g.layer_ids == ids
    assert g.n_layers == len(ids)
    assert sum(layer.n_voxels for layer in g.layers) == n_vox
    assert g.layer_slice(g.n_layers - 1).stop == n_vox
    assert Geometry.for_voxels(n_vox) == g
    assert [len(c) for c in g.centres()] == [n_vox] * 3


def test_layer_shapes_and_index_ranges() -> None:
    # EVALUATION.md section 2: DS1 voxel index ranges per layer
    ph, pi = Geometry.preset("1-photons"), Geometry.preset("1-pions")
    assert [l.shape for l in ph.layers] == [(1, 8), (10, 16), (10, 19), (1, 5), (1, 5)]
    assert [(ph.layer_slice(i).start, ph.layer_slice(i).stop - 1) for i in range(5)] == [
        (0, 7), (8, 167), (168, 357), (358, 362), (363, 367)]
    assert [(pi.layer_slice(i).start, pi.layer_slice(i).stop - 1) for i in range(7)] == [
        (0, 7), (8, 107), (108, 207), (208, 212), (213, 362), (363, 522), (523, 532)]
    assert all(l.shape == (16, 9) for l in Geometry.preset("2").layers)
    assert all(l.shape == (50, 18) for l in Geometry.preset("3").layers)
    assert Geometry.preset("2").layers[0].r_edges[-1] == pytest.approx(41.85)
    assert [l.shape for l in Geometry.preset("calogan").layers] == [(3, 96), (12, 12), (12, 6)]


def test_hand_checked_polar_centres() -> None:
    """Centres computed by hand from the XML edges: eta = r_mid cos a, phi = r_mid sin a."""
    g = Geometry.preset("1-photons")
    eta, phi, r = g.centres()
    # layer 1: edges 0,2,4,6,8,10,12,15,... (16 r bins), 10 alpha bins, first voxel 8.
    # alpha bin j=3, r bin i=6 (edges 12..15): r_mid 13.5, alpha_mid -pi + 3.5 * 2pi/10
    k = 8 + 3 * 16 + 6
    a = -math.pi + 3.5 * 2 * math.pi / 10
    assert r[k] == pytest.approx(13.5)
    assert eta[k] == pytest.approx(13.5 * math.cos(a))
    assert phi[k] == pytest.approx(13.5 * math.sin(a))
    # layer 0 is not binned in alpha: voxel 3 (edges 30..50) sits at alpha 0
    assert (eta[3], phi[3], r[3]) == pytest.approx((40.0, 0.0, 40.0))
    # layer 12 (last 5 voxels): edges 0,100,200,400,1000,2000 -> last r_mid 1500
    assert r[367] == pytest.approx(1500.0)
    # dataset 2, layer 7, alpha bin 15 (last), r bin 8 (edges 37.2..41.85)
    g2 = Geometry.preset("2")
    eta2, phi2, r2 = g2.centres()
    k = 7 * 144 + 15 * 9 + 8
    a = -math.pi + 15.5 * 2 * math.pi / 16
    assert r2[k] == pytest.approx((37.2 + 41.85) / 2)
    assert (eta2[k], phi2[k]) == pytest.approx((r2[k] * math.cos(a), r2[k] * math.sin(a)))
    # dataset 3, layer 0, alpha bin 0, r bin 0 (0..2.325)
    eta3, phi3, r3 = Geometry.preset("3").centres()
    a = -math.pi + 0.5 * 2 * math.pi / 50
    assert (eta3[0], phi3[0], r3[0]) == pytest.approx(
        (1.1625 * math.cos(a), 1.1625 * math.sin(a), 1.1625))


def test_hand_checked_cartesian_centres() -> None:
    g = Geometry.preset("calogan")
    eta, phi, r = g.centres()
    # layer 0 (3 x 96 cells of 5 x 160 mm): row 0, col 0 -> eta -237.5, phi -160
    assert (eta[0], phi[0]) == pytest.approx((-237.5, -160.0))
    # row 1, col 47 (the middle): eta -2.5, phi 0; eta is the fast axis
    assert (eta[96 + 47], phi[96 + 47]) == pytest.approx((-2.5, 0.0))
    # layer 2 (12 x 6 cells of 80 x 40 mm): row 11, col 5 -> eta 200, phi 220
    k = 288 + 144 + 11 * 6 + 5
    assert (eta[k], phi[k], r[k]) == pytest.approx((200.0, 220.0, math.hypot(200, 220)))
    # every layer covers the same 480 x 480 mm square
    for i, layer in enumerate(g.layers):
        sl = g.layer_slice(i)
        assert eta[sl].max() + layer.cell_eta / 2 == pytest.approx(240.0)
        assert phi[sl].min() - layer.cell_phi / 2 == pytest.approx(-240.0)


def test_voxel_order_and_layer_sums() -> None:
    g = Geometry.preset("1-pions")
    x = np.arange(3 * g.n_voxels, dtype=np.float64).reshape(3, -1)
    images = g.split_layers(x)
    for i, (layer, img) in enumerate(zip(g.layers, images, strict=True)):
        assert img.shape == (3, *layer.shape)
        n_r = layer.shape[1]
        # (layer, alpha, r) with r fastest
        assert img[1, -1, 0] == x[1, g.layer_slice(i).start + (layer.shape[0] - 1) * n_r]
    e = g.layer_energies(x)
    assert e.shape == (3, g.n_layers)
    np.testing.assert_allclose(e[:, 4], x[:, 213:363].sum(1))
    np.testing.assert_allclose(e.sum(1), x.sum(1))


@pytest.mark.parametrize("name", DATASETS)
def test_dict_round_trip(name: str) -> None:
    g = Geometry.preset(name)
    d = json.loads(json.dumps(g.to_dict()))
    assert Geometry.from_dict(d) == g


def test_user_xml_path(tmp_path: Path) -> None:
    copy = tmp_path / "binning_dataset_1_pions.xml"
    shutil.copy(BINNING / "binning_dataset_1_pions.xml", copy)
    g = Geometry.from_xml(copy)
    assert g == Geometry.preset("1-pions")  # a copy of an official file is that preset
    other = tmp_path / "mine.xml"
    shutil.copy(BINNING / "binning_dataset_2.xml", other)
    g2 = Geometry.from_xml(other)
    assert g2.name == "mine" and g2.layers == Geometry.preset("2").layers
    assert g2.particle == "electron"
    assert Geometry.resolve(str(other)).layers == g2.layers
    assert Geometry.resolve("2") is Geometry.preset("2")


def test_unknown_names() -> None:
    with pytest.raises(GeometryError, match="expected one of"):
        Geometry.preset("4")
    with pytest.raises(GeometryError, match="found 100"):
        Geometry.for_voxels(100, "f.h5")
    with pytest.raises(GeometryError, match="found 'nope'"):
        Geometry.resolve("nope")


def _xml(layers: str, bin_attrs: str = 'name="photon"') -> str:
    return f"<Bins>\n  <Bin {bin_attrs}>\n{layers}\n  </Bin>\n</Bins>\n"


GOOD = '<Layer id="0" r_edges="0,1,2" n_bin_alpha="1"/>'
MALFORMED = {
    "not_xml": ("this is not < xml", "well-formed XML"),
    "binary": ("\x00\xff\xfe garbage", "XML"),
    "no_bin": ("<Bins></Bins>", "[Bin]"),
    "no_layers": (_xml('<Layer id="0" r_edges="0" n_bin_alpha="1"/>'), "[Layer]"),
    "missing_id": (_xml('<Layer r_edges="0,1,2" n_bin_alpha="1"/>'), "[Layer@id]"),
    "bad_id": (_xml('<Layer id="x" r_edges="0,1,2" n_bin_alpha="1"/>'), "[Layer@id]"),
    "duplicate_id": (_xml(GOOD + GOOD), "unique layer ids"),
    "missing_edges": (_xml('<Layer id="0" n_bin_alpha="1"/>'), "[Layer 0@r_edges]"),
    "text_edges": (_xml('<Layer id="0" r_edges="0,a,2" n_bin_alpha="1"/>'), "expected numbers"),
    "decreasing": (_xml('<Layer id="3" r_edges="0,5,4" n_bin_alpha="1"/>'),
                   "[Layer 3@r_edges]: expected strictly increasing"),
    "repeated_edge": (_xml('<Layer id="0" r_edges="0,5,5" n_bin_alpha="1"/>'),
                      "strictly increasing"),
    "nan_edge": (_xml('<Layer id="0" r_edges="0,nan,5" n_bin_alpha="1"/>'), "finite"),
    "negative_edge": (_xml('<Layer id="0" r_edges="-1,5" n_bin_alpha="1"/>'), "edges >= 0"),
    "missing_alpha": (_xml('<Layer id="0" r_edges="0,1,2"/>'), "[Layer 0@n_bin_alpha]"),
    "zero_alpha": (_xml('<Layer id="0" r_edges="0,1,2" n_bin_alpha="0"/>'), "positive integer"),
    "float_alpha": (_xml('<Layer id="0" r_edges="0,1,2" n_bin_alpha="2.5"/>'), "found '2.5'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_xml(tmp_path: Path, case: str) -> None:
    text, expect = MALFORMED[case]
    path = tmp_path / f"{case}.xml"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(GeometryError) as info:
        Geometry.from_xml(path)
    msg = str(info.value)
    assert expect in msg
    assert str(path) in msg and "\n" not in msg
    assert isinstance(info.value, CaloforgeError)


def test_missing_xml(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match="no such file"):
        Geometry.from_xml(tmp_path / "nope.xml")


def test_minimal_xml_and_layer_without_bins(tmp_path: Path) -> None:
    path = tmp_path / "tiny.xml"
    path.write_text(_xml('<Layer id="0" r_edges="0" n_bin_alpha="1"/>\n'
                         '<Layer id="5" r_edges="0,1,3" n_bin_alpha="4"/>'))
    g = Geometry.from_xml(path)
    assert g.layer_ids == [5] and g.n_voxels == 8 and g.eval_threshold == 0.0
    assert g.layers[0] == Layer(id=5, r_edges=(0.0, 1.0, 3.0), n_alpha=4)
    assert g.layers[0].binned_in_angle
