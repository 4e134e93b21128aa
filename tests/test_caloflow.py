"""CaloFlow teacher (caloflow) and student (caloflow-student) on tiny models and data."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_compiled_sampler_matches_eager

from caloforge.config import load_config, train_config
from caloforge.data import ShowerSet
from caloforge.errors import ConfigError, GeometryError
from caloforge.geometry import Geometry, Layer
from caloforge.models import model_class
from caloforge.models.base import load_model
from caloforge.models.caloflow import (
    DISTILLATION_DEFAULTS,
    FLOW1_DEFAULTS,
    FLOW2_DEFAULTS,
    PREPROCESSING_DEFAULTS,
    SAMPLING_DEFAULTS,
    STUDENT_FLOW2_DEFAULTS,
    CaloFlow,
    CaloFlowStudent,
    _section,
)

torch.set_num_threads(2)
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "caloflow"


def _toy(geometry: Geometry, n: int, seed: int = 0) -> ShowerSet:
    """Sparse random showers: ~30% of voxels hit, deposited energy ~ 0.5 E_inc."""
    rng = np.random.default_rng(seed)
    e = 10 ** rng.uniform(3, 5, n)
    hits = rng.random((n, geometry.n_voxels)) < 0.3
    hits[:, 0] = True
    sh = rng.exponential(1.0, (n, geometry.n_voxels)) * hits
    sh = sh / sh.sum(1, keepdims=True) * e[:, None] * rng.uniform(0.3, 0.7, (n, 1))
    return ShowerSet(e, sh, geometry)


def _teacher_cfg(dataset: str = "1-photons", epochs: int = 1) -> dict:
    stage = {"epochs": epochs, "batch_size": 100, "device": "cpu", "progress": False}
    return {"model": "caloflow", "dataset": dataset,
            "flow1": {"transforms": 2, "hidden": [16, 16], "bins": 4},
            "flow2": {"transforms": 2, "hidden": [24], "bins": 4, "dropout": 0.05},
            "training": {"flow1": {**stage, "lr": 1e-3}, "flow2": {**stage, "lr": 1e-3}}}


def _student_cfg(epochs: int = 1, **distillation) -> dict:
    return {"model": "caloflow-student", "dataset": "1-photons", "flow2": {"hidden": [32]},
            "distillation": {"kl_samples": 100, **distillation},
            "training": {"student": {"epochs": epochs, "batch_size": 100, "lr": 2e-3,
                                     "device": "cpu", "progress": False}}}


@pytest.fixture(scope="module")
def photons() -> Geometry:
    """A toy 3-layer cartesian geometry (8 + 9 + 3 voxels) that keeps the tests fast; the
    real DS1 / CaloGAN geometries are covered by the smoke tests at the end."""
    layers = (Layer(id=0, n_phi=2, n_eta=4, cell_eta=5.0, cell_phi=40.0),
              Layer(id=1, n_phi=3, n_eta=3, cell_eta=40.0, cell_phi=40.0),
              Layer(id=2, n_phi=1, n_eta=3, cell_eta=80.0, cell_phi=40.0))
    return Geometry(name="toy", particle="photon", layers=layers)


@pytest.fixture(scope="module")
def data(photons: Geometry) -> tuple[ShowerSet, ShowerSet]:
    return _toy(photons, 400, seed=0), _toy(photons, 100, seed=1)


def _layer_cut(geometry: Geometry) -> torch.Tensor:
    """The most energy a layer can lose to the 0.01 MeV threshold (MeV)."""
    return torch.tensor([layer.n_voxels for layer in geometry.layers]) * 0.01


@pytest.fixture(scope="module")
def teacher(photons, data, tmp_path_factory) -> CaloFlow:
    torch.manual_seed(0)
    model = CaloFlow(photons, _teacher_cfg())
    run = tmp_path_factory.mktemp("teacher")
    hist = model.fit(*data, run, progress=False)
    assert len(hist["flow1_train_loss"]) == 1 and len(hist["flow2_train_loss"]) == 1
    assert all(np.isfinite(v).all() for v in hist.values())
    assert (run / "flow1_final.pt").exists() and (run / "flow2_final.pt").exists()
    model.run_dir = run  # for the resume test
    return model


def test_registry() -> None:
    assert model_class("caloflow") is CaloFlow
    assert model_class("caloflow-student") is CaloFlowStudent


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_configs(path: Path) -> None:
    cfg = load_config(path)
    Geometry.preset(cfg["dataset"])
    assert model_class(cfg["model"]).name == cfg["model"]
    if cfg["model"] == "caloflow":
        _section(cfg, "preprocessing", PREPROCESSING_DEFAULTS)
        f1 = _section(cfg, "flow1", FLOW1_DEFAULTS)
        f2 = _section(cfg, "flow2", FLOW2_DEFAULTS)
        assert f1["bound"] == f2["bound"] == 14.0 and f2["transforms"] == 8
        for stage in ("flow1", "flow2"):
            train_config(cfg, stage)
    else:
        assert _section(cfg, "distillation", DISTILLATION_DEFAULTS)["beta"] == 0.5
        _section(cfg, "flow2", STUDENT_FLOW2_DEFAULTS)
        assert train_config(cfg, "student").batch_size == 175
    _section(cfg, "sampling", SAMPLING_DEFAULTS)


def test_config_errors(photons) -> None:
    bad = _teacher_cfg()
    bad["flow2"]["widht"] = 3
    with pytest.raises(ConfigError, match="widht"):
        CaloFlow(photons, bad)
    bad = _teacher_cfg()
    bad["flow1"]["hidden"] = [0]
    with pytest.raises(ConfigError, match="hidden"):
        CaloFlow(photons, bad)
    with pytest.raises(ConfigError, match="dropout"):
        CaloFlow(photons, {"flow2": {"dropout": 1.5}})


def test_teacher_samples(teacher, photons) -> None:
    e_inc = torch.as_tensor(10 ** np.random.default_rng(3).uniform(3, 5, 64))
    torch.manual_seed(5)
    showers, e_layer = teacher.generate(e_inc)
    assert showers.shape == (64, photons.n_voxels) and e_layer.shape == (64, photons.n_layers)
    assert torch.isfinite(showers).all() and (showers >= 0).all()
    nonzero = showers[showers > 0]
    assert nonzero.numel() > 0 and nonzero.min() >= teacher.prep["threshold_mev"]
    # layer sums equal the flow-I energies up to the thresholded voxels
    sums = torch.as_tensor(photons.layer_energies(showers.numpy()))
    cut = _layer_cut(photons)
    assert ((e_layer - sums) >= -1e-3 * e_layer - 1e-3).all()
    assert ((e_layer - sums) <= cut + 1e-3 * e_layer).all()
    lp = teacher.log_prob(showers[:8], e_inc[:8])
    assert lp.shape == (8,) and torch.isfinite(lp).all()


def test_teacher_save_load_and_resume(teacher, photons, data, tmp_path) -> None:
    teacher.save(tmp_path / "teacher.pt")
    other = load_model(tmp_path / "teacher.pt")
    assert isinstance(other, CaloFlow)
    e_inc = torch.full((20,), 5e4)
    torch.manual_seed(1)
    a = teacher.sample(e_inc)
    torch.manual_seed(1)
    b = other.sample(e_inc)
    assert torch.equal(a, b)
    # resume: finished stages are skipped and the weights come from the final files
    again = CaloFlow(photons, _teacher_cfg())
    again.fit(*data, teacher.run_dir, resume=True, progress=False)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_geometry_mismatch(teacher) -> None:
    pions = _toy(Geometry.preset("calogan"), 10)
    with pytest.raises(GeometryError):
        teacher.fit(pions, None, progress=False)


def test_student_requires_teacher(photons, data) -> None:
    student = CaloFlowStudent(photons, _student_cfg())
    with pytest.raises(ConfigError, match="teacher"):
        student.fit(*data, progress=False)
    with pytest.raises(ConfigError, match="teacher"):
        student.fit(*data, progress=False, teacher=object())


def test_student_fit_sample_roundtrip(teacher, photons, data, tmp_path) -> None:
    torch.manual_seed(0)
    student = CaloFlowStudent(photons, _student_cfg(epochs=1))
    hist = student.fit(*data, tmp_path / "run", progress=False, teacher=teacher)
    assert len(hist["student_train_loss"]) == 1 and np.isfinite(hist["student_score"]).all()
    # the student owns the teacher's flow I and permutations
    for k, v in teacher.flow1.state_dict().items():
        assert torch.equal(v, student.flow1.state_dict()[k])
    for a, b in zip(teacher.flow2.permutations, student.flow2.permutations, strict=True):
        assert torch.equal(a, b)
    e_inc = torch.as_tensor(10 ** np.random.default_rng(4).uniform(3, 5, 50))
    torch.manual_seed(2)
    showers, e_layer = student.generate(e_inc)
    assert showers.shape == (50, photons.n_voxels)
    assert torch.isfinite(showers).all() and (showers >= 0).all()
    sums = torch.as_tensor(photons.layer_energies(showers.numpy()))
    assert ((e_layer - sums) <= _layer_cut(photons) + 1e-3 * e_layer).all()
    student.save(tmp_path / "student.pt")
    other = load_model(tmp_path / "student.pt")
    assert isinstance(other, CaloFlowStudent)
    torch.manual_seed(3)
    a = student.sample(e_inc)
    torch.manual_seed(3)
    b = other.sample(e_inc)
    assert torch.equal(a, b)


@pytest.mark.parametrize("guided", [False, True])
def test_distillation_reduces_loss(teacher, photons, data, guided) -> None:
    torch.manual_seed(0)
    student = CaloFlowStudent(photons, _student_cfg(epochs=3, fully_guided=guided))
    student.adopt_teacher(teacher)
    prep = student.prepare(data[0])
    x, c = prep["x2"][:200].float(), prep["c2"][:200].float()
    t_flow = teacher.flow2.eval()

    def loss() -> float:
        torch.manual_seed(11)
        with torch.no_grad():
            return float(student.distillation_loss(student.flow2, t_flow, x, c, c)["loss"])

    before = loss()
    hist = student.fit(*data, None, progress=False, teacher=teacher)
    after = loss()
    assert after < 0.7 * before, (before, after, hist["student_train_loss"])
    if guided:  # the guided loss contains the plain one
        plain = copy.deepcopy(student)
        plain.distill_cfg["fully_guided"] = False
        torch.manual_seed(11)
        with torch.no_grad():
            p = float(plain.distillation_loss(plain.flow2, t_flow, x, c, c)["loss"])
        assert p < after


@pytest.mark.parametrize("dataset", ["1-photons", "calogan"])
def test_real_geometries(dataset: str) -> None:
    """Smoke test on a real geometry (368 / 504 voxels): teacher (and student), 1 epoch."""
    geo = Geometry.preset(dataset)
    data = _toy(geo, 100)
    cfg = _teacher_cfg(dataset)
    cfg["flow1"].update(transforms=1)
    cfg["flow2"].update(transforms=1, hidden=[8])
    if dataset == "calogan":
        cfg["preprocessing"] = {"u_scale": 1.0}
    teacher = CaloFlow(geo, cfg)
    teacher.fit(data, None, progress=False)
    out = teacher.sample(torch.full((3,), 2e4))
    assert out.shape == (3, geo.n_voxels) and torch.isfinite(out).all() and (out >= 0).all()
    if dataset == "calogan":
        return
    student = CaloFlowStudent(geo, {**_student_cfg(), "dataset": dataset})
    student.fit(data, None, progress=False, teacher=teacher)
    out = student.sample(torch.full((50,), 2e4))
    assert out.shape == (50, geo.n_voxels) and torch.isfinite(out).all() and (out >= 0).all()


@pytest.mark.slow
def test_short_training_beats_untrained() -> None:
    """A few minutes of teacher training on simulator photons: the low-level classifier
    separates generated from reference showers clearly worse than for an untrained model."""
    from caloforge.evaluation import evaluate
    from caloforge.simulate import simulate

    train, val, test = (simulate("1-photons", n, seed=s)
                        for n, s in ((4000, 1), (500, 2), (1000, 3)))
    stage = {"batch_size": 200, "device": "cpu", "progress": False, "scheduler": "onecycle",
             "lr": 1e-4, "max_lr": 1e-3}
    cfg = {"model": "caloflow", "dataset": "1-photons",
           "flow2": {"transforms": 4, "hidden": [96]},
           "training": {"flow1": {**stage, "epochs": 6}, "flow2": {**stage, "epochs": 3}}}
    torch.manual_seed(0)
    untrained = CaloFlow(train.geometry, cfg)
    model = CaloFlow(train.geometry, cfg)
    model.fit(train, val, progress=False)
    e_inc = torch.as_tensor(test.e_inc)
    aucs = {}
    for name, m in (("untrained", untrained), ("trained", model)):
        torch.manual_seed(1)
        gen = ShowerSet(test.e_inc, m.sample(e_inc).double().numpy(), test.geometry)
        res = evaluate(gen, test, modes=("cls-low",), epochs=5, width=128, progress=False,
                       device="cpu")
        aucs[name] = res["auc_low"]
    assert aucs["trained"] < aucs["untrained"] - 0.02, aucs


def test_compiled_sampler_matches_eager(teacher, photons) -> None:
    """``compiled_sampler`` (torch.compile of the student's one-pass flow II; the teacher stays
    eager) gives the eager samples for the same seed, inside inference mode as generate uses."""
    student = CaloFlowStudent(photons, _student_cfg())
    student.adopt_teacher(teacher)
    e_inc = torch.full((64,), 5e4, dtype=torch.float64)
    assert_compiled_sampler_matches_eager([student, teacher], e_inc, rtol=1e-4, atol=1e-3)
    # on a CPU the student's splines are compiled, its MADEs stay eager; the teacher untouched
    assert all(b.compiled_spline for b in student.flow2.blocks)
    assert not any(b.compiled_spline for b in teacher.flow2.blocks)
