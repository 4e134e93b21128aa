"""Evaluation straight from files (issue 11 item 2): showers never loaded whole, several files
per side, classifier inputs in a scratch file that is always removed."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import make_showers

from caloforge.cli import main
from caloforge.data import ShowerSet, write_showers
from caloforge.diskset import DiskShowers, open_showers
from caloforge.errors import DataError, GeometryError
from caloforge.evaluation import evaluate
from caloforge.evaluation.classifier import PairRows, classifier_test, dnn_test
from caloforge.evaluation.histograms import voxel_histogram
from caloforge.evaluation.inputs import classifier_input, input_blocks
from caloforge.evaluation.scratch import scratch_file, write_scratch


def _parts(ss: ShowerSet, cuts: list[int]) -> list[ShowerSet]:
    edges = [0, *cuts, len(ss)]
    return [ss.subset(slice(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@pytest.fixture(autouse=True)
def _restore_threads(thread_settings):
    """The ``--threads 1`` runs below change this process's thread settings: put them back."""
    yield


@pytest.fixture()
def two_by_two(tmp_path):
    """Generated and reference photon showers, each as two files of unequal size."""
    gen = make_showers("1-photons", 360, seed=1)
    gen.showers *= np.float32(1.1)
    ref = make_showers("1-photons", 360, seed=2)
    paths = {}
    for side, ss, cut in (("gen", gen, 150), ("ref", ref, 200)):
        paths[side] = [write_showers(tmp_path / f"{side}{k}.h5", part)
                       for k, part in enumerate(_parts(ss, [cut]))]
    return gen, ref, paths


def _comparable(m: dict) -> dict:
    m = dict(m)
    m.pop("timing_s")
    m.pop("peak_rss_mib")
    for c in m["classifier"].values():
        c.pop("mean_epoch_s")
    return m


def test_disk_showers_index_like_an_array(tmp_path):
    ss = make_showers("1-photons", 230, seed=3)
    paths = [write_showers(tmp_path / f"p{k}.h5", part)
             for k, part in enumerate(_parts(ss, [70, 71, 160]))]  # a one-row file too
    disk = open_showers(paths)
    x = disk.showers
    assert isinstance(x, DiskShowers) and x.shape == ss.showers.shape and len(disk) == 230
    np.testing.assert_array_equal(disk.e_inc, ss.e_inc)
    np.testing.assert_array_equal(x[:], ss.showers)
    np.testing.assert_array_equal(x[65:165], ss.showers[65:165])  # across three files
    np.testing.assert_array_equal(x[-3], ss.showers[-3])
    idx = np.array([229, 0, 70, 70, 71, 5, 159, 160])  # unsorted, repeated, at file edges
    np.testing.assert_array_equal(x[idx], ss.showers[idx])
    mask = ss.e_inc > 5000
    np.testing.assert_array_equal(x[mask], ss.showers[mask])
    sub = disk.subset(idx)  # lazy, still on disk
    assert isinstance(sub.showers, DiskShowers)
    np.testing.assert_array_equal(sub.showers[1:4], ss.showers[idx[1:4]])
    np.testing.assert_array_equal(sub.showers[:], ss.showers[idx])
    np.testing.assert_array_equal(disk.layer_energies(), ss.layer_energies())
    with pytest.raises(IndexError):
        x[230]


def test_voxel_histogram_in_blocks_equals_whole(tmp_path):
    a, b = make_showers("2", 40, seed=4), make_showers("2", 40, seed=5)
    whole = voxel_histogram(a.showers, b.showers, 0.0151)
    small = voxel_histogram(a.showers, b.showers, 0.0151, chunk=7000)  # ~1 row per block
    for h in (small, voxel_histogram(a.showers, b.showers, 0.0151, chunk=1)):
        np.testing.assert_array_equal(h.edges, whole.edges)
        np.testing.assert_array_equal(h.ref, whole.ref)
        np.testing.assert_array_equal(h.gen, whole.gen)
    zero = voxel_histogram(a.showers, b.showers, 0.0, chunk=13_000)  # range from the data
    np.testing.assert_array_equal(zero.edges, voxel_histogram(a.showers, b.showers, 0.0).edges)


def test_evaluate_from_files_equals_in_memory(two_by_two):
    gen, ref, paths = two_by_two
    modes = "hist,cls-high,fpd,kpd,prdc"  # features, cls-high and FPD inputs on disk
    opts = {"epochs": 2, "width": 8, "min_steps": 0, "progress": False, "device": "cpu"}
    mem = evaluate(gen, ref, modes, **opts)
    disk = evaluate(open_showers(paths["gen"]), open_showers(paths["ref"]), modes, **opts)
    assert _comparable(disk) == _comparable(mem)  # bit for bit
    assert disk["fpd"] is not None and disk["prdc"]["coverage"] > 0


def test_features_on_disk_read_like_the_dict(tmp_path, monkeypatch):
    from caloforge.evaluation import inputs
    from caloforge.evaluation.feature_store import FeatureColumns, feature_rows, write_features
    from caloforge.features import feature_blocks, feature_names, high_level_features

    ss = make_showers("2", 50, seed=6)
    mem = high_level_features(ss)
    blocks = [(lo, hi, {k: v[lo:hi] for k, v in mem.items()}) for lo, hi in
              ((30, 50), (0, 7), (7, 30))]  # out of order
    cols = write_features(tmp_path / "f", feature_names(ss.geometry), 50, blocks)
    assert isinstance(cols, FeatureColumns) and list(cols) == list(mem)
    for k in mem:
        np.testing.assert_array_equal(cols[k], mem[k])
    rows = feature_rows(cols, 5, 9)
    assert all(np.array_equal(rows[k], mem[k][5:9]) for k in mem)
    one = write_features(tmp_path / "g", feature_names(ss.geometry), 50, feature_blocks(ss))
    assert all(np.array_equal(one[k], mem[k]) for k in mem)
    monkeypatch.setattr(inputs, "HIGH_LEVEL_BLOCK_VALUES", 1000)  # 2 rows per block
    parts = list(inputs.high_level_blocks(cols, ss))
    assert len(parts) > 10 and parts[0][:2] == (0, parts[0][1])
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in parts]),
                                  inputs.high_level_vector(mem, ss))
    with pytest.raises(DataError, match="expected features of 50 showers"):
        write_features(tmp_path / "h", feature_names(ss.geometry), 50, blocks[:2])
    with open(tmp_path / "f", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(DataError, match="truncated"):
        cols["E_tot"]


def test_fpd_kpd_from_stored_rows_equal_arrays():
    from caloforge.evaluation.fpd import StoredRows, feature_scale, fpd, kpd

    rng = np.random.default_rng(1)
    real, gen = rng.normal(size=(300, 6)), rng.normal(0.1, 1.0, size=(250, 6))
    real[:, 2] = 0.0  # an all-zero feature keeps divisor 1
    scale = feature_scale(np.abs(real).max(0))
    stored = (StoredRows(lambda i: real[i], 300, scale), StoredRows(lambda i: gen[i], 250, scale))
    opts = {"min_samples": 100, "max_samples": 200, "num_batches": 3}
    assert fpd(*stored, **opts) == fpd(real, gen, **opts)
    assert kpd(*stored, batch_size=80) == kpd(real, gen, batch_size=80)
    with pytest.raises(TypeError):
        fpd(stored[0], gen)


def test_dnn_from_scratch_file_equals_in_memory(two_by_two, tmp_path):
    gen, ref, paths = two_by_two
    thr = gen.geometry.eval_threshold
    opts = {"epochs": 3, "width": 8, "batch_size": 50, "min_steps": 0, "progress": False,
            "device": "cpu"}
    dg, dr = open_showers(paths["gen"]), open_showers(paths["ref"])
    for mode, standardize in (("cls-low", True), ("cls-high", False)):
        mem = classifier_test(classifier_input(mode, gen, thr), classifier_input(mode, ref, thr),
                              "1-photons", standardize=standardize, **opts)
        with scratch_file(tmp_path / "scratch", mode) as path:
            store = write_scratch(path, (input_blocks(mode, dg, thr), input_blocks(mode, dr, thr)))
            disk = dnn_test(store, "1-photons", standardize=standardize, **opts)
        assert (disk.auc, disk.jsd, disk.train_loss, disk.test_curve) == (
            mem.auc, mem.jsd, mem.train_loss, mem.test_curve)
        np.testing.assert_array_equal(disk.scores, mem.scores)
    assert not (tmp_path / "scratch").exists()  # file removed, the directory made for it too


def test_cli_takes_several_files_per_side(two_by_two, tmp_path, capsys):
    gen, ref, paths = two_by_two
    out = tmp_path / "cli"
    args = ["evaluate", "-g", *map(str, paths["gen"]), "-r", *map(str, paths["ref"]),
            "-m", "fpd,kpd", "--threads", "1", "--quiet", "-o", str(out)]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_generated"] == m["n_reference"] == 360
    mem = evaluate(gen, ref, "fpd,kpd", progress=False)
    assert (m["fpd"], m["kpd"]) == (mem["fpd"], mem["kpd"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_cli_refuses_a_side_that_mixes_geometries(two_by_two, tmp_path, capsys):
    _, _, paths = two_by_two
    pions = write_showers(tmp_path / "pions.h5", make_showers("1-pions", 50, seed=6))
    code = main(["evaluate", "-g", str(paths["gen"][0]), str(pions), "-r",
                 *map(str, paths["ref"]), "-m", "hist", "--quiet", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(pions) in err and "368" in err and "533" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(GeometryError):
        open_showers([paths["gen"][0], pions])


def test_scratch_removed_when_the_classifier_input_fails(two_by_two, tmp_path, capsys):
    _, _, paths = two_by_two
    bad = tmp_path / "bad.h5"
    ss = make_showers("1-photons", 360, seed=7)
    write_showers(bad, ss)
    with h5py.File(bad, "r+") as fh:
        fh["showers"][300, 5] = np.nan  # found only when cls-low reads row 300
    out = tmp_path / "never"
    code = main(["evaluate", "-g", str(bad), "-r", *map(str, paths["ref"]), "-m", "cls-low",
                 "--epochs", "1", "--width", "8", "--quiet", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(bad) in err and "row 300" in err and len(err.splitlines()) == 1
    assert not out.exists()  # scratch file and the directory made for it are both gone


def test_scratch_rows_read_like_the_arrays(tmp_path, monkeypatch):
    from caloforge.evaluation import scratch

    rng = np.random.default_rng(0)
    g, r = rng.random((37, 5)).astype(np.float32), rng.random((41, 5)).astype(np.float32)
    blocks = [[(lo, min(lo + 10, len(a)), a[lo:lo + 10]) for lo in range(0, len(a), 10)]
              for a in (g, r)]
    with scratch_file(tmp_path, "t") as path:
        store = write_scratch(path, blocks)
        rows = rng.integers(0, 78, 200)
        np.testing.assert_array_equal(store.take(rows), PairRows(g, r).take(rows))
        monkeypatch.setattr(scratch, "WINDOW_BYTES", 70)  # 3 rows mapped at a time
        np.testing.assert_array_equal(store.take(rows), PairRows(g, r).take(rows))
        np.testing.assert_array_equal(store.take([77, 0, 0]), PairRows(g, r).take([77, 0, 0]))
        assert (store.n_gen, store.n_ref, store.dim) == (37, 41, 5)
        assert path.exists()
    assert not path.exists() and tmp_path.exists()
    with pytest.raises(DataError), scratch_file(tmp_path, "t") as path:
        write_scratch(path, [[], []])
    assert not list(tmp_path.iterdir())



def test_scratch_refused_when_the_disk_is_too_small(two_by_two, tmp_path):
    from caloforge.evaluation.scratch import check_free_space

    _, _, paths = two_by_two
    dg, dr = open_showers(paths["gen"]), open_showers(paths["ref"])
    thr = dg.geometry.eval_threshold
    with pytest.raises(DataError) as err:  # more than any disk has: refused before writing
        check_free_space(tmp_path, 2**62, "the test")
    assert str(tmp_path) in str(err.value) and "GB free" in str(err.value)
    with scratch_file(tmp_path / "s", "cls-low") as path:  # the real check in the real write
        store = write_scratch(path, (input_blocks("cls-low", dg, thr),
                                     input_blocks("cls-low", dr, thr)), rows=720)
        assert path.stat().st_size == 720 * store.dim * 4


def test_gbdt_low_capped_to_its_memory_budget(two_by_two, monkeypatch):
    from caloforge.evaluation import runner

    gen, ref, paths = two_by_two
    dim = 1 + 368 + 5 + 2
    monkeypatch.setattr(runner, "GBDT_MEMORY_BYTES", 2 * dim * runner.GBDT_BYTES_PER_VALUE * 200)
    m = evaluate(open_showers(paths["gen"]), open_showers(paths["ref"]), "cls-gbdt-low",
                 progress=False)
    c = m["classifier"]["cls-gbdt-low"]
    assert c["showers_per_side"] == 200 and "200 showers per side" in c["note"]
    assert m["auc_gbdt_low"] > 0.6  # voxels scaled by 1.1: still seen on 200 per side
    m_all = evaluate(gen, ref, "cls-gbdt-high", progress=False)
    assert "showers_per_side" not in m_all["classifier"]["cls-gbdt-high"]


def test_prdc_float32_equals_float64():
    from caloforge.evaluation.prdc import prdc

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 200)), rng.normal(size=(400, 200)) + 0.3
    assert prdc(a, b) == prdc(a.astype(np.float32), b.astype(np.float32))


def test_known_blind_setting_warns(tmp_path, capsys):
    """cls-gbdt-high on dataset 2 below 5,000 showers per side: the judge benchmark found it
    blind to a 10 % energy scale at 2,000, so metrics.json and the CLI say so."""
    from caloforge.evaluation.runner import power_warning

    gen = write_showers(tmp_path / "g.h5", make_showers("2", 200, seed=1))
    ref = write_showers(tmp_path / "r.h5", make_showers("2", 200, seed=2))
    out = tmp_path / "out"
    assert main(["evaluate", "-g", str(gen), "-r", str(ref), "-m", "cls-gbdt-high",
                 "--threads", "1", "--quiet", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    warn = m["classifier"]["cls-gbdt-high"]["power_warning"]
    assert "200 showers per side" in warn and "blind" in warn
    assert "cls-gbdt-high: " + warn in capsys.readouterr().out
    assert power_warning("cls-gbdt-high", "gbdt", "2", 5_000) is None
    assert power_warning("cls-gbdt-high", "gbdt", "1-photons", 200) is None
    # the official cls-high DNN on photons: blind to scale 1.10 at 5,000, sees it at 20,000
    assert "at 5,000 per side" in power_warning("cls-high", "official", "1-photons", 10_000)
    assert power_warning("cls-high", "official", "1-photons", 20_000) is None
    assert power_warning("cls-low", "official", "1-photons", 2_000) is None
