"""What runs measured: one model's result, one run's result (both also written as
``metrics.json``), and one balancer's runs across seeds (``polytask compare``, ``polytask train
--seeds``).

Where these files live is :mod:`polytask.rundir`'s business; this module only knows their
content.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polytask.evaluation.verdict import ALPHA, TaskVerdict, task_verdicts
from polytask.tasks import Task, task_from_dict
from polytask.training.checkpoint import atomic_write_json, nan_for_none


@dataclass
class ModelResult:
    """How one trained model (multi-task or a single-task baseline) did."""

    validation: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    parameters: int
    seconds: float
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:  # read back from JSON: null is an undefined metric
        self.validation, self.test = nan_for_none(self.validation), nan_for_none(self.test)


@dataclass
class RunResult:
    """Everything a run measured; also written to ``metrics.json``."""

    run_dir: Path
    tasks: list[Task]
    multitask: ModelResult
    baselines: dict[str, ModelResult]
    label_counts: dict[str, dict[str, int]]
    delta_m_test: float = math.nan
    delta_m_validation: float = math.nan
    changes_test: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "tasks": [t.to_dict() for t in self.tasks],
            "multitask": asdict(self.multitask),
            "baselines": {k: asdict(v) for k, v in self.baselines.items()},
            "label_counts": self.label_counts,
            "delta_m_test": self.delta_m_test,
            "delta_m_validation": self.delta_m_validation,
            "changes_test": self.changes_test,
        }


def save_model_result(result: ModelResult, path: Path) -> None:
    """Write ``result`` as JSON (atomically: a reader never sees half a file)."""
    atomic_write_json(path, asdict(result))


def load_model_result(path: Path) -> ModelResult:
    """Read what :func:`save_model_result` wrote; ValueError or TypeError when it is not a
    model result."""
    return ModelResult(**json.loads(Path(path).read_text()))


def save_run_result(result: RunResult, path: Path) -> None:
    """Write ``result`` as JSON (atomically)."""
    atomic_write_json(path, result.to_dict())


def load_run_result(path: Path) -> RunResult:
    """Read what :func:`save_run_result` wrote; ValueError, KeyError or TypeError when it is not
    a run result."""
    raw = json.loads(Path(path).read_text())
    return RunResult(
        run_dir=Path(raw["run_dir"]),
        tasks=[task_from_dict(t) for t in raw["tasks"]],
        multitask=ModelResult(**raw["multitask"]),
        baselines={k: ModelResult(**v) for k, v in raw["baselines"].items()},
        label_counts=raw["label_counts"],
        delta_m_test=_number(raw["delta_m_test"]),
        delta_m_validation=_number(raw["delta_m_validation"]),
        changes_test=nan_for_none(raw["changes_test"]),
    )


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass
class BalancerSummary:
    """One balancer's results across seeds."""

    name: str
    runs: list[RunResult] = field(default_factory=list)

    def metric(self, task: str, metric: str) -> list[float]:
        return [run.multitask.test[task][metric] for run in self.runs]

    def delta_m(self) -> list[float]:
        return [run.delta_m_test for run in self.runs]

    def seconds(self) -> list[float]:
        return [run.multitask.seconds for run in self.runs]

    def verdicts(self, alpha: float = ALPHA) -> dict[str, TaskVerdict]:
        """Each main task's change across the seeds and the paired test's verdict
        (:mod:`polytask.evaluation.verdict`); runs without baselines count as undefined."""
        if not self.runs:
            return {}
        tasks = [t.name for t in self.runs[0].tasks if not t.auxiliary]
        return task_verdicts([run.changes_test for run in self.runs], tasks, alpha)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (0 for one value, NaN for none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0
