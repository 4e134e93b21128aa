"""Property-based reliability (issue 14): recipes and arrays the corpus does not contain.

Whatever a recipe holds, building a model and its training options either works or raises one
:class:`~caloforge.errors.ConfigError` line naming the recipe file, the key, what was expected
and what was found; whatever an array holds, validation either accepts it (and then it is
finite and non-negative) or raises one :class:`~caloforge.errors.DataError` line naming the
file, the field and the offending row.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from caloforge.config import train_config
from caloforge.data import validate
from caloforge.errors import CaloforgeError, ConfigError, DataError
from caloforge.geometry import Geometry
from caloforge.models import model_class

SOURCE = "configs/fuzz.yaml"
BASE = {"_source": SOURCE, "model": "caloinn", "dataset": "1-photons",
        "flow": {"transforms": 1, "bins": 4, "hidden": [8]},
        "preprocessing": {"noise_mev": 1.0e-3},
        "training": {"epochs": 1, "batch_size": 16, "device": "cpu"}}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)
values = st.one_of(
    scalars, st.lists(st.one_of(st.integers(-10**6, 10**6), st.floats(), st.booleans(),
                                st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
KEYS = {
    "flow": ["transforms", "bins", "hidden", "bound", "act", "residual", "actnorm", "permute",
             "dropout", "embedding", "seed", "unknown"],
    "preprocessing": ["alpha", "noise_mev", "layer_eps", "u0_max", "threshold_mev",
                      "noise_seed", "other"],
    "training": ["epochs", "batch_size", "lr", "optimizer", "weight_decay", "scheduler",
                 "max_lr", "cycle_steps", "grad_clip", "patience", "dtype", "device", "seed",
                 "progress", "monitor", "monitor_samples", "bogus"],
}
_GEO = Geometry.preset("1-photons")


def _small(section: str, key: str, value: object) -> bool:
    """Values that are valid but would build a model too large for a unit test."""
    if section == "flow" and key in ("transforms", "bins", "embedding"):
        return isinstance(value, int) and value > 16
    if section == "flow" and key == "hidden" and isinstance(value, list):
        return any(isinstance(h, int) and h > 64 for h in value) or len(value) > 3
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(sorted(KEYS)), data=st.data(), value=values)
def test_any_recipe_value_builds_or_fails_in_one_line(section: str, data: st.DataObject,
                                                      value: object) -> None:
    key = data.draw(st.sampled_from(KEYS[section]))
    if _small(section, key, value):
        return
    config = copy.deepcopy(BASE)
    config[section][key] = value
    try:
        model_class("caloinn")(_GEO, config)
        cfg = train_config(config, progress=False)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert msg.startswith(f"{SOURCE}[{section}"), msg
        assert "expected" in msg and "found" in msg, msg
        return
    # accepted: then the value is a sensible one of its kind
    if section == "training" and key in ("epochs", "batch_size"):
        assert isinstance(getattr(cfg, key), int) and getattr(cfg, key) >= 1
    if section == "training" and key == "lr":
        assert math.isfinite(cfg.lr) and cfg.lr > 0
    if section == "flow" and key == "hidden":
        assert isinstance(value, list) and value and all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in value)
    assert key not in ("unknown", "other", "bogus")


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(["energy_flow", "latent_flow", "intrinsic_dim"]),
       key=st.sampled_from(["type", "transforms", "bins", "hidden", "residual", "bound", "n",
                            "k", "typo"]),
       value=values)
def test_caloman_nested_sections(section: str, key: str, value: object) -> None:
    if key in ("transforms", "bins") and isinstance(value, int) and value > 8:
        return
    if key == "hidden" and isinstance(value, list) and any(
            isinstance(h, int) and h > 64 for h in value):
        return
    config = {"_source": SOURCE, "model": "caloman", "hidden": [16], "latent_dim": 4,
              "energy_flow": {"transforms": 1, "hidden": [8]},
              "latent_flow": {"transforms": 1, "hidden": [8]}}
    config.setdefault(section, {})[key] = value
    try:
        model_class("caloman")(_GEO, config)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(f"{SOURCE}[{section}"), msg
        return
    assert key != "typo"


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=200, deadline=None)
@given(showers=arrays(np.float32, st.tuples(st.integers(0, 6), st.integers(1, 5)),
                      elements=finite_or_not),
       e_scale=st.floats(-10, 1e7, allow_nan=False), nan_e=st.booleans())
def test_validate_accepts_only_valid_arrays(showers: np.ndarray, e_scale: float,
                                            nan_e: bool) -> None:
    e_inc = np.full(len(showers), e_scale)
    if nan_e and len(e_inc):
        e_inc[-1] = np.nan
    try:
        out = validate(e_inc, showers, "f.h5", offset=10)
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert msg.startswith(("f.h5[showers]", "f.h5[incident_energies]")), msg
        assert "expected" in msg and "found" in msg
        row = int(msg.split(" at row ")[1].split(",")[0])
        assert 10 <= row < 10 + len(showers)
        return
    assert np.isfinite(out).all() and (out >= 0).all()
    assert (np.isfinite(e_inc) & (e_inc > 0)).all() or len(e_inc) == 0


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(1, 40), bad=st.lists(st.integers(0, 39), max_size=10),
       kind=st.sampled_from(["nan", "inf", "neg"]))
def test_redraw_repairs_any_pattern_of_bad_rows(rows: int, bad: list[int], kind: str) -> None:
    """Rows with NaN/inf/negative voxels are replaced by fresh valid draws, others kept."""
    import torch

    from caloforge.generation import redraw_invalid

    class Fresh(torch.nn.Module):
        name = "fresh"

        def sample(self, e: torch.Tensor) -> torch.Tensor:
            return torch.ones(len(e), 3, dtype=torch.float64) * 7

    s = np.ones((rows, 3), dtype=np.float32)
    idx = sorted({b for b in bad if b < rows})
    s[idx, 1] = {"nan": np.nan, "inf": np.inf, "neg": -1.0}[kind]
    out, n = redraw_invalid(Fresh(), np.full(rows, 100.0), s.copy())
    assert n == len(idx)
    assert (out[idx] == 7).all()
    keep = np.setdiff1d(np.arange(rows), idx)
    assert (out[keep] == 1).all()


def test_errors_are_caloforge_errors() -> None:
    assert issubclass(ConfigError, CaloforgeError) and issubclass(DataError, CaloforgeError)
    with pytest.raises(ConfigError):
        train_config({"_source": SOURCE, "training": {"epochs": float("nan")}})
