"""Intrinsic dimension: synthetic manifolds of known dimension, empty/duplicate showers, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.errors import CaloforgeError
from caloforge.intrinsic_dim import (
    estimate,
    estimate_showers,
    parse_k_range,
    synthetic_manifold,
    transform_space,
)


@pytest.mark.parametrize("dim", [5, 10])
def test_synthetic_manifold_within_10_percent(dim: int) -> None:
    x = synthetic_manifold(4000, dim, ambient=368, seed=1)
    est = estimate(x, 5, 20)
    assert abs(est.dimension - dim) / dim < 0.10
    assert set(est.per_k) == set(range(5, 21))
    assert est.n_used == 4000


def test_duplicates_and_zero_rows_are_dropped() -> None:
    x = synthetic_manifold(2000, 5, ambient=368, seed=2)
    dirty = np.concatenate([x, x[:300], np.zeros((50, 368))])
    est = estimate(dirty, 5, 10)
    assert np.isfinite(est.dimension)
    assert est.n_zero == 50 and est.n_duplicate == 300 and est.n_used == 2000
    assert est.dimension == pytest.approx(estimate(x, 5, 10).dimension)


def test_showers_spaces_and_empty_showers() -> None:
    rng = np.random.default_rng(0)
    z = synthetic_manifold(1500, 5, ambient=368, seed=3)
    showers = np.exp(z)  # positive "energies" on a 5-d manifold
    showers[:20] = 0.0
    e_inc = np.full(len(showers), 1000.0)
    for space in ("raw", "pre", "pre-log"):
        est = estimate_showers(showers, e_inc, space, 5, 12)
        assert est.n_zero == 20
        assert 3.0 < est.dimension < 8.0, space
    x = transform_space(rng.random((3, 4)), np.ones(3), "pre-log")
    assert np.isfinite(x).all()


def test_errors_are_caloforge_errors() -> None:
    with pytest.raises(CaloforgeError):
        parse_k_range("20:5")
    with pytest.raises(CaloforgeError):
        parse_k_range("a:b")
    assert parse_k_range("7") == (7, 7)
    with pytest.raises(CaloforgeError):
        estimate(np.zeros((100, 3)), 5, 20)
    with pytest.raises(CaloforgeError):
        transform_space(np.ones((3, 3)), None, "bogus")


def test_cli(tmp_path, capsys) -> None:
    from caloforge.cli import main
    from caloforge.data import ShowerSet, write_showers
    from caloforge.geometry import Geometry

    geo = Geometry.preset("1-photons")
    showers = np.exp(synthetic_manifold(400, 5, ambient=geo.n_voxels, seed=4))
    path = tmp_path / "s.h5"
    write_showers(path, ShowerSet(np.full(400, 1000.0), showers, geo))
    assert main(["intrinsic-dim", str(path), "--k", "5:10", "-n", "300"]) == 0
    out = capsys.readouterr().out
    assert "raw" in out and "pre-log" in out
    assert main(["intrinsic-dim", str(path), "--k", "5:10", "-n", "3"]) == 2


def test_streamed_subsample_equals_the_in_memory_one(tmp_path) -> None:
    """`intrinsic-dim` reads only its -n showers, chunk by chunk: the same rows as
    subsampling the whole file with the same seed."""
    from caloforge.data import read_showers, read_subsample, subsample, write_showers
    from caloforge.simulate import simulate

    path = write_showers(tmp_path / "d2.h5", simulate("2", 600, seed=4, progress=False))
    a = read_subsample(path, 250, seed=7, chunk_size=64)
    b = subsample(read_showers(path), 250, seed=7)
    assert np.array_equal(a.showers, b.showers) and np.array_equal(a.e_inc, b.e_inc)
    assert len(read_subsample(path, 10_000)) == 600  # a small file is read whole
