"""Reliability (issue 14): no traceback, no silent acceptance, no lost or clobbered file.

A corpus of bad inputs (files, recipes, arguments, checkpoints), generated here, is driven
through every command in-process (``caloforge.cli.main``; the console script is the same
function). Every case must exit with status 2, print exactly one stderr line that starts with
``caloforge COMMAND: error:``, contains no traceback and names what the case broke, and leave
every file of the corpus directory as it was (nothing changed, nothing left behind). A
handful go through the real console script; concurrency, signals and resume run real
subprocesses.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import caloforge_exe, make_showers, run_cli, run_cli_many
from test_data import bad_files

from caloforge.cli import main
from caloforge.data import ShowerSet, read_showers, write_showers
from caloforge.geometry import Geometry

TINY: dict = {
    "model": "caloinn", "dataset": "1-photons",
    "flow": {"transforms": 2, "bins": 4, "hidden": [32]},
    "preprocessing": {"noise_mev": 1.0e-3, "threshold_mev": 1.0e-3},
    "training": {"epochs": 2, "batch_size": 128, "lr": 1.0e-3, "device": "cpu"},
}
DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
CALOFLOW = Path(__file__).resolve().parents[1] / "configs" / "caloflow" / "1-photons.yaml"


# --------------------------------------------------------------------------------------------
# the corpus


class Corpus:
    """The files every case refers to, under ``root`` (inputs in ``root/in``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        d = self.dir = root / "in"
        d.mkdir(parents=True)
        (root / "out").mkdir()
        self.good = write_showers(d / "good.h5", make_showers(n=600, sparsity=0.7, seed=1))
        self.ref = write_showers(d / "ref.h5", make_showers(n=200, seed=2))
        self.pions = write_showers(d / "pions.h5", make_showers("1-pions", n=50, seed=3))
        self.calogan = write_showers(d / "calogan.h5", make_showers("calogan", n=20, seed=4),
                                     fmt="calogan")
        # peers of the bad files in size and geometry: the bad value is their only defect
        self.peer = write_showers(d / "peer6.h5", make_showers(n=6, seed=8))
        self.peer_calogan = write_showers(d / "peer3cg.h5", make_showers("calogan", n=3, seed=9),
                                          fmt="calogan")
        geo = Geometry.preset("1-photons")
        self.zero_rows = write_showers(d / "zero_rows.h5",
                                       ShowerSet(np.zeros(0), np.zeros((0, 368)), geo))
        empty = make_showers(n=50, seed=5)
        empty.showers[:] = 0
        self.allzero = write_showers(d / "allzero.h5", empty)
        hot = make_showers(n=20, seed=6)
        hot.e_inc[:] = 1e8
        self.hot = write_showers(d / "hot.h5", hot)
        cold = make_showers(n=20, seed=7)
        cold.e_inc[:] = 10.0
        self.cold = write_showers(d / "cold.h5", cold)
        (d / "bad").mkdir()
        self.bad = bad_files(d / "bad")
        self.bad.update(self._calogan_bad(d / "bad"))
        self.configs: dict[str, Path] = {}
        self.tiny = self.config("tiny", TINY)
        self._checkpoints(d)

    def _calogan_bad(self, d: Path) -> dict:
        out = {}
        for name, key, value, expect in (
                ("calogan_nan_layer", "layer_1", np.nan, "[layer_1]|found nan at row 1"),
                ("calogan_negative_layer", "layer_2", -3.0, "[layer_2]|found -3.0"),
                ("calogan_zero_energy", "energy", 0.0, "[energy]|E_inc > 0")):
            path = d / f"{name}.h5"
            with h5py.File(path, "w") as fh:
                fh["energy"] = np.full((3, 1), 10.0)
                for i, shape in enumerate(((3, 96), (12, 12), (12, 6))):
                    fh[f"layer_{i}"] = np.ones((3, *shape))
                fh["overflow"] = np.zeros((3, 3))
                if key == "energy":
                    fh["energy"][1, 0] = value
                else:
                    data = fh[key][...]
                    data[1].flat[5] = value
                    fh[key][...] = data
            out[name] = (path, [], expect)
        return out

    def _checkpoints(self, d: Path) -> None:
        from caloforge.models import model_class

        torch.manual_seed(0)
        cfg = {**copy.deepcopy(TINY), "_source": str(self.tiny)}
        model = model_class("caloinn")(Geometry.preset("1-photons"), cfg)
        model.trained_e_inc = (256.0, 4194304.0)
        self.model = model.save(d / "model.pt")
        demo = yaml.safe_load(DEMO.read_text())
        caloman = model_class("caloman")(Geometry.preset("1-photons"), demo)
        self.caloman = caloman.save(d / "caloman.pt")
        teacher = model_class("caloflow")(Geometry.preset("1-photons"), {
            "model": "caloflow", "dataset": "1-photons",
            "flow1": {"transforms": 1, "hidden": [8]}, "flow2": {"transforms": 1, "hidden": [8]}})
        self.teacher = teacher.save(d / "teacher.pt")  # a sequential sampler: not exportable
        raw = self.model.read_bytes()
        self.ckpt: dict[str, Path] = {}
        (d / "garbage.pt").write_bytes(os.urandom(4096))
        self.ckpt["garbage"] = d / "garbage.pt"
        (d / "trunc.pt").write_bytes(raw[: len(raw) // 2])
        self.ckpt["truncated"] = d / "trunc.pt"
        torch.save([1, 2, 3], d / "list.pt")
        self.ckpt["list"] = d / "list.pt"
        torch.save({"a": 1}, d / "nokeys.pt")
        self.ckpt["no_keys"] = d / "nokeys.pt"
        ck = torch.load(self.model, weights_only=False)
        torch.save({**ck, "model": "gan"}, d / "unknown_model.pt")
        self.ckpt["unknown_model"] = d / "unknown_model.pt"
        torch.save({**ck, "config": {**ck["config"], "flow": {"hidden": [8]}}},
                   d / "mismatch.pt")
        self.ckpt["shape_mismatch"] = d / "mismatch.pt"
        torch.save({**ck, "config": {**ck["config"], "flow": {"hidden": []}}},
                   d / "badconfig.pt")
        self.ckpt["bad_config"] = d / "badconfig.pt"
        self.ckpt["yaml"] = self.tiny
        self.ckpt["directory"] = d / "bad"
        self.ckpt["missing"] = d / "nope.pt"

    def config(self, name: str, data: object, text: str | None = None) -> Path:
        """Write a recipe (YAML of ``data``, or raw ``text``) as ``in/NAME.yaml``."""
        path = self.dir / f"{name}.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(data, sort_keys=False))
        self.configs[name] = path
        return path

    def out(self, name: str) -> Path:
        """A path for an output that must not appear."""
        return self.root / "out" / name


def _set(d: dict, dotted: str, value: object) -> dict:
    d = copy.deepcopy(d)
    *parents, last = dotted.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return d


_DELETE = object()
Spec = Callable[[Corpus], tuple[list, list[str]]]
CASES: dict[str, Spec] = {}
USAGE: set[str] = set()  # argparse errors: one line, no expected/found wording


def case(name: str, usage: bool = False) -> Callable[[Spec], Spec]:
    def deco(fn: Spec) -> Spec:
        assert name not in CASES, name
        CASES[name] = fn
        if usage:
            USAGE.add(name)
        return fn
    return deco


# -- bad shower files through every command that reads one ------------------------------------
BAD_FILES = ["missing", "not_hdf5", "truncated", "empty", "missing_key", "no_keys",
             "unknown_voxels", "different_n", "nan_voxel", "inf_voxel", "negative_voxel",
             "nan_energy", "zero_energy", "negative_energy", "string_data", "showers_3d",
             "calogan_missing_layer", "calogan_transposed", "calogan_nan_layer",
             "calogan_negative_layer", "calogan_zero_energy"]
#: Only the energies are read from --energies-from: voxel values do not matter there.
VOXEL_VALUE = {"nan_voxel", "inf_voxel", "negative_voxel", "calogan_nan_layer",
               "calogan_negative_layer"}


def _needles(c: Corpus, name: str) -> list[str]:
    path, _, expect = c.bad[name]
    return [str(path), *expect.split("|")]


for _name in BAD_FILES:
    def _mk(name: str) -> None:
        case(f"info-{name}")(lambda c: (["info", c.bad[name][0]], _needles(c, name)))
        case(f"intrinsic-dim-{name}")(lambda c: (["intrinsic-dim", c.bad[name][0], "-n", "20",
                                                  "--k", "2:5"], _needles(c, name)))
        case(f"train-data-{name}")(lambda c: (
            ["train", "--model", "caloinn", "--config", c.tiny, "--data", c.bad[name][0],
             "--quiet", "-o", c.out(f"run-{name}")],
            [str(c.bad[name][0])] + ([] if name.startswith("calogan") or name == "unknown_voxels"
                                     else c.bad[name][2].split("|"))))
        case(f"train-val-{name}")(lambda c: (
            ["train", "--model", "caloinn", "--config", c.tiny, "--data", c.good, "--val",
             c.bad[name][0], "--quiet", "-o", c.out(f"runv-{name}")], [str(c.bad[name][0])]))
        def peer(c: Corpus) -> Path:
            return c.peer_calogan if name.startswith("calogan") else c.peer

        case(f"evaluate-g-{name}")(lambda c: (
            ["evaluate", "-g", c.bad[name][0], "-r", peer(c), "-m", "hist", "--quiet", "-o",
             c.out(f"eval-g-{name}")], [str(c.bad[name][0])]))
        case(f"evaluate-r-{name}")(lambda c: (
            ["evaluate", "-g", peer(c), "-r", c.bad[name][0], "-m", "hist", "--quiet", "-o",
             c.out(f"eval-r-{name}")], [str(c.bad[name][0])]))
        if name not in VOXEL_VALUE:
            case(f"generate-energies-{name}")(lambda c: (
                ["generate", "--checkpoint", c.model, "--energies-from", c.bad[name][0],
                 "--quiet", "-o", c.out(f"gen-{name}.h5")], [str(c.bad[name][0])]))
    _mk(_name)


# -- recipes ------------------------------------------------------------------------------------
TRAIN_VALUES = [("epochs", 0), ("epochs", -1), ("epochs", "ten"), ("epochs", 1.5),
                ("epochs", True), ("batch_size", 0), ("lr", -1), ("lr", 0), ("lr", "abc"),
                ("lr", float("nan")), ("optimizer", "sgd"), ("scheduler", "cosine"),
                ("dtype", "float16"), ("device", "tpu"), ("device", "cuda:x"),
                ("patience", 0), ("monitor", "auc"), ("monitor_samples", 5), ("seed", "a"),
                ("progress", "yes"), ("grad_clip", -1), ("weight_decay", -1), ("max_lr", 0),
                ("cycle_steps", 0), ("learning_rate", 0.1)]
FLOW_VALUES = [("transforms", 0), ("transforms", -1), ("transforms", "a"), ("bins", 0),
               ("hidden", [-5, 256]), ("hidden", []), ("hidden", "256"), ("hidden", [0]),
               ("hidden", [1.5]), ("hidden", [True]), ("bound", -1), ("bound", 0),
               ("act", 5), ("act", "swish"), ("residual", "yes"), ("dropout", 1.0),
               ("dropout", -0.1),
               ("embedding", -1), ("seed", "x"), ("binz", 4)]
PREP_VALUES = [("alpha", 0), ("alpha", -1), ("noise_mev", -1), ("threshold_mev", "x"),
               ("u0_max", 0), ("noise", 1)]
for _key, _val in TRAIN_VALUES + [(f"flow.{k}", v) for k, v in FLOW_VALUES] + \
        [(f"preprocessing.{k}", v) for k, v in PREP_VALUES]:
    def _mk_cfg(key: str, val: object) -> None:
        dotted = key if "." in key else f"training.{key}"
        name = f"recipe-caloinn-{dotted}={val!r}"

        def spec(c: Corpus) -> tuple[list, list[str]]:
            path = c.config(f"ci-{abs(hash(name))}", _set(TINY, dotted, val))
            return (["train", "--model", "caloinn", "--config", path, "--data", c.good,
                     "--quiet", "-o", c.out(f"run-{abs(hash(name))}")],
                    [f"{path}[{dotted}]"])
        case(name)(spec)
    _mk_cfg(_key, _val)

CALOMAN_VALUES = [("energy_flow.hiden", [8]), ("energy_flow.hidden", []),
                  ("energy_flow.type", "spline"), ("latent_flow.bins", 0),
                  ("latent_flow.extra", 1), ("intrinsic_dim.k", [5]),
                  ("intrinsic_dim.n", -1), ("latent_dim", 1), ("latent_dim", "big"),
                  ("decoder_noise", "poisson"), ("autoencoder", "gan"), ("hidden", [-5, 256]),
                  ("beta", -1), ("threshold_mev", "x"), ("preprocessing", "log"),
                  ("energy_flow", [1, 2]), ("training.decoder", {"epochs": 1}),
                  ("training.autoencoder.lr", -1), ("colour", "red")]
for _key, _val in CALOMAN_VALUES:
    def _mk_cm(key: str, val: object) -> None:
        name = f"recipe-caloman-{key}={val!r}"

        def spec(c: Corpus) -> tuple[list, list[str]]:
            base = yaml.safe_load(DEMO.read_text())
            path = c.config(f"cm-{abs(hash(name))}", _set(base, key, val))
            field = "training" if key == "training.decoder" else key
            return (["train", "--model", "caloman", "--config", path, "--data", c.good,
                     "--quiet", "-o", c.out(f"run-{abs(hash(name))}")], [f"{path}[{field}]"])
        case(name)(spec)
    _mk_cm(_key, _val)

CALOFLOW_VALUES = [("flow1.hidden", []), ("flow2.bins", 0), ("flow2.dropout", 2.0),
                   ("preprocessing.logit_alpha", 0.7), ("sampling.batch_size", 0),
                   ("flow2.extra", 1), ("training.flow1.lr", 0)]
for _key, _val in CALOFLOW_VALUES:
    def _mk_cf(key: str, val: object) -> None:
        name = f"recipe-caloflow-{key}={val!r}"

        def spec(c: Corpus) -> tuple[list, list[str]]:
            base = yaml.safe_load(CALOFLOW.read_text())
            path = c.config(f"cf-{abs(hash(name))}", _set(base, key, val))
            return (["train", "--model", "caloflow", "--config", path, "--data", c.good,
                     "--quiet", "--epochs", "1", "-o", c.out(f"run-{abs(hash(name))}")],
                    [f"{path}[{key}]"])
        case(name)(spec)
    _mk_cf(_key, _val)

RAW_RECIPES = {"syntax": ("model: caloinn\nflow: [unclosed\n", "valid YAML"),
               "list": ("- 1\n- 2\n", "mapping"), "scalar": ("42\n", "mapping"),
               "empty": ("", "mapping"), "binary": ("\x00\x01\x02: [\n", "expected"),
               "model_int": ("model: 5\n", "[model]"), "dataset_bad": ("dataset: '7'\n",
                                                                      "[dataset]"),
               "training_list": ("training: [1, 2]\n", "[training]"),
               "flow_list": ("flow: [1]\n", "[flow]"), "flow_scalar": ("flow: 3\n", "[flow]"),
               "model_other": ("model: caloman\n", "[model]"),
               "unknown_top": ("model: caloinn\ncolour: red\n", "colour"),
               "duplicate_key": ("model: caloinn\ntraining: {epochs: 1}\ntraining: {lr: 1}\n",
                                 "[training]: expected each key once"),
               "duplicate_nested": ("model: caloinn\nflow: {bins: 4, bins: 8}\n", "[bins]")}
for _name, (_text, _needle) in RAW_RECIPES.items():
    def _mk_raw(name: str, text: str, needle: str) -> None:
        def spec(c: Corpus) -> tuple[list, list[str]]:
            path = c.config(f"raw-{name}", None, text)
            return (["train", "--model", "caloinn", "--config", path, "--data", c.good,
                     "--quiet", "-o", c.out(f"run-raw-{name}")], [str(path), needle])
        case(f"recipe-raw-{name}")(spec)
    _mk_raw(_name, _text, _needle)


# -- arguments and checkpoints ----------------------------------------------------------------
def _train(c: Corpus, *extra: object, out: str = "run-arg") -> list:
    return ["train", "--model", "caloinn", "--config", c.tiny, "--data", c.good, "--quiet",
            "-o", c.out(out), *extra]


def _gen(c: Corpus, *extra: object, out: str = "gen.h5") -> list:
    return ["generate", "--checkpoint", c.model, "--quiet", "-o", c.out(out), *extra]


ARGS: dict[str, Callable[[Corpus], tuple[list, list[str]]]] = {
    # generate
    "generate-n-0": lambda c: (_gen(c, "-n", "0"), ["-n", "found 0"]),
    "generate-n-negative": lambda c: (_gen(c, "-n", "-5"), ["-n", "found -5"]),
    "generate-n-more-than-file": lambda c: (_gen(c, "--energies-from", c.ref, "-n", "1000"),
                                            ["-n", "at most 200", str(c.ref), "found 1000"]),
    "generate-batch-0": lambda c: (_gen(c, "--batch-size", "0"), ["--batch-size"]),
    "generate-device-tpu": lambda c: (_gen(c, "--device", "tpu"), ["--device", "'tpu'"]),
    "generate-device-cuda-index": lambda c: (_gen(c, "--device", "cuda:x"), ["--device"]),
    "generate-dataset-mismatch": lambda c: (_gen(c, "--dataset", "1-pions"),
                                            ["--dataset", "1-photons", "1-pions"]),
    "generate-energies-other-geometry": lambda c: (_gen(c, "--energies-from", c.pions),
                                                   [str(c.pions), "1-photons", "1-pions"]),
    "generate-energies-calogan": lambda c: (_gen(c, "--energies-from", c.calogan),
                                            [str(c.calogan), "calogan"]),
    "generate-energies-too-high": lambda c: (_gen(c, "--energies-from", c.hot),
                                             [str(c.hot), "1e+08", "4.1943e+06"]),
    "generate-energies-too-low": lambda c: (_gen(c, "--energies-from", c.cold),
                                            [str(c.cold), "10..10", "256"]),
    "generate-energies-zero-rows": lambda c: (_gen(c, "--energies-from", c.zero_rows),
                                              [str(c.zero_rows), "0 rows"]),
    "generate-output-is-checkpoint": lambda c: (
        ["generate", "--checkpoint", c.model, "-o", c.model, "--quiet"],
        [str(c.model), "input"]),
    "generate-output-is-checkpoint-overwrite": lambda c: (
        ["generate", "--checkpoint", c.model, "-o", c.model, "--overwrite", "--quiet"],
        [str(c.model), "input"]),
    "generate-output-is-energies": lambda c: (
        _gen(c, "--energies-from", c.ref, "--overwrite", out="../in/ref.h5"),
        ["ref.h5", "input"]),
    "generate-output-exists": lambda c: (_gen(c, out="../in/good.h5"),
                                         ["good.h5", "--overwrite"]),
    "generate-output-dir": lambda c: (_gen(c, out="."), ["directory"]),
    "generate-output-no-dir": lambda c: (_gen(c, out="nowhere/x.h5"), ["nowhere"]),
    # export
    "export-opset-3": lambda c: (["export", "--checkpoint", c.model, "--opset", "3", "-o",
                                  c.out("m.onnx")], ["--opset", "found 3"]),
    "export-opset-negative": lambda c: (["export", "--checkpoint", c.model, "--opset", "-1",
                                         "-o", c.out("m.onnx")], ["--opset", "found -1"]),
    "export-opset-999": lambda c: (["export", "--checkpoint", c.model, "--opset", "999", "-o",
                                    c.out("m.onnx")], ["--opset", "found 999"]),
    "export-opset-12": lambda c: (["export", "--checkpoint", c.model, "--opset", "12", "-o",
                                   c.out("m.onnx")], ["--opset", "found 12"]),
    "export-output-is-checkpoint": lambda c: (["export", "--checkpoint", c.model, "-o",
                                               c.model, "--overwrite"], [str(c.model), "input"]),
    "export-not-exportable": lambda c: (["export", "--checkpoint", c.teacher, "-o",
                                         c.out("m.onnx")], [str(c.teacher), "caloflow"]),
    "export-output-exists": lambda c: (["export", "--checkpoint", c.model, "-o", c.good],
                                       ["good.h5", "--overwrite"]),
    # train
    "train-epochs-0": lambda c: (_train(c, "--epochs", "0"), ["--epochs", "found 0"]),
    "train-device-tpu": lambda c: (_train(c, "--device", "tpu"), ["--device", "tpu"]),
    "train-device-cuda-index": lambda c: (_train(c, "--device", "cuda:two"), ["--device"]),
    "train-teacher-for-caloinn": lambda c: (_train(c, "--teacher", c.model),
                                            ["--teacher", "caloinn", str(c.model)]),
    "train-student-without-teacher": lambda c: (
        ["train", "--model", "caloflow-student", "--config",
         c.config("student", {"model": "caloflow-student"}), "--data", c.good, "-o",
         c.out("run-student")], ["--teacher"]),
    "train-output-is-file": lambda c: (["train", "--model", "caloinn", "--config", c.tiny,
                                        "--data", c.good, "-o", c.good],
                                       [str(c.good), "run directory"]),
    "train-model-mismatch": lambda c: (["train", "--model", "caloman", "--config", c.tiny,
                                        "--data", c.good, "-o", c.out("run-mm")],
                                       [f"{c.tiny}[model]", "caloman"]),
    "train-geometry-mismatch": lambda c: (["train", "--model", "caloinn", "--config", c.tiny,
                                           "--data", c.pions, "-o", c.out("run-geo")],
                                          [str(c.pions), "368", "533"]),
    "train-all-zero-data": lambda c: (["train", "--model", "caloinn", "--config", c.tiny,
                                       "--data", c.allzero, "-o", c.out("run-zero")],
                                      [str(c.allzero), "[showers]", "empty"]),
    "train-zero-rows": lambda c: (["train", "--model", "caloinn", "--config", c.tiny,
                                   "--data", c.zero_rows, "-o", c.out("run-0")],
                                  [str(c.zero_rows), "[showers]"]),
    "train-config-missing": lambda c: (["train", "--model", "caloinn", "--config",
                                        c.dir / "nope.yaml", "--data", c.good, "-o",
                                        c.out("run-nc")], ["nope.yaml", "no such file"]),
    "train-config-directory": lambda c: (["train", "--model", "caloinn", "--config", c.dir,
                                          "--data", c.good, "-o", c.out("run-cd")], [str(c.dir)]),
    # simulate
    "simulate-n-0": lambda c: (["simulate", "-d", "1-photons", "-n", "0", "--seed", "1", "-o",
                                c.out("s.h5")], ["-n"]),
    "simulate-n-negative": lambda c: (["simulate", "-d", "1-photons", "-n", "-3", "--seed",
                                       "1", "-o", c.out("s.h5")], ["-n"]),
    "simulate-workers-0": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed", "1",
                                      "--workers", "0", "-o", c.out("s.h5")], ["--workers"]),
    "simulate-range-reversed": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed",
                                           "1", "--energy-range", "5000,1000", "-o",
                                           c.out("s.h5")], ["5000"]),
    "simulate-range-negative": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed",
                                           "1", "--energy-range=-1,10", "-o",
                                           c.out("s.h5")], ["-1"]),
    "simulate-range-nan": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed", "1",
                                      "--energy-range", "nan,inf", "-o", c.out("s.h5")],
                                     ["nan"]),
    "simulate-seed-negative": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed",
                                          "-1", "-o", c.out("s.h5")], ["--seed", "found -1"]),
    "simulate-threads-0": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed", "1",
                                      "--threads", "0", "-o", c.out("s.h5")], ["--threads"]),
    "demo-output-is-file": lambda c: (["demo", "-o", c.good], [str(c.good), "directory"]),
    "demo-threads-0": lambda c: (["demo", "--threads", "0", "-o", c.out("demo")],
                                 ["--threads"]),
    "evaluate-threads-0": lambda c: (["evaluate", "-g", c.ref, "-r", c.ref, "-m", "hist",
                                      "--threads", "0", "--quiet", "-o", c.out("ev-t")],
                                     ["--threads", "found 0"]),
    "evaluate-epochs-0": lambda c: (["evaluate", "-g", c.ref, "-r", c.ref, "-m", "cls-high",
                                     "--epochs", "0", "--quiet", "-o", c.out("ev-e")],
                                    ["--epochs"]),
    "evaluate-repeats-0": lambda c: (["evaluate", "-g", c.ref, "-r", c.ref, "-m", "cls-high",
                                      "--repeats", "0", "--quiet", "-o", c.out("ev-r")],
                                     ["--repeats"]),
    "simulate-output-exists": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed",
                                          "1", "-o", c.good], ["good.h5", "--overwrite"]),
    "simulate-output-dir": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed", "1",
                                       "-o", c.dir], ["directory"]),
    "simulate-output-under-a-file": lambda c: (["simulate", "-d", "1-photons", "-n", "5",
                                                "--seed", "1", "-o", c.good / "s.h5"],
                                               [str(c.good), "is a file"]),
    "train-output-under-a-file": lambda c: (_train(c, out="../in/good.h5/run"),
                                            ["good.h5", "is a file"]),
    "simulate-output-no-dir": lambda c: (["simulate", "-d", "1-photons", "-n", "5", "--seed",
                                          "1", "-o", c.out("no/s.h5")], ["no"]),
    # intrinsic-dim
    "intrinsic-dim-k-reversed": lambda c: (["intrinsic-dim", c.ref, "--k", "20:5"], ["--k"]),
    "intrinsic-dim-k-text": lambda c: (["intrinsic-dim", c.ref, "--k", "x"], ["--k", "'x'"]),
    "intrinsic-dim-k-zero": lambda c: (["intrinsic-dim", c.ref, "--k", "0:3"], ["--k"]),
    "intrinsic-dim-n-small": lambda c: (["intrinsic-dim", c.ref, "-n", "3"], ["-n"]),
    "intrinsic-dim-zero-rows": lambda c: (["intrinsic-dim", c.zero_rows, "--k", "2:3"],
                                          [str(c.zero_rows)]),
    # info
    "info-dataset-unknown": lambda c: (["info", c.ref, "--dataset", "7"], ["'7'"]),
    "info-dataset-mismatch": lambda c: (["info", c.ref, "--dataset", "2"],
                                        [str(c.ref), "6480", "368"]),
    # evaluate
    "evaluate-geometry-mismatch": lambda c: (["evaluate", "-g", c.ref, "-r", c.pions, "-m",
                                              "hist", "--quiet", "-o", c.out("ev")],
                                             ["1-photons", "1-pions"]),
    "evaluate-mode-unknown": lambda c: (["evaluate", "-g", c.ref, "-r", c.ref, "-m", "magic",
                                         "--quiet", "-o", c.out("ev")], ["magic"]),
    "evaluate-output-file": lambda c: (["evaluate", "-g", c.ref, "-r", c.ref, "-m", "hist",
                                        "--quiet", "-o", c.good], [str(c.good)]),
    "evaluate-zero-rows": lambda c: (["evaluate", "-g", c.zero_rows, "-r", c.ref, "-m", "hist",
                                      "--quiet", "-o", c.out("ev0")], [str(c.zero_rows)]),
}
for _name, _spec in ARGS.items():
    case(_name)(_spec)

for _name, _ in [("garbage", 0), ("truncated", 0), ("list", 0), ("no_keys", 0),
                 ("unknown_model", 0), ("shape_mismatch", 0), ("bad_config", 0), ("yaml", 0),
                 ("directory", 0), ("missing", 0)]:
    def _mk_ck(name: str) -> None:
        case(f"generate-checkpoint-{name}")(lambda c: (
            ["generate", "--checkpoint", c.ckpt[name], "-n", "5", "-o", c.out("g.h5")],
            [str(c.ckpt[name])]))
        case(f"export-checkpoint-{name}")(lambda c: (
            ["export", "--checkpoint", c.ckpt[name], "-o", c.out("m.onnx")],
            [str(c.ckpt[name])]))
        case(f"train-teacher-{name}")(lambda c: (
            ["train", "--model", "caloflow-student", "--config",
             c.config("student", {"model": "caloflow-student"}), "--data", c.good, "--teacher",
             c.ckpt[name], "-o", c.out("run-t")], [str(c.ckpt[name])]))
    _mk_ck(_name)

# argparse: one line, for the root parser and every subparser
USAGE_CASES = {
    "usage-root-unknown-command": ["bogus"],
    "usage-root-unknown-option": ["--bogus"],
    "usage-info-missing-file": ["info"],
    "usage-simulate-missing-seed": ["simulate", "-d", "1-photons", "-n", "5", "-o", "x.h5"],
    "usage-simulate-bad-dataset": ["simulate", "-d", "4", "-n", "5", "--seed", "1", "-o", "x"],
    "usage-simulate-n-text": ["simulate", "-d", "1-photons", "-n", "ten", "--seed", "1", "-o",
                              "x.h5"],
    "usage-simulate-n-and-full": ["simulate", "-d", "1-photons", "-n", "5", "--full",
                                  "--seed", "1", "-o", "x.h5"],
    "usage-simulate-range-text": ["simulate", "-d", "1-photons", "-n", "5", "--seed", "1",
                                  "--energy-range", "a,b", "-o", "x.h5"],
    "usage-train-missing": ["train"],
    "usage-train-bad-model": ["train", "--model", "gan", "--config", "c", "--data", "d", "-o",
                              "o"],
    "usage-train-epochs-text": ["train", "--model", "caloinn", "--config", "c", "--data", "d",
                                "-o", "o", "--epochs", "x"],
    "usage-generate-missing": ["generate"],
    "usage-generate-both-sources": ["generate", "--checkpoint", "m", "--dataset", "2",
                                    "--energies-from", "x", "-o", "o"],
    "usage-generate-n-float": ["generate", "--checkpoint", "m", "-n", "1.5", "-o", "o"],
    "usage-evaluate-missing": ["evaluate"],
    "usage-evaluate-bad-device": ["evaluate", "-g", "a", "-r", "b", "-o", "c", "--device",
                                  "tpu"],
    "usage-export-missing": ["export"],
    "usage-export-opset-text": ["export", "--checkpoint", "m", "-o", "o", "--opset", "x"],
    "usage-intrinsic-dim-space": ["intrinsic-dim", "f", "--space", "nope"],
    "usage-root-extra-argument": ["demo", "extra-argument"],
}
for _name, _argv in USAGE_CASES.items():
    case(_name, usage=True)(lambda c, argv=_argv: (argv, []))


# --------------------------------------------------------------------------------------------
# the driver


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (hidden ones too) -> (size, mtime in ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1,
                                             st.st_mtime_ns if p.is_file() else 0)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("reliability"))


def run_main(argv: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``caloforge ARGV`` in-process; argparse's SystemExit becomes the exit status."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def test_corpus_size() -> None:
    assert len(CASES) >= 200, len(CASES)
    commands = {name.split("-")[0] for name in CASES}
    assert {"info", "intrinsic", "train", "generate", "evaluate", "export", "simulate",
            "demo", "usage", "recipe"} <= commands


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, corpus: Corpus, capsys: pytest.CaptureFixture) -> None:
    argv, needles = CASES[name](corpus)
    before = tree(corpus.root)
    cwd = os.getcwd()
    os.chdir(corpus.root / "out")  # relative outputs of usage cases land here (and must not)
    try:
        rc, out, err = run_main(argv, capsys)
    finally:
        os.chdir(cwd)
    lines = err.strip().splitlines()
    assert rc == 2, (name, rc, err[-2000:])
    assert "Traceback" not in err
    assert len(lines) == 1, (name, err[-2000:])
    command = "caloforge" if name.startswith("usage-root") else f"caloforge {argv[0]}"
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    if name not in USAGE:
        assert "expected" in lines[0] and "found" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (name, needle, lines[0])
    after = tree(corpus.root)
    assert after == before, (name, set(after) ^ set(before),
                             {k for k in after if k in before and after[k] != before[k]})


def test_console_script_one_line(corpus: Corpus) -> None:
    """A few cases through the real executable (same code, separate process)."""
    picks = ["usage-train-missing", "export-opset-999", "generate-output-is-checkpoint",
             "info-truncated", "recipe-caloinn-flow.hidden=[-5, 256]"]
    res = run_cli_many({k: CASES[k](corpus)[0] for k in picks}, timeout=300)
    for k, r in res.items():
        assert r.returncode == 2, (k, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
            (k, r.stderr)


# --------------------------------------------------------------------------------------------
# atomic, exclusive output


def test_two_writers_in_one_process_exactly_one_wins(tmp_path: Path) -> None:
    from caloforge.atomic import atomic_path
    from caloforge.errors import CaloforgeError

    path = tmp_path / "out.txt"
    a, b = atomic_path(path), atomic_path(path)
    ta, tb = a.__enter__(), b.__enter__()
    assert ta != tb
    ta.write_text("A")
    tb.write_text("B")
    a.__exit__(None, None, None)
    with pytest.raises(CaloforgeError, match="another writer"):
        b.__exit__(None, None, None)
    assert path.read_text() == "A"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(path, overwrite=True) as tmp:  # --overwrite: the last writer wins whole
        tmp.write_text("C")
    assert path.read_text() == "C"


def test_two_concurrent_simulate_writers(tmp_path: Path) -> None:
    out = tmp_path / "same.h5"
    argv = ["simulate", "-d", "1-photons", "-n", "3000", "--no-progress", "-o", out]
    res = run_cli_many({"a": [*argv, "--seed", "1"], "b": [*argv, "--seed", "2"]})
    codes = sorted(r.returncode for r in res.values())
    assert codes == [0, 2], {k: (r.returncode, r.stderr) for k, r in res.items()}
    loser = next(r for r in res.values() if r.returncode == 2)
    assert len(loser.stderr.strip().splitlines()) == 1 and "Traceback" not in loser.stderr
    winner = "a" if res["a"].returncode == 0 else "b"
    with h5py.File(out) as fh:
        assert int(fh.attrs["seed"]) == {"a": 1, "b": 2}[winner]
    assert len(read_showers(out)) == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5"]
    # with --overwrite both succeed and the file is one of them, whole
    res = run_cli_many({"a": [*argv, "--seed", "3", "--overwrite"],
                        "b": [*argv, "--seed", "4", "--overwrite"]})
    assert all(r.returncode == 0 for r in res.values()), [r.stderr for r in res.values()]
    with h5py.File(out) as fh:
        assert int(fh.attrs["seed"]) in (3, 4)
    assert len(read_showers(out)) == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5"]


# --------------------------------------------------------------------------------------------
# debris


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_removes_temporary_file(tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "big.h5"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    # a job started in the background of a non-interactive shell (CI, nohup ... &) inherits
    # SIGINT as *ignored*; give the child the default disposition, as a terminal would
    proc = subprocess.Popen([*caloforge_exe(), "simulate", "-d", "1-photons", "-n", "400000",
                             "--seed", "1", "--no-progress", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not list(tmp_path.glob(".big.h5.*.tmp")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".big.h5.*.tmp")), "the writer never started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1


def test_stale_temporary_files_are_cleaned(tmp_path: Path, capsys) -> None:
    stale = tmp_path / f".old.h5.{_dead_pid()}.tmp"
    stale.write_bytes(b"x" * 1000)
    alive = tmp_path / f".other.h5.{os.getppid()}.tmp"  # a live process: left alone
    alive.write_bytes(b"y")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_bytes(b"z")
    rc, _, err = run_main(["simulate", "-d", "1-photons", "-n", "5", "--seed", "1",
                           "--no-progress", "-o", tmp_path / "new.h5"], capsys)
    assert rc == 0, err
    assert not stale.exists() and alive.exists() and unrelated.exists()


def test_config_error_leaves_no_run_directory(corpus: Corpus, capsys) -> None:
    path = corpus.config("late", _set(TINY, "training.lr", -1))  # found inside fit()
    run = corpus.root / "late-run"
    rc, _, err = run_main(["train", "--model", "caloinn", "--config", path, "--data",
                           corpus.good, "--quiet", "-o", run], capsys)
    assert rc == 2 and f"{path}[training.lr]" in err
    assert not run.exists()


# --------------------------------------------------------------------------------------------
# resume


def _train_argv(c: Corpus, run: Path, config: Path, *extra: object) -> list:
    return ["train", "--model", "caloinn", "--config", config, "--data", c.good, "--quiet",
            "-o", run, *extra]


def test_resume_survives(corpus: Corpus, capsys) -> None:
    """Longer and shorter --epochs with OneCycle, damaged newest checkpoint, changed recipe,
    other model: each ends in a finished run or a one-line error, never a traceback."""
    onecycle = corpus.config("onecycle", _set(TINY, "training.scheduler", "onecycle"))
    run = corpus.root / "resume"
    assert run_main(_train_argv(corpus, run, onecycle), capsys)[0] == 0
    assert (run / "last.prev.pt").is_file()  # the previous epoch's checkpoint is kept
    rc, _, err = run_main(_train_argv(corpus, run, onecycle, "--resume", "--epochs", "4"),
                          capsys)
    assert rc == 0, err  # was: OneCycle "Tried to step N times"
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 4
    # shorter than what was trained: nothing left to train, the run is finished again
    rc, _, err = run_main(_train_argv(corpus, run, onecycle, "--resume", "--epochs", "3"),
                          capsys)
    assert rc == 0, err
    # damaged newest checkpoint: falls back to last.prev.pt and says so
    (run / "final.pt").unlink()
    raw = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(raw[: len(raw) // 3])
    rc, _, err = run_main(_train_argv(corpus, run, onecycle, "--resume", "--epochs", "5"),
                          capsys)
    assert rc == 0, err
    assert "last.prev.pt" in err and "epoch 3" in err and "Traceback" not in err
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 5
    # a random last.pt and no previous one: the stage starts again, said on stderr
    (run / "final.pt").unlink()
    (run / "last.prev.pt").unlink()
    (run / "last.pt").write_bytes(os.urandom(2000))
    rc, _, err = run_main(_train_argv(corpus, run, onecycle, "--resume", "--epochs", "1"),
                          capsys)
    assert rc == 0 and "epoch 1" in err, err
    # the recipe's architecture changed: one line naming the run's recipe and the section
    wider = corpus.config("wider", _set(_set(TINY, "training.scheduler", "onecycle"),
                                        "flow.hidden", [64]))
    before = tree(run)
    rc, _, err = run_main(_train_argv(corpus, run, wider, "--resume"), capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{run / 'config.yaml'}[flow]" in err and "expected" in err and "found" in err
    # another model on the same run directory
    rc, _, err = run_main(["train", "--model", "caloman", "--config", DEMO, "--data",
                           corpus.good, "--quiet", "--resume", "-o", run], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "[model]" in err, err
    assert tree(run) == before


def test_resume_detects_changed_architecture_without_recipe(corpus: Corpus, capsys) -> None:
    run = corpus.root / "resume2"
    assert run_main(_train_argv(corpus, run, corpus.tiny, "--epochs", "1"), capsys)[0] == 0
    (run / "config.yaml").unlink()
    (run / "final.pt").unlink()
    wider = corpus.config("wider2", _set(TINY, "flow.hidden", [48]))
    rc, _, err = run_main(_train_argv(corpus, run, wider, "--resume", "--epochs", "2"), capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{run / 'last.pt'}[module]" in err and "architecture" in err


@pytest.mark.slow
def test_kill_resume_bit_identical(corpus: Corpus, tmp_path: Path) -> None:
    """kill -9 mid-run, --resume: the final weights equal those of an uninterrupted run."""
    epochs = "8"
    cfg = corpus.config("bitident", _set(TINY, "training.scheduler", "onecycle"))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    r = run_cli(*_train_argv(corpus, straight, cfg, "--epochs", epochs), timeout=600)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*caloforge_exe(), *map(str, _train_argv(
        corpus, killed, cfg, "--epochs", epochs))], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (killed / "last.prev.pt").exists():  # two epochs done
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(killed / "last.pt", weights_only=False)["epoch"]
    assert 1 <= done < int(epochs)
    r = run_cli(*_train_argv(corpus, killed, cfg, "--epochs", epochs, "--resume"), timeout=600)
    assert r.returncode == 0, r.stderr
    a = torch.load(straight / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(killed / "model.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------------------------
# generation keeps going


class _Flaky(torch.nn.Module):
    """A generator whose every ``period``-th shower (counted over all calls) has a NaN or a
    negative voxel: a real sampler with a known failure rate, not a stand-in for the CLI."""

    name = "flaky"

    def __init__(self, period: int) -> None:
        super().__init__()
        self.geometry = Geometry.preset("1-photons")
        self.period, self.count = period, 0

    def sample(self, e_inc: torch.Tensor) -> torch.Tensor:
        n = len(e_inc)
        x = torch.rand(n, self.geometry.n_voxels, dtype=torch.float64) * e_inc[:, None] / 368
        idx = torch.arange(self.count, self.count + n)
        self.count += n
        bad = (idx % self.period) == 0 if self.period else torch.ones(n, dtype=torch.bool)
        x[bad, 3] = torch.where(idx[bad] % 2 == 0, torch.tensor(float("nan")),
                                torch.tensor(-1.0, dtype=torch.float64))
        return x


def test_generation_redraws_invalid_rows(tmp_path: Path) -> None:
    from caloforge.generation import generate_to_file

    e = np.full(2000, 1024.0)
    res = generate_to_file(_Flaky(97), e, tmp_path / "g.h5", batch_size=500, progress=False)
    assert res.redrawn == len(range(0, 2000, 97))
    out = read_showers(tmp_path / "g.h5")
    assert len(out) == 2000 and np.isfinite(out.showers).all() and (out.showers >= 0).all()


def test_generation_stops_on_a_broken_model_naming_it(tmp_path: Path) -> None:
    from caloforge.errors import CaloforgeError
    from caloforge.generation import generate_to_file

    with pytest.raises(CaloforgeError) as info:
        generate_to_file(_Flaky(0), np.full(50, 1024.0), tmp_path / "g.h5", progress=False,
                         attrs={"checkpoint": "runs/x/model.pt"})
    msg = str(info.value)
    assert msg.startswith("runs/x/model.pt: expected model flaky") and "re-draws" in msg
    assert "g.h5" not in msg and list(tmp_path.iterdir()) == []


def test_generate_cli_with_a_nan_model(corpus: Corpus, tmp_path: Path, capsys) -> None:
    """A real checkpoint whose weights are NaN: one line naming the checkpoint, no output."""
    ck = torch.load(corpus.model, weights_only=False)
    ck["state_dict"] = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v)
                        for k, v in ck["state_dict"].items()}
    path = tmp_path / "nan.pt"
    torch.save(ck, path)
    rc, _, err = run_main(["generate", "--checkpoint", path, "-n", "20", "--quiet", "-o",
                           tmp_path / "g.h5"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.split(": error: ")[1].startswith(str(path)), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_requested_without_gpu(corpus: Corpus, capsys) -> None:
    """--device cuda and ``device: cuda`` in a recipe: one line, before any work."""
    recipe = corpus.config("cuda", _set(TINY, "training.device", "cuda"))
    cases = {
        "train-flag": (_train(corpus, "--device", "cuda", out="run-cuda1"), "--device"),
        "train-recipe": (["train", "--model", "caloinn", "--config", recipe, "--data",
                          corpus.good, "-o", corpus.out("run-cuda2")],
                         f"{recipe}[training.device]"),
        "generate": (_gen(corpus, "--device", "cuda:0"), "--device"),
    }
    for name, (argv, needle) in cases.items():
        before = tree(corpus.root)
        rc, _, err = run_main(argv, capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (name, err)
        assert needle in err and "no CUDA GPU" in err, (name, err)
        assert tree(corpus.root) == before, name


def test_two_concurrent_trainers_one_run_directory(corpus: Corpus, tmp_path: Path) -> None:
    """Two ``train`` commands on one new run directory: exactly one trains it."""
    run = tmp_path / "run"
    argv = _train_argv(corpus, run, corpus.tiny, "--epochs", "3")
    res = run_cli_many({"a": argv, "b": argv}, timeout=600)
    codes = sorted(r.returncode for r in res.values())
    assert codes == [0, 2], {k: (r.returncode, r.stderr[-500:]) for k, r in res.items()}
    loser = next(r for r in res.values() if r.returncode == 2)
    assert len(loser.stderr.strip().splitlines()) == 1 and "Traceback" not in loser.stderr
    assert "in use by process" in loser.stderr or "existing checkpoints" in loser.stderr
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 3
    assert not (run / ".caloforge-train.lock").exists()


def test_stale_run_lock_is_taken_over(corpus: Corpus, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".caloforge-train.lock").write_text(str(_dead_pid()))
    rc, _, err = run_main(_train_argv(corpus, run, corpus.tiny, "--epochs", "1"), capsys)
    assert rc == 0, err
    assert not (run / ".caloforge-train.lock").exists()
