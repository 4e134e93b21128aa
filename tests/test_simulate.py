"""Interface tests of the reference simulator: API, files, CLI, determinism, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caloforge.cli import main
from caloforge.data import read_showers
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.simulate import (
    GENERATOR,
    HadronModel,
    Slab,
    preset,
    simulate,
    simulate_showers,
    simulate_to_file,
)
from caloforge.simulate.core import plan
from caloforge.simulate.energies import DS1_COUNTS, DS1_ENERGIES, FULL_SIZE, stratified_counts
from caloforge.simulate.materials import LEAD, Material, Medium


@pytest.mark.parametrize(("dataset", "n", "n_vox", "dtype"), [
    ("1-photons", 60, 368, np.float64), ("1-pions", 60, 533, np.float64),
    ("2", 40, 6480, np.float32), ("3", 5, 40500, np.float32), ("calogan", 40, 504, np.float32)])
def test_every_dataset_gives_valid_showers(dataset, n, n_vox, dtype):
    s = simulate(dataset, n, seed=1)
    assert s.showers.shape == (n, n_vox) and s.showers.dtype == dtype
    assert np.isfinite(s.showers).all() and (s.showers >= 0).all()
    assert (s.e_inc > 0).all() and (s.showers.sum(1) > 0).mean() > 0.9
    assert 0.0 < (s.showers == 0).mean() < 1.0  # sparse, not empty


def test_particles_override_and_default():
    for particle in ("photon", "electron", "positron", "pion"):
        s = simulate("2", 10, seed=0, particle=particle)
        assert s.showers.shape == (10, 6480)
    assert plan("1-pions", 5).particle == "pion" and plan("2", 5).particle == "electron"


def test_same_seed_same_showers_whatever_the_workers():
    a = simulate("1-photons", 2100, seed=11, workers=1)
    b = simulate("1-photons", 2100, seed=11, workers=2)
    np.testing.assert_array_equal(a.e_inc, b.e_inc)
    np.testing.assert_array_equal(a.showers, b.showers)
    c = simulate("1-photons", 2100, seed=12)
    assert not np.array_equal(a.showers, c.showers)


def test_dataset1_energy_mix():
    p = plan("1-photons", full=True)
    values, counts = np.unique(p.e_inc, return_counts=True)
    np.testing.assert_array_equal(values, DS1_ENERGIES)
    np.testing.assert_array_equal(counts, DS1_COUNTS["1-photons"])
    assert len(plan("1-pions", full=True).e_inc) == FULL_SIZE["1-pions"] == 120_800
    small = plan("1-pions", 1208, seed=3).e_inc
    np.testing.assert_array_equal(np.unique(small, return_counts=True)[1],
                                  stratified_counts(DS1_COUNTS["1-pions"], 1208))
    np.testing.assert_array_equal(small, plan("1-pions", 1208, seed=3).e_inc)
    assert not np.array_equal(small, plan("1-pions", 1208, seed=4).e_inc)


def test_continuous_energy_ranges():
    e2 = plan("2", 5000, seed=0).e_inc
    assert 1e3 <= e2.min() and e2.max() <= 1e6
    assert abs(np.median(np.log10(e2)) - 4.5) < 0.1  # log-uniform
    eg = plan("calogan", 5000, seed=0).e_inc
    assert 1e3 <= eg.min() and eg.max() <= 1e5 and abs(np.median(eg) - 50.5e3) < 3e3
    er = plan("1-photons", 100, energies=(2e3, 4e3)).e_inc
    assert er.min() >= 2e3 and er.max() <= 4e3
    el = plan("1-photons", energies=np.array([300.0, 5e4])).e_inc
    np.testing.assert_array_equal(el, [300.0, 5e4])


def test_file_matches_memory_and_is_labelled(tmp_path):
    path = simulate_to_file(tmp_path / "s.h5", "1-pions", 1500, seed=5, progress=False,
                            chunk_size=700)
    mem = simulate("1-pions", 1500, seed=5)
    disk = read_showers(path)
    np.testing.assert_array_equal(disk.showers, mem.showers)
    np.testing.assert_array_equal(disk.e_inc, mem.e_inc)
    with h5py.File(path) as fh:
        assert fh.attrs["generator"] == GENERATOR and "not Geant4" in fh.attrs["generator"]
        assert fh.attrs["particle"] == "pion" and fh.attrs["seed"] == 5
        assert "caloforge_version" in fh.attrs
    with pytest.raises(CaloforgeError, match="exists"):
        simulate_to_file(path, "1-pions", 10, seed=5, progress=False)
    simulate_to_file(path, "1-pions", 10, seed=5, progress=False, overwrite=True)
    assert len(read_showers(path)) == 10


def test_calogan_file_layout(tmp_path):
    path = simulate_to_file(tmp_path / "cg.h5", "calogan", 50, seed=2, progress=False)
    with h5py.File(path) as fh:
        assert fh["layer_0"].shape == (50, 3, 96) and fh["energy"][:].max() <= 100.0  # GeV
    np.testing.assert_allclose(read_showers(path).showers, simulate("calogan", 50, seed=2).showers)


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    assert main(["simulate", "--dataset", "2", "-n", "30", "--seed", "4", "--no-progress",
                 "-o", str(out)]) == 0
    assert "not Geant4" in capsys.readouterr().out
    np.testing.assert_array_equal(read_showers(out).showers, simulate("2", 30, seed=4).showers)
    assert main(["simulate", "--dataset", "2", "-n", "30", "--seed", "4", "-o", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["simulate", "-d", "1-photons", "--particle", "pion", "-n", "5", "--seed", "1",
                 "--energy-range", "1000,2000", "--overwrite", "--no-progress",
                 "-o", str(out)]) == 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"dataset": "4"}, "dataset"), ({"dataset": "2", "n": 0}, "n"),
    ({"dataset": "2", "n": 5, "particle": "muon"}, "particle"),
    ({"dataset": "2", "n": 5, "seed": -1}, "seed"),
    ({"dataset": "2", "n": 2, "energies": np.array([1e3, -5.0])}, "energies"),
    ({"dataset": "2", "n": 3, "energies": np.array([1e3, 5e3])}, "energies"),
    ({"dataset": "2", "n": 3, "energies": (0.0, 1e3)}, "energies"),
    ({"dataset": "2", "n": 3, "energies": np.array([1e3, np.nan, 2e3])}, "energies"),
    ({"dataset": "2"}, "n"), ({"dataset": "2", "n": 5, "workers": 0}, "workers"),
])
def test_bad_requests_are_rejected(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        simulate(**kwargs)


def test_unphysical_parameters_are_rejected():
    with pytest.raises(ConfigError, match="depth_x0"):
        Slab("bad", Medium("Pb", ((LEAD, 1.0),)), -1.0, 0.1)
    with pytest.raises(ConfigError, match="sampling_fraction"):
        Slab("bad", Medium("Pb", ((LEAD, 1.0),)), 1.0, 0.1, sampling_fraction=1.5)
    with pytest.raises(ConfigError, match="sampling_term"):
        preset("2").with_slab_changes(sampling_term=-0.1)
    with pytest.raises(ConfigError, match="density"):
        Material("x", 10, 20, 0.0, 10, 100, 1.5)
    with pytest.raises(ConfigError, match="thickness"):
        Medium("m", ((LEAD, 0.0),))
    with pytest.raises(ConfigError, match="fem_k"):
        HadronModel(fem_k=1.2)
    with pytest.raises(ConfigError, match="threshold"):
        preset("1-photons").with_changes(threshold=-1.0)
    with pytest.raises(ConfigError, match="geometry"):
        simulate("2", 5, detector=preset("3"))


def test_custom_detector_low_level():
    det = preset("calogan").with_slab_changes(sampling_fraction=0.5)
    rng = np.random.default_rng(0)
    s = simulate_showers(det, np.full(200, 2e4), "positron", rng)
    assert 0.45 < s.sum(1).mean() / 2e4 < 0.52
