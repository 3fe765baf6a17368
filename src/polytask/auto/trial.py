"""One search trial: train a candidate config on the training split, select its epoch on
validation against the search baselines, and measure what the study keeps. Also the affinity
measurement that proposes the candidate groupings. Nothing here sees the test split: the data
it gets are sealed (:meth:`PreparedData.without_test`)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from polytask.config import Config, parse_config
from polytask.data.prepare import PreparedData
from polytask.errors import RunError
from polytask.evaluation.delta_m import Scores, metric_directions, relative_changes
from polytask.experiment import make_trainer
from polytask.relationships.affinity import run_affinity
from polytask.relationships.grouping import best_groupings
from polytask.training.trainer import EpochLog

AFFINITY_EPOCHS = 5
"""Epochs of the affinity measurement that proposes groupings (early training suffices)."""


@dataclass(frozen=True)
class TrialOutcome:
    """What a finished trial measured: validation Δm (%) at its selected epoch, the epoch,
    epochs trained, seconds, validation metrics and each task's mean relative change (%)."""

    delta_m: float
    best_epoch: int
    epochs: int
    seconds: float
    validation: Scores
    changes: dict[str, float]


def train_candidate(
    config: Config,
    data: PreparedData,
    reference: Scores,
    *,
    label: str,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrialOutcome:
    """Train ``config`` selecting on validation Δm against ``reference``; a RunError when no
    epoch could be scored (the trial failed)."""
    if data.test is not None:
        raise ValueError("a search trial must get data without the test split")
    trainer = make_trainer(
        config,
        data,
        data.tasks,
        reference=reference,
        progress=False,
        label=label,
        checkpoint_dir=None,
        on_epoch=on_epoch,
    )
    source = data.train_source(
        config.training.batch_size, config.data.sampler, config.data.temperature
    )
    started = time.perf_counter()
    history = trainer.fit(source, data.validation)
    seconds = time.perf_counter() - started
    if trainer.best_epoch is None or not math.isfinite(history[trainer.best_epoch - 1].score):
        raise RunError(f"{label}: no epoch has a defined validation Δm")
    validation = trainer.evaluate(data.validation).metrics
    changes = relative_changes(validation, reference, metric_directions(data.tasks))
    return TrialOutcome(
        delta_m=history[trainer.best_epoch - 1].score,
        best_epoch=trainer.best_epoch,
        epochs=len(history),
        seconds=seconds,
        validation=validation,
        changes={task: _mean(values.values()) for task, values in changes.items()},
    )


def measure_groupings(base: Config, data: PreparedData) -> list[list[list[str]]]:
    """Candidate groupings for ``arch: groups``: a short hard-sharing training records the
    gradient cosines of the tasks on the shared representation; the best grouping for each
    number of groups from 2 to T − 1 (:func:`best_groupings`), then all singletons."""
    names = [t.name for t in data.tasks]
    raw = base.model_dump(mode="json")
    raw.pop("auto", None)
    raw["model"] = {key: raw["model"][key] for key in ("trunk", "head", "dropout", "encoder")}
    raw["balancer"] = {"name": "equal"}
    raw["evaluation"]["affinity"] = {"method": "cosine", "mode": "features"}
    raw["training"].update(epochs=min(base.training.epochs, AFFINITY_EPOCHS), early_stopping=None)
    raw["training"].pop("lr_schedule", None)
    for task in raw["tasks"]:
        task.pop("lr_schedule", None)
    config = parse_config(raw, source="auto: affinity measurement")
    trainer = make_trainer(
        config, data, data.tasks, reference=None, progress=False, label="", checkpoint_dir=None
    )
    source = data.train_source(
        config.training.batch_size, config.data.sampler, config.data.temperature
    )
    found = run_affinity(trainer.fit(source))
    singletons = [[name] for name in names]
    if found is None:
        return [singletons]
    order, matrix = found
    middle = [g.named(order) for g in best_groupings(matrix.numpy()) if 1 < g.k < len(names)]
    return [*middle, singletons]


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan
