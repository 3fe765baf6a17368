"""Task types: binary, multiclass, multilabel and regression, addressed by name in configs."""

from polytask.tasks.base import (
    TASK_TYPES,
    Direction,
    Metric,
    Task,
    register_task_type,
    task_from_dict,
)
from polytask.tasks.classification import BinaryTask, MulticlassTask
from polytask.tasks.multilabel import MultilabelTask
from polytask.tasks.regression import RegressionTask

__all__ = [
    "TASK_TYPES",
    "BinaryTask",
    "Direction",
    "Metric",
    "MulticlassTask",
    "MultilabelTask",
    "RegressionTask",
    "Task",
    "register_task_type",
    "task_from_dict",
]
