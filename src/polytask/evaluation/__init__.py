"""Evaluation: Δm against single-task baselines, and the negative-transfer verdict over seeds."""

from polytask.evaluation.delta_m import delta_m, metric_directions, relative_changes
from polytask.evaluation.verdict import TaskVerdict, paired_test, task_verdicts

__all__ = [
    "TaskVerdict",
    "delta_m",
    "metric_directions",
    "paired_test",
    "relative_changes",
    "task_verdicts",
]
