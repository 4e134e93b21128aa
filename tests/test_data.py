"""ShowerSet, CaloChallenge / CaloGAN files, chunked I/O, validation, atomic writes, fuzzing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_showers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caloforge.atomic import atomic_path, check_writable
from caloforge.data import (
    ShowerSet,
    ShowerWriter,
    chunk_rows,
    concat,
    inspect,
    iter_showers,
    read_showers,
    split,
    subsample,
    validate,
    write_showers,
)
from caloforge.errors import CaloforgeError, DataError, GeometryError
from caloforge.geometry import Geometry

# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("compression", ["gzip", None])
def test_calochallenge_round_trip_bit_exact(tmp_path: Path, dtype: type,
                                            compression: str | None) -> None:
    ss = make_showers("1-pions", n=123, dtype=dtype, seed=1)
    ss.e_inc = np.random.default_rng(1).uniform(1e3, 1e6, 123)  # arbitrary float64 values
    path = write_showers(tmp_path / "x.h5", ss, compression=compression, chunk_size=50)
    back = read_showers(path)
    assert back.showers.dtype == dtype
    assert back.geometry == ss.geometry
    assert np.array_equal(back.showers, ss.showers)
    assert np.array_equal(back.e_inc, ss.e_inc)
    assert back.showers.tobytes() == ss.showers.tobytes()
    # the exact official layout
    with h5py.File(path, "r") as fh:
        assert set(fh) == {"incident_energies", "showers"}
        assert fh["incident_energies"].shape == (123, 1)
        assert fh["showers"].shape == (123, 533)
        assert fh["showers"].dtype == dtype
        assert fh["showers"].compression == compression
        assert np.array_equal(fh["showers"][:], ss.showers)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("compression", ["gzip", None])
def test_calogan_round_trip(tmp_path: Path, dtype: type, compression: str | None) -> None:
    ss = make_showers("calogan", n=77, dtype=dtype, seed=2)
    # CaloGAN stores GeV: values that are exact in both units round-trip bit-exactly
    ss.e_inc = np.random.default_rng(2).integers(1, 101, 77) * 1000.0
    path = write_showers(tmp_path / "g.h5", ss, fmt="calogan", compression=compression)
    with h5py.File(path, "r") as fh:
        assert set(fh) == {"energy", "layer_0", "layer_1", "layer_2", "overflow"}
        assert fh["layer_0"].shape == (77, 3, 96) and fh["layer_2"].shape == (77, 12, 6)
        assert fh["overflow"].shape == (77, 3) and not fh["overflow"][:].any()
        np.testing.assert_array_equal(fh["energy"][:, 0], ss.e_inc / 1000)
        # layer_1 is the C-order (n_phi, n_eta) image of voxels 288..431
        assert np.array_equal(fh["layer_1"][5].ravel(), ss.showers[5, 288:432])
    back = read_showers(path)
    assert back.geometry.name == "calogan" and back.showers.dtype == dtype
    assert back.showers.tobytes() == ss.showers.tobytes()
    assert back.e_inc.tobytes() == ss.e_inc.tobytes()


def test_calogan_energy_units_and_file_round_trip(tmp_path: Path) -> None:
    """A CaloGAN file (float32 GeV, as the originals) read and written back is identical."""
    rng = np.random.default_rng(3)
    n, src = 40, tmp_path / "orig.h5"
    gev = rng.uniform(1, 100, (n, 1)).astype(np.float32)
    layers = [rng.exponential(1, (n, *s)).astype(np.float32) for s in ((3, 96), (12, 12), (12, 6))]
    with h5py.File(src, "w") as fh:
        fh["energy"] = gev
        for i, a in enumerate(layers):
            fh[f"layer_{i}"] = a
        fh["overflow"] = np.zeros((n, 3), np.float32)
    ss = read_showers(src)
    np.testing.assert_allclose(ss.e_inc, gev[:, 0].astype(np.float64) * 1000, rtol=1e-15)
    assert np.array_equal(ss.showers[:, :288].reshape(n, 3, 96), layers[0])
    out = write_showers(tmp_path / "copy.h5", ss, fmt="calogan")
    with h5py.File(out, "r") as fh:
        assert np.array_equal(fh["energy"][:], gev.astype(np.float64))
        for i, a in enumerate(layers):
            assert np.array_equal(fh[f"layer_{i}"][:], a)
    # arbitrary float64 MeV energies survive within one unit in the last place
    ss.e_inc = rng.uniform(1e3, 1e5, n)
    back = read_showers(write_showers(tmp_path / "ulp.h5", ss, fmt="calogan"))
    assert np.all(np.abs(back.e_inc - ss.e_inc) <= np.spacing(ss.e_inc))


def test_reads_official_style_files(tmp_path: Path) -> None:
    """Files written by plain h5py as the CaloChallenge did: float64 everywhere, gzip, and
    a 1-D incident_energies variant."""
    rng = np.random.default_rng(4)
    s = rng.exponential(1, (30, 368))
    e = 2.0 ** rng.integers(8, 23, (30, 1))
    for shape in ((30, 1), (30,)):
        path = tmp_path / f"off{len(shape)}.h5"
        with h5py.File(path, "w") as fh:
            fh.create_dataset("incident_energies", data=e.reshape(shape), compression="gzip")
            fh.create_dataset("showers", data=s, compression="gzip")
        ss = read_showers(path)
        assert ss.geometry.name == "1-photons" and ss.showers.dtype == np.float64
        assert np.array_equal(ss.showers, s) and np.array_equal(ss.e_inc, e[:, 0])


def test_big_endian_file_gives_native_arrays(tmp_path: Path) -> None:
    path = tmp_path / "be.h5"
    with h5py.File(path, "w") as fh:
        fh["incident_energies"] = np.full((4, 1), 1000.0, ">f8")
        fh["showers"] = np.ones((4, 368), ">f4")
    ss = read_showers(path)
    assert ss.showers.dtype == np.float32 and ss.showers.dtype.isnative
    assert ss.showers.sum() == 4 * 368


def test_attrs_and_geometry_override(tmp_path: Path) -> None:
    ss = make_showers("2", n=5)
    path = write_showers(tmp_path / "a.h5", ss, attrs={"model": "test"})
    with h5py.File(path, "r") as fh:
        assert fh.attrs["model"] == "test"
    assert inspect(path, "2").geometry.name == "2"
    assert inspect(path).compression == "gzip"


# --------------------------------------------------------------------------------------------
# chunked reading and writing


def test_chunked_read_equals_whole_read(tmp_path: Path) -> None:
    ss = make_showers("2", n=400, seed=5)
    path = write_showers(tmp_path / "c.h5", ss, chunk_size=150)  # several append() calls
    whole = read_showers(path, chunk_size=10**6)
    assert np.array_equal(whole.showers, ss.showers)
    small = read_showers(path, chunk_size=97)
    assert np.array_equal(small.showers, whole.showers)
    chunks = list(iter_showers(path, batch_size=133))
    assert [len(c) for c in chunks] == [133, 133, 133, 1]
    assert np.array_equal(np.concatenate([c.showers for c in chunks]), whole.showers)
    assert np.array_equal(np.concatenate([c.e_inc for c in chunks]), whole.e_inc)
    part = read_showers(path, start=150, stop=377, chunk_size=100)
    assert np.array_equal(part.showers, ss.showers[150:377])
    parts = list(iter_showers(path, 200, start=350, stop=5000))
    assert sum(len(c) for c in parts) == 50
    assert len(read_showers(path, start=2000)) == 0


def test_chunk_rows() -> None:
    assert chunk_rows(40500, 4) * 40500 * 4 <= 64 * 2**20
    assert chunk_rows(10**9, 8) == 1


def test_writer_streams_chunks(tmp_path: Path) -> None:
    geo = Geometry.preset("1-photons")
    ref = make_showers(n=300, seed=6)
    with ShowerWriter(tmp_path / "w.h5", geo, compression=None, chunk_rows=64) as w:
        for lo in range(0, 300, 70):
            w.append(ref.e_inc[lo:lo + 70], ref.showers[lo:lo + 70])
        w.append(np.zeros(0), np.zeros((0, 368)))
        assert w.n == 300
    assert np.array_equal(read_showers(tmp_path / "w.h5").showers, ref.showers)


def test_writer_with_known_size(tmp_path: Path) -> None:
    geo = Geometry.preset("1-photons")
    ref = make_showers(n=30)
    with ShowerWriter(tmp_path / "k.h5", geo, n_rows=30, compression=None) as w:
        w.append(ref.e_inc[:10], ref.showers[:10])
        w.append(ref.e_inc[10:], ref.showers[10:])
    assert np.array_equal(read_showers(tmp_path / "k.h5").showers, ref.showers)
    with pytest.raises(DataError, match="expected 31 showers"), \
            ShowerWriter(tmp_path / "short.h5", geo, n_rows=31) as w:
        w.append(ref.e_inc, ref.showers)
    with pytest.raises(DataError, match="expected 29 showers"), \
            ShowerWriter(tmp_path / "long.h5", geo, n_rows=29) as w:
        w.append(ref.e_inc, ref.showers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.h5"]
    empty = write_showers(tmp_path / "e.h5", ref.subset(slice(0, 0)))
    assert len(read_showers(empty)) == 0


def test_negative_zero_and_float16_are_valid() -> None:
    s = np.zeros((3, 4), np.float32)
    s[1, 1] = -0.0
    assert validate(np.ones(3), s) is s
    h = np.ones((3, 4), np.float16)
    assert validate(np.ones(3), h) is h
    h[0, 0] = np.inf
    with pytest.raises(DataError, match="finite"):
        validate(np.ones(3), h)


# --------------------------------------------------------------------------------------------
# atomic writes and overwrite protection


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    geo = Geometry.preset("1-photons")
    ref = make_showers(n=50)
    with pytest.raises(RuntimeError, match="boom"), \
            ShowerWriter(tmp_path / "out.h5", geo) as w:
        w.append(ref.e_inc, ref.showers)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    bad = ref.showers.copy()
    bad[3, 7] = np.nan
    with pytest.raises(DataError, match=r"row 53, voxel 7"), \
            ShowerWriter(tmp_path / "out.h5", geo) as w:
        w.append(ref.e_inc, ref.showers)
        w.append(ref.e_inc, bad)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keep.h5"
    first = make_showers(n=10, seed=1)
    write_showers(path, first)
    before = path.read_bytes()
    with pytest.raises(CaloforgeError, match="--overwrite"):
        write_showers(path, make_showers(n=10, seed=2))
    assert path.read_bytes() == before
    write_showers(path, make_showers(n=12, seed=2), overwrite=True)
    assert len(read_showers(path)) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5"]
    with pytest.raises(CaloforgeError, match="output directory"):
        check_writable(tmp_path / "no" / "such.h5")
    with pytest.raises(CaloforgeError, match="directory"):
        check_writable(tmp_path, overwrite=True)
    with pytest.raises(ValueError), atomic_path(tmp_path / "t.txt") as tmp:
        tmp.write_text("half")
        raise ValueError
    assert not (tmp_path / "t.txt").exists()


# --------------------------------------------------------------------------------------------
# set operations


def test_split_subsample_concat_determinism() -> None:
    ss = make_showers(n=101, seed=7)
    a = split(ss, (0.8, 0.1, 0.1), seed=3)
    b = split(ss, (0.8, 0.1, 0.1), seed=3)
    c = split(ss, (0.8, 0.1, 0.1), seed=4)
    assert [len(p) for p in a] == [81, 10, 10]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.showers, y.showers) and np.array_equal(x.e_inc, y.e_inc)
    assert not np.array_equal(a[1].showers, c[1].showers)
    # a partition: every shower exactly once
    rows = {r.tobytes() for p in a for r in p.showers}
    assert len(rows) == 101 == sum(len(p) for p in a)
    s1, s2 = subsample(ss, 30, seed=9), subsample(ss, 30, seed=9)
    assert np.array_equal(s1.showers, s2.showers)
    assert not np.array_equal(s1.showers, subsample(ss, 30, seed=10).showers)
    whole = concat(a)
    assert len(whole) == 101 and whole.geometry == ss.geometry
    with pytest.raises(DataError):
        subsample(ss, 0)
    with pytest.raises(DataError):
        subsample(ss, 102)
    with pytest.raises(DataError):
        split(ss, (0.5, 0.6))
    with pytest.raises(GeometryError):
        concat([ss, make_showers("1-pions", n=3)])
    with pytest.raises(DataError):
        concat([])


def test_showerset_shapes_and_layer_energies() -> None:
    ss = make_showers("1-photons", n=9)
    assert ss.subset(slice(2, 5)).showers.shape == (3, 368)
    np.testing.assert_allclose(ss.layer_energies().sum(1), ss.showers.sum(1), rtol=1e-5)
    with pytest.raises(GeometryError):
        ShowerSet(ss.e_inc, ss.showers[:, :100], ss.geometry)
    with pytest.raises(DataError):
        ShowerSet(ss.e_inc[:5], ss.showers, ss.geometry)


# --------------------------------------------------------------------------------------------
# bad input


def _write_raw(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as fh:
        for k, v in datasets.items():
            fh[k] = v
    return path


def _good(n: int = 6, n_vox: int = 368) -> dict[str, np.ndarray]:
    return {"incident_energies": np.full((n, 1), 1000.0), "showers": np.ones((n, n_vox))}


def bad_files(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (file, extra read arguments, expected message fragments separated by '|')."""
    good = _write_raw(tmp / "good.h5", **_good())
    raw = good.read_bytes()
    cases: dict[str, tuple[Path, list[str], str]] = {}

    def add(name: str, path: Path, expect: str, args: list[str] | None = None) -> None:
        cases[name] = (path, args or [], expect)

    add("missing", tmp / "missing.h5", "no such file")
    (tmp / "text.h5").write_text("incident_energies,showers\n1,2\n")
    add("not_hdf5", tmp / "text.h5", "expected an HDF5 file")
    (tmp / "trunc.h5").write_bytes(raw[: len(raw) // 2])
    add("truncated", tmp / "trunc.h5", "expected")
    (tmp / "empty.h5").write_bytes(b"")
    add("empty", tmp / "empty.h5", "expected an HDF5 file")
    d = _good()
    del d["showers"]
    add("missing_key", _write_raw(tmp / "nokey.h5", **d), "[showers]|expected key 'showers'")
    add("no_keys", _write_raw(tmp / "nothing.h5", other=np.zeros(3)), "expected keys")
    add("unknown_voxels", _write_raw(tmp / "v100.h5", **_good(n_vox=100)),
        "[showers]|found 100")
    add("wrong_voxels", good, "[showers]|expected 6480 voxels|found 368", ["2"])
    add("different_n", _write_raw(tmp / "n.h5", incident_energies=np.ones((5, 1)) * 1e3,
                                  showers=np.ones((6, 368))),
        "[incident_energies]|(6, 1)|found (5, 1)")
    for name, value, field, expect in [
            ("nan_voxel", np.nan, "showers", "found nan at row 2, voxel 4"),
            ("inf_voxel", np.inf, "showers", "found inf"),
            ("negative_voxel", -0.5, "showers", "expected voxel energies >= 0|found -0.5"),
            ("nan_energy", np.nan, "incident_energies", "expected finite energies"),
            ("zero_energy", 0.0, "incident_energies", "E_inc > 0|found 0.0 at row 2"),
            ("negative_energy", -5.0, "incident_energies", "found -5.0")]:
        d = _good()
        d[field][2, 4 if field == "showers" else 0] = value
        add(name, _write_raw(tmp / f"{name}.h5", **d), f"[{field}]|{expect}")
    add("string_data", _write_raw(tmp / "str.h5", incident_energies=np.ones((2, 1)),
                                  showers=np.array([["a"] * 368] * 2, dtype="S1")),
        "[showers]|numeric")
    d = _good()
    d["showers"] = np.ones((6, 2, 184))
    add("showers_3d", _write_raw(tmp / "s3d.h5", **d), "[showers]|(N, n_voxels)")
    add("calogan_missing_layer", _write_raw(tmp / "cg.h5", energy=np.ones((3, 1)),
                                            layer_0=np.ones((3, 3, 96)),
                                            layer_1=np.ones((3, 12, 12))), "[layer_2]")
    add("calogan_transposed", _write_raw(tmp / "cgt.h5", energy=np.ones((3, 1)),
                                         layer_0=np.ones((3, 96, 3)),
                                         layer_1=np.ones((3, 12, 12)),
                                         layer_2=np.ones((3, 12, 6))),
        "[layer_0]|expected shape (3, 3, 96)")
    return cases


def test_bad_inputs_raise_one_line_errors(tmp_path: Path) -> None:
    for name, (path, args, expect) in bad_files(tmp_path).items():
        with pytest.raises(CaloforgeError) as info:
            read_showers(path, *args)
        msg = str(info.value)
        assert "\n" not in msg, name
        assert str(path) in msg, (name, msg)
        for frag in expect.split("|"):
            assert frag in msg, (name, frag, msg)
        with pytest.raises(CaloforgeError):
            list(iter_showers(path, 2, *args))


def test_clip_negative(tmp_path: Path) -> None:
    d = _good()
    d["showers"][2, 4] = -0.5
    path = _write_raw(tmp_path / "neg.h5", **d)
    for ss in (read_showers(path, clip_negative=True),
               next(iter_showers(path, 100, clip_negative=True))):
        assert ss.showers[2, 4] == 0 and ss.showers.min() == 0
        assert ss.showers.sum() == 6 * 368 - 1
    with pytest.raises(DataError, match="--clip-negative"):
        read_showers(path)


def test_validate_reports_row_offsets() -> None:
    s = np.ones((4, 5))
    s[1, 2] = np.inf
    with pytest.raises(DataError, match="row 101, voxel 2"):
        validate(np.ones(4), s, "f.h5", offset=100)
    assert validate(np.ones(4), np.ones((4, 5))).shape == (4, 5)
    with pytest.raises(DataError):
        read_showers(__file__, start=-1)


def test_write_refuses_invalid_values(tmp_path: Path) -> None:
    ss = make_showers(n=5)
    ss.showers[0, 0] = -1
    with pytest.raises(DataError, match="voxel energies >= 0"):
        write_showers(tmp_path / "x.h5", ss)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GeometryError):
        write_showers(tmp_path / "x.h5", make_showers(n=2), fmt="calogan")
    with pytest.raises(DataError):
        write_showers(tmp_path / "x.h5", make_showers(n=2), fmt="root")


# --------------------------------------------------------------------------------------------
# fuzzing: a damaged file reads or raises CaloforgeError, nothing else


def _seed_files() -> dict[str, bytes]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in {"plain": {"compression": None}, "gzip": {"compression": "gzip"},
                         "calogan": {"fmt": "calogan", "compression": "gzip"}}.items():
            ss = make_showers("calogan" if name == "calogan" else "1-photons", n=8, seed=11)
            p = write_showers(Path(tmp) / f"{name}.h5", ss, chunk_size=3, **kw)
            out[name] = p.read_bytes()
    return out


SEEDS = _seed_files()


def _read_or_fail(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.h5"
        path.write_bytes(data)
        try:
            ss = read_showers(path)
            chunks = list(iter_showers(path, 3))
        except CaloforgeError as exc:
            assert "\n" not in str(exc)
            return
        assert sum(len(c) for c in chunks) == len(ss)
        assert np.isfinite(ss.showers).all() and (ss.showers >= 0).all()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(sorted(SEEDS)), frac=st.floats(0, 1))
def test_fuzz_truncated(which: str, frac: float) -> None:
    data = SEEDS[which]
    _read_or_fail(data[: int(len(data) * frac)])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(sorted(SEEDS)),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=8))
def test_fuzz_flipped_bytes(which: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(SEEDS[which])
    for pos, mask in flips:
        data[int(pos * len(data))] ^= mask
    _read_or_fail(bytes(data))
