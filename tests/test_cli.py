"""The real ``caloforge`` console script: help, version, ``info`` and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_showers, run_cli, run_cli_many
from test_data import bad_files

import caloforge
from caloforge.data import write_showers


def test_help_and_version() -> None:
    res = run_cli_many({"help": ["--help"], "version": ["--version"], "bare": [],
                        "info_help": ["info", "--help"]})
    assert res["help"].returncode == 0 and "info" in res["help"].stdout
    assert res["version"].returncode == 0
    assert res["version"].stdout.strip() == f"caloforge {caloforge.__version__}"
    assert res["bare"].returncode == 0 and "usage" in res["bare"].stdout
    assert res["info_help"].returncode == 0 and "--dataset" in res["info_help"].stdout


def test_info_summary(tmp_path: Path) -> None:
    ss = make_showers("1-photons", n=150, seed=3)
    ss.e_inc[:] = np.repeat([256.0, 1024.0, 65536.0], 50)
    ss.showers[:, 8:168] = 0  # layer 1 fully empty
    path = write_showers(tmp_path / "p.h5", ss)
    cg = write_showers(tmp_path / "g.h5", make_showers("calogan", n=20), fmt="calogan")
    xml = Path(caloforge.__file__).parent / "data_files" / "binning_dataset_1_photons.xml"
    res = run_cli_many({"ds1": ["info", path], "cg": ["info", cg],
                        "xml": ["info", path, "--dataset", xml]})
    out = res["ds1"].stdout
    assert res["ds1"].returncode == 0, res["ds1"].stderr
    assert "showers:     150" in out
    assert "1-photons" in out and "368 voxels" in out
    assert "256 .. 65536 MeV, 3 distinct values" in out
    assert "'1024': 50" in out
    ratio = ss.showers.sum(1) / ss.e_inc
    assert f"mean {ratio.mean():.4f}" in out
    assert "layer  1: 1.000" in out  # sparsity
    frac0 = (ss.showers[:, :8] == 0).mean()
    assert f"layer  0: {frac0:.3f}" in out
    assert res["cg"].returncode == 0 and "calogan" in res["cg"].stdout
    assert "3 x 96" in res["cg"].stdout
    assert res["xml"].returncode == 0 and "1-photons" in res["xml"].stdout


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every bad input of test_data, plus CLI-only ones, run concurrently through the CLI."""
    tmp = tmp_path_factory.mktemp("bad")
    cases = bad_files(tmp)
    commands = {}
    for name, (path, args, _) in cases.items():
        commands[name] = ["info", path, *(["--dataset", args[0]] if args else [])]
    good = tmp / "good.h5"
    for name, text in {"xml_missing_attr": '<Bins><Bin name="x"><Layer id="0" r_edges="0,1"/>'
                                           '</Bin></Bins>',
                       "xml_decreasing": '<Bins><Bin name="x"><Layer id="0" r_edges="0,2,1" '
                                         'n_bin_alpha="1"/></Bin></Bins>',
                       "xml_not_xml": "<Bins><Bin"}.items():
        xml = tmp / f"{name}.xml"
        xml.write_text(text)
        commands[name] = ["info", good, "--dataset", xml]
    commands["unknown_dataset"] = ["info", good, "--dataset", "7"]
    commands["clip_negative"] = ["info", cases["negative_voxel"][0], "--clip-negative"]
    return {"cases": cases, "results": run_cli_many(commands), "tmp": tmp}


BAD = ["missing", "not_hdf5", "truncated", "empty", "missing_key", "no_keys", "unknown_voxels",
       "wrong_voxels", "different_n", "nan_voxel", "inf_voxel", "negative_voxel", "nan_energy",
       "zero_energy", "negative_energy", "string_data", "showers_3d", "calogan_missing_layer",
       "calogan_transposed", "xml_missing_attr", "xml_decreasing", "xml_not_xml",
       "unknown_dataset"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_error(cli_errors: dict, case: str) -> None:
    res = cli_errors["results"][case]
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("caloforge info: error: ")
    assert res.stdout == ""
    if case in cli_errors["cases"]:
        path, _, expect = cli_errors["cases"][case]
        assert str(path) in lines[0]
        for frag in expect.split("|"):
            assert frag in lines[0], (frag, lines[0])
    elif case.startswith("xml"):
        assert f"{case}.xml" in lines[0]
    if case == "xml_missing_attr":
        assert "[Layer 0@n_bin_alpha]" in lines[0]
    if case == "xml_decreasing":
        assert "[Layer 0@r_edges]: expected strictly increasing" in lines[0]


def test_bad_inputs_are_all_covered(cli_errors: dict) -> None:
    assert set(cli_errors["cases"]) <= set(BAD)


def test_clip_negative_flag(cli_errors: dict) -> None:
    res = cli_errors["results"]["clip_negative"]
    assert res.returncode == 0, res.stderr
    assert "showers:     6" in res.stdout


def test_argparse_errors_are_short(tmp_path: Path) -> None:
    res = run_cli("info")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "caloforge info: error: the following arguments are required: file "
        "(see 'caloforge info --help')"]
