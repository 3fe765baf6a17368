"""A trained model on data: raw outputs per task, and metrics and mean loss per task.

These need only the model and its tasks (no optimizer, no balancer, no trainer). The
:class:`~polytask.training.Trainer` scores its validation epochs and the final test report
with them, and a loaded run (:mod:`polytask.predict`) predicts and evaluates with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask.data.dataset import MultiTaskData
from polytask.device import model_device, to_device
from polytask.models.base import MultiTaskModel
from polytask.tasks import Task

EVAL_BATCH_SIZE = 8192
"""Rows per forward pass when predicting (no gradients are kept, so batches can be large)."""


@dataclass
class Evaluation:
    """Per-task metrics and mean loss on one dataset."""

    metrics: dict[str, dict[str, float]]
    loss: dict[str, float]


@torch.no_grad()
def predict_outputs(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    data: MultiTaskData,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, Tensor]:
    """Raw outputs of every task in ``tasks`` for every row of ``data``, in row order, on the
    CPU (in float32), wherever the model runs: each batch goes to the model's device.

    Puts ``model`` in eval mode (dropout off) and leaves it there."""
    model.eval()
    device = model_device(model)
    parts: dict[str, list[Tensor]] = {t.name: [] for t in tasks}
    for batch in data.batches(batch_size):
        outputs = model(to_device(batch, device).inputs)
        for name in parts:
            parts[name].append(outputs[name].cpu())
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def evaluate(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    data: MultiTaskData,
    batch_size: int = EVAL_BATCH_SIZE,
) -> Evaluation:
    """Metrics and mean loss of every task on its labelled rows of ``data`` (a task with no
    labelled row gets a NaN loss)."""
    outputs = predict_outputs(model, tasks, data, batch_size)
    return evaluate_outputs(tasks, outputs, data.targets, data.masks)


def evaluate_outputs(
    tasks: Sequence[Task],
    outputs: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
) -> Evaluation:
    """Metrics and mean loss of every task from its raw ``outputs`` on whole data (all rows
    at once, as metrics such as AUC need), on its labelled rows (a task with no labelled row
    gets a NaN loss)."""
    metrics, losses = {}, {}
    for task in tasks:
        output, target, mask = outputs[task.name], targets[task.name], masks[task.name]
        metrics[task.name] = task.evaluate(output, target, mask)
        loss = task.loss_value(output, target, mask)
        losses[task.name] = float(loss) if loss is not None else math.nan
    return Evaluation(metrics, losses)
