"""The negative-transfer verdict: does sharing help or hurt each task, across seeds?

Each seed trains the multi-task model and the single-task baselines with the same seed, so the
runs pair up by seed. A task's change on one seed is its term of Δm: the mean sign-corrected
relative change (in %, positive = better) over the task's metrics whose change is defined there.
Across seeds, a two-sided one-sample t-test of these paired changes against 0
(``scipy.stats.ttest_1samp``) at level ``alpha`` gives the verdict:

- ``helps``: p < alpha and the mean change is positive;
- ``hurts``: p < alpha and the mean change is negative;
- ``no clear difference``: p ≥ alpha;
- ``no verdict``: fewer than two seeds with a defined change (one seed cannot be tested).

Seeds where the task's change is undefined (every metric's reference 0, missing or not finite)
are left out, and counted. When every kept change is the same number, the t statistic is
infinite: p is 0 for a non-zero change and 1 for no change at all. With few seeds only large,
consistent effects reach significance (with 3 seeds, |t| must exceed 4.30; with 2, 12.71).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["helps", "hurts", "no clear difference", "no verdict"]

ALPHA = 0.05
"""The default significance level of the paired test."""

TEST = "two-sided one-sample t-test of the per-seed paired changes against 0"
"""The test, in words (for reports and files)."""


@dataclass(frozen=True)
class TaskVerdict:
    """One task's change across seeds and what the paired test concludes."""

    changes: tuple[float, ...]
    """The task's change (%) on each seed, in seed order; NaN where undefined."""
    outcome: Outcome
    mean: float
    """Mean change (%) over the seeds with a defined change; NaN when there is none."""
    std: float
    """Sample standard deviation of those changes; 0 for one, NaN for none."""
    p_value: float
    """The paired test's p-value; NaN when no test is possible."""
    alpha: float = ALPHA

    @property
    def used(self) -> int:
        """Seeds whose change is defined (the test's sample size)."""
        return sum(math.isfinite(c) for c in self.changes)

    @property
    def excluded(self) -> int:
        """Seeds left out because the change is undefined there."""
        return len(self.changes) - self.used

    @property
    def better(self) -> int:
        """Seeds on which the multi-task model did better than the baselines."""
        return sum(c > 0 for c in self.changes if math.isfinite(c))

    @property
    def worse(self) -> int:
        """Seeds on which it did worse."""
        return sum(c < 0 for c in self.changes if math.isfinite(c))

    def to_dict(self) -> dict:
        return {
            "changes": list(self.changes),
            "mean": self.mean,
            "std": self.std,
            "p_value": self.p_value,
            "verdict": self.outcome,
            "seeds_used": self.used,
            "seeds_excluded": self.excluded,
            "seeds_better": self.better,
            "seeds_worse": self.worse,
        }


def task_change(metric_changes: Mapping[str, float]) -> float:
    """A task's change on one seed: the mean of its metrics' defined relative changes (the task's
    term of Δm); NaN when none is defined."""
    defined = [c for c in metric_changes.values() if math.isfinite(c)]
    return statistics.fmean(defined) if defined else math.nan


def paired_test(changes: Sequence[float], alpha: float = ALPHA) -> TaskVerdict:
    """The verdict on one task from its per-seed paired changes (NaN = undefined, left out)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    changes = tuple(float(c) for c in changes)
    kept = [c for c in changes if math.isfinite(c)]
    if not kept:
        return TaskVerdict(changes, "no verdict", math.nan, math.nan, math.nan, alpha)
    mean = statistics.fmean(kept)
    if len(kept) < 2:
        return TaskVerdict(changes, "no verdict", mean, 0.0, math.nan, alpha)
    std = statistics.stdev(kept)
    if all(c == kept[0] for c in kept):  # no spread: t is ±inf (or 0/0 for no change at all)
        p_value = 1.0 if mean == 0 else 0.0
    else:
        from scipy.stats import ttest_1samp

        with warnings.catch_warnings():  # nearly equal values: scipy warns of precision loss
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(ttest_1samp(kept, 0.0).pvalue)
    if p_value < alpha and mean != 0:
        outcome: Outcome = "helps" if mean > 0 else "hurts"
    else:
        outcome = "no clear difference"
    return TaskVerdict(changes, outcome, mean, std, p_value, alpha)


def task_verdicts(
    per_seed: Sequence[Mapping[str, Mapping[str, float]]],
    tasks: Sequence[str],
    alpha: float = ALPHA,
) -> dict[str, TaskVerdict]:
    """Each task's verdict from every seed's ``{task: {metric: relative change %}}`` (what
    :func:`~polytask.evaluation.delta_m.relative_changes` returns); a task missing from a seed
    counts as undefined there."""
    return {
        task: paired_test([task_change(seed.get(task, {})) for seed in per_seed], alpha)
        for task in tasks
    }
