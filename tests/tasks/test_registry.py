"""A new task type is one registered class: the config then validates its options by name and
the data step builds it; typos in its options are errors naming the key."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
from pydantic import Field

from polytask.config import parse_config
from polytask.data.prepare import build_task
from polytask.errors import ConfigError
from polytask.options import TASK_OPTIONS, Options
from polytask.tasks import TASK_TYPES, BinaryTask, RegressionTask, register_task_type


class ClippedOptions(Options):
    limit: float = Field(3.0, gt=0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClippedRegression(RegressionTask):
    """Regression whose standardised targets are clipped to ±limit (a toy task type)."""

    limit: float = 3.0
    kind: ClassVar[str] = "clipped_regression"
    config_options: ClassVar[type[Options]] = ClippedOptions


@pytest.fixture
def clipped(monkeypatch):
    monkeypatch.setitem(TASK_TYPES, "clipped_regression", ClippedRegression)
    register_task_type(ClippedRegression)
    yield
    TASK_OPTIONS.unregister("clipped_regression")


def config(**task):
    return {"data": {"source": "t.csv"}, "tasks": [{"name": "y", **task}]}


def test_a_registered_task_type_is_configured_by_name(clipped):
    spec = parse_config(config(type="clipped_regression", limit=2.5)).tasks[0]
    assert spec.options == {"limit": 2.5}
    task = build_task(spec)
    assert isinstance(task, ClippedRegression) and task.limit == 2.5


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"type": "clipped_regression", "limt": 2}, "unknown key 'tasks[0] (y).limt'"),
        ({"type": "clipped_regression", "limit": 0}, "tasks[0] (y).limit: Input should be"),
        ({"type": "regression", "limit": 2}, "'limit' is an option of task type 'clipped"),
        ({"type": "clipped_regresion"}, "did you mean 'clipped_regression'"),
    ],
)
def test_its_options_are_checked(clipped, task, message):
    with pytest.raises(ConfigError) as info:
        parse_config(config(**task))
    assert message in str(info.value)


def test_binary_declares_positive_and_other_types_do_not():
    assert "positive" in BinaryTask.config_options.model_fields
    assert not RegressionTask.config_options.model_fields
    assert set(TASK_OPTIONS.names()) >= {"binary", "multiclass", "multilabel", "regression"}
