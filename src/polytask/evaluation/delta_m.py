"""Δm%: the relative gain of a multi-task model over its single-task baselines.

Δm = 100 · mean over tasks of mean over the task's metrics of s·(M_mtl − M_stl)/|M_stl|, with
s = +1 when higher is better and −1 when lower is better (Maninis et al. 2019; Vandenhende et al.
2021). Positive means the multi-task model is better. ``per_metric`` averages over all metrics
at once instead, the other convention in the literature (the two agree when every task has
the same number of metrics).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

from polytask.tasks import Direction, Task

Scores = Mapping[str, Mapping[str, float]]
"""``{task: {metric: value}}``."""


def metric_directions(tasks: Iterable[Task]) -> dict[str, dict[str, Direction]]:
    """``{task: {metric: direction}}`` of the main tasks: what Δm and model selection use
    (auxiliary tasks are trained, reported, but never counted)."""
    return {t.name: {m: t.direction(m) for m in t.metrics} for t in tasks if not t.auxiliary}


def relative_changes(
    scores: Scores, baseline: Scores, directions: Mapping[str, Mapping[str, Direction]]
) -> dict[str, dict[str, float]]:
    """Sign-corrected relative change (in %) of every metric that both score sets have."""
    changes: dict[str, dict[str, float]] = {}
    for task, metrics in directions.items():
        for metric, direction in metrics.items():
            new, old = scores[task][metric], baseline[task][metric]
            if old == 0 or not (math.isfinite(new) and math.isfinite(old)):
                change = math.nan
            else:
                sign = 1.0 if direction == "higher" else -1.0
                change = 100.0 * sign * (new - old) / abs(old)
            changes.setdefault(task, {})[metric] = change
    return changes


def delta_m(
    scores: Scores,
    baseline: Scores,
    directions: Mapping[str, Mapping[str, Direction]],
    average: Literal["per_task", "per_metric"] = "per_task",
) -> float:
    """Δm% of ``scores`` against ``baseline`` (NaN if any metric is undefined)."""
    changes = relative_changes(scores, baseline, directions)
    if average == "per_metric":
        values = [v for task in changes.values() for v in task.values()]
        return sum(values) / len(values)
    per_task = [sum(task.values()) / len(task) for task in changes.values()]
    return sum(per_task) / len(per_task)
