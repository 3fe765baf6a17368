"""Δm%: the relative gain of a multi-task model over its single-task baselines.

Δm = 100 · mean over tasks of mean over the task's metrics of s·(M_mtl − M_stl)/|M_stl|, with
s = +1 when higher is better and −1 when lower is better (Maninis et al. 2019; Vandenhende et al.
2021). Positive means the multi-task model is better. ``per_metric`` averages over all metrics
at once instead, the other convention in the literature (the two agree when every task has
the same number of metrics).

A relative change is undefined when the reference is 0 (e.g. an F1 of 0 from a model that
predicts only negatives) or when either value is not finite or missing (e.g. AUC on a split with a
single class). Such a metric leaves Δm, with a ``RuntimeWarning`` naming the task and metric; a
task with no metric left leaves the task average; when nothing is left, Δm is undefined (NaN,
printed "—" and written ``null``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Literal

from polytask.tasks import Direction, Task

Scores = Mapping[str, Mapping[str, float | None]]
"""``{task: {metric: value}}``; NaN or ``None`` (JSON ``null``) marks an undefined value."""


def metric_directions(tasks: Iterable[Task]) -> dict[str, dict[str, Direction]]:
    """``{task: {metric: direction}}`` of the main tasks: what Δm and model selection use
    (auxiliary tasks are trained, reported, but never counted)."""
    return {t.name: {m: t.direction(m) for m in t.metrics} for t in tasks if not t.auxiliary}


def reference_problem(reference: float | None) -> str | None:
    """Why no relative change from ``reference`` is defined (it is 0, missing or not finite),
    or None when it is usable."""
    if reference is None or not math.isfinite(reference):
        return f"reference is {reference}"
    return "reference is 0" if reference == 0 else None


def undefined_reason(value: float | None, reference: float | None) -> str | None:
    """Why the relative change from ``reference`` to ``value`` is undefined, or None if it is
    defined (both finite, reference non-zero)."""
    problem = reference_problem(reference)
    if problem is None and (value is None or not math.isfinite(value)):
        return f"value is {value}"
    return problem


def relative_change(value: float | None, reference: float | None, direction: Direction) -> float:
    """Sign-corrected relative change in %, ``100·s·(value − reference)/|reference|``; NaN when
    undefined (see :func:`undefined_reason`)."""
    if undefined_reason(value, reference) is not None:
        return math.nan
    assert value is not None and reference is not None
    sign = 1.0 if direction == "higher" else -1.0
    return 100.0 * sign * (value - reference) / abs(reference)


def relative_changes(
    scores: Scores, baseline: Scores, directions: Mapping[str, Mapping[str, Direction]]
) -> dict[str, dict[str, float]]:
    """Sign-corrected relative change (in %) of every metric in ``directions``; NaN where it is
    undefined."""
    return {
        task: {
            metric: relative_change(scores[task][metric], baseline[task][metric], direction)
            for metric, direction in metrics.items()
        }
        for task, metrics in directions.items()
    }


def delta_m(
    scores: Scores,
    baseline: Scores,
    directions: Mapping[str, Mapping[str, Direction]],
    average: Literal["per_task", "per_metric"] = "per_task",
) -> float:
    """Δm% of ``scores`` against ``baseline`` over the metrics whose relative change is defined;
    the others leave it with a ``RuntimeWarning`` naming them. NaN (with a warning) when no
    metric is left."""
    changes: dict[str, list[float]] = {}
    left_out = []
    for task, metrics in directions.items():
        for metric, direction in metrics.items():
            new, old = scores[task][metric], baseline[task][metric]
            reason = undefined_reason(new, old)
            if reason is None:
                changes.setdefault(task, []).append(relative_change(new, old, direction))
            else:
                left_out.append(f"'{task}' {metric} ({reason})")
    if left_out:
        what = "Δm: left out" if changes else "Δm is undefined: no metric is left; left out"
        warnings.warn(
            f"{what} {', '.join(left_out)}: a relative change is undefined there",
            RuntimeWarning,
            stacklevel=2,
        )
    if not changes:
        return math.nan
    if average == "per_metric":
        values = [v for task in changes.values() for v in task]
        return sum(values) / len(values)
    per_task = [sum(task) / len(task) for task in changes.values()]
    return sum(per_task) / len(per_task)
