"""iCaloFlow ``flow3.skip``: the MADE skip of flow-3 reads the whole context or, for the
dataset-3 recipes, only the scalar conditions (energies and the layer one-hot)."""

from __future__ import annotations

import pytest

from caloforge.errors import ConfigError
from caloforge.geometry import Geometry
from caloforge.models.icaloflow import ICaloFlow, ICaloFlowStudent

DS2 = Geometry.preset("2")


def _cfg(skip: str) -> dict:
    flow = {"transforms": 2, "hidden": [16], "bins": 4}
    return {"model": "icaloflow", "dataset": "2", "flow1": flow, "flow2": flow,
            "flow3": {**flow, "layers_per_shower": 2, "skip": skip}}


def test_skip_conditions_reads_only_the_scalar_context_and_the_student_inherits_it() -> None:
    teacher = ICaloFlow(DS2, _cfg("conditions"))
    made = teacher.flow3.blocks[0].made
    assert made.skip.weight.shape == (144 * (3 * 4 - 1), 3 + 44)
    assert made.linears[0].weight.shape[1] == 144 + 3 + 44 + 144  # the whole context, hidden
    full = ICaloFlow(DS2, _cfg("all")).flow3.blocks[0].made
    assert full.skip.weight.shape == (144 * 11, 3 + 44 + 144)
    student = ICaloFlowStudent(DS2, {"model": "icaloflow-student", "dataset": "2",
                                     "flow2": {"hidden": [8]}, "flow3": {"hidden": [8]}})
    student.adopt_teacher(teacher)
    assert student.flow3.blocks[0].made.skip.weight.shape == made.skip.weight.shape


def test_bad_skip_value_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"flow3\.skip.*conditions.*'voxels'"):
        ICaloFlow(DS2, _cfg("voxels"))


def test_checkpoint_key_turns_on_block_recomputation() -> None:
    cfg = _cfg("all")
    assert not ICaloFlow(DS2, cfg).flow3.checkpoint_blocks
    cfg["flow2"] = {**cfg["flow2"], "checkpoint": True}
    cfg["flow3"]["checkpoint"] = True
    model = ICaloFlow(DS2, cfg)
    assert model.flow2.checkpoint_blocks and model.flow3.checkpoint_blocks
    cfg["flow3"]["checkpoint"] = "yes"
    with pytest.raises(ConfigError, match=r"flow3\.checkpoint.*true or false"):
        ICaloFlow(DS2, cfg)


def test_student_checkpoint_key_survives_adopting_the_teacher() -> None:
    """The student's own ``flowN.checkpoint`` (distillation memory), not the teacher's."""
    teacher = ICaloFlow(DS2, _cfg("conditions"))
    student = ICaloFlowStudent(DS2, {"model": "icaloflow-student", "dataset": "2",
                                     "flow2": {"hidden": [8]},
                                     "flow3": {"hidden": [8], "checkpoint": True}})
    student.adopt_teacher(teacher)
    assert student.flow3.checkpoint_blocks and not student.flow2.checkpoint_blocks
    with pytest.raises(ConfigError, match=r"flow3\.checkpoint.*true or false"):
        ICaloFlowStudent(DS2, {"model": "icaloflow-student", "dataset": "2",
                               "flow3": {"checkpoint": "yes"}})
