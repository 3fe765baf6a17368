"""What is tracked, by name: the scalars and images of one epoch, the final values of a run,
and the hyperparameters (the flattened config). The same names go to every tracker.

Per epoch (step = the epoch), each value exactly as in ``metrics.json``'s ``history``:

- ``loss/train/<task>``, ``loss/validation/<task>``: the epoch's mean training loss and the
  validation loss (``train_loss``, ``val_loss``);
- ``validation/<task>/<metric>``: the validation metrics (``val_metrics``);
- ``weight/<task>``: the balancer's mean weight over the epoch's steps (``weights``);
- ``lr/<group>``: each parameter group's learning rate (``lr``; a group per task, ``shared``,
  ``balancer``);
- ``selection_score``: the epoch's model-selection score (``score``);
- ``delta_m/validation``: the epoch's validation Δm% against the single-task baselines
  (:func:`polytask.evaluation.delta_m.delta_m`, as ``metrics.json``'s ``delta_m_validation``
  is computed), where baselines were trained;
- the image ``affinity``: the epoch's task-affinity heatmap, where one is measured
  (``evaluation.affinity``).

Final (``metrics.json``'s top level): ``final/validation/<task>/<metric>`` and
``final/test/<task>/<metric>`` (the selected model's), ``final/delta_m/validation`` and
``final/delta_m/test`` (with baselines) and ``final/best_epoch``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from polytask.config import Config
from polytask.evaluation.delta_m import Scores, delta_m
from polytask.relationships.affinity import OBSERVATION
from polytask.results import RunResult
from polytask.tasks import Direction
from polytask.tracking.base import Param
from polytask.training.trainer import EpochLog

AFFINITY_IMAGE = "affinity"


def epoch_scalars(
    log: EpochLog,
    reference: Scores | None,
    directions: Mapping[str, Mapping[str, Direction]],
    average: Literal["per_task", "per_metric"] = "per_task",
) -> dict[str, float]:
    """The scalars of one epoch (module docstring); ``reference``: the baselines' validation
    metrics (``None``: no baselines, no ``delta_m/validation``)."""
    scalars: dict[str, float] = {}
    scalars |= {f"loss/train/{task}": value for task, value in log.train_loss.items()}
    scalars |= {f"loss/validation/{task}": value for task, value in log.val_loss.items()}
    scalars |= {
        f"validation/{task}/{metric}": value
        for task, metrics in log.val_metrics.items()
        for metric, value in metrics.items()
    }
    scalars |= {f"weight/{task}": value for task, value in log.weights.items()}
    scalars |= {f"lr/{group}": value for group, value in log.lr.items()}
    if log.val_metrics:
        scalars["selection_score"] = log.score
        if reference:
            with warnings.catch_warnings():  # the trainer has warned about these already
                warnings.simplefilter("ignore", RuntimeWarning)
                scalars["delta_m/validation"] = delta_m(
                    log.val_metrics, reference, directions, average
                )
    return {tag: float(value) for tag, value in scalars.items()}


def final_scalars(result: RunResult) -> dict[str, float]:
    """The run's final values (module docstring)."""
    scalars: dict[str, float] = {}
    for split in ("validation", "test"):
        scores: Scores = getattr(result.multitask, split)
        scalars |= {
            f"final/{split}/{task}/{metric}": value
            for task, metrics in scores.items()
            for metric, value in metrics.items()
        }
    if result.baselines:
        scalars["final/delta_m/validation"] = result.delta_m_validation
        scalars["final/delta_m/test"] = result.delta_m_test
    if result.multitask.best_epoch is not None:
        scalars["final/best_epoch"] = result.multitask.best_epoch
    return {tag: float(value) for tag, value in scalars.items()}


def epoch_images(log: EpochLog) -> dict[str, np.ndarray]:
    """The images of one epoch: the affinity heatmap where the epoch measured one."""
    record = log.observations.get(OBSERVATION)
    if not record:
        return {}
    matrix = np.array(
        [[math.nan if v is None else v for v in row] for row in record["matrix"]], dtype=float
    )
    if not np.isfinite(matrix).any():
        return {}  # no step of the epoch measured it
    from polytask.reporting.plots import affinity_figure

    names = list(record["tasks"])
    figure = affinity_figure(names, matrix, range(len(names)), record["method"])
    return {AFFINITY_IMAGE: figure_image(figure)}


def figure_image(figure: Any) -> np.ndarray:
    """A matplotlib figure as an RGB array (height × width × 3, uint8); closes the figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return image


def flat_params(config: Config) -> dict[str, Param]:
    """The config as ``section.key`` → value: numbers, booleans and strings as they are; a list
    of sections by index (``tasks.0.name``); any other list, and ``null``, as JSON text."""
    flat: dict[str, Param] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}", item)
        elif isinstance(value, bool | int | float | str):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    walk("", config.model_dump(mode="json"))
    return flat
