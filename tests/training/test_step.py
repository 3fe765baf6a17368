"""The shared pieces of a training step (polytask.training.step), in one process; their
data-parallel behaviour is tested end to end in test_distributed.py and test_lightning.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.data.dataset import Batch
from polytask.errors import RunError
from polytask.models import HardSharing
from polytask.tasks import BinaryTask, RegressionTask
from polytask.training.step import (
    finish_gradients,
    global_losses,
    labelled_counts,
    masked_losses,
    shard,
)

TASKS = [
    RegressionTask(name="r", mean=(0.0,), std=(1.0,), weight=2.0),
    BinaryTask(name="b", classes=("0", "1")),
]


def batch() -> Batch:
    g = torch.Generator().manual_seed(0)
    targets = {"r": torch.randn(5, 1, generator=g), "b": (torch.rand(5, generator=g) > 0.5).float()}
    masks = {
        "r": torch.tensor([[True], [False], [True], [True], [False]]),
        "b": torch.zeros(5, dtype=torch.bool),
    }
    return Batch(torch.randn(5, 3, generator=g), targets, masks)


def test_losses_are_masked_means_times_the_task_weight_in_float32():
    data = batch()
    outputs = {"r": torch.randn(5, 1).half(), "b": torch.randn(5)}
    labelled = labelled_counts(data, ["r", "b"])
    assert labelled == {"r": 3, "b": 0}
    losses = masked_losses(outputs, data, TASKS, labelled)
    assert list(losses) == ["r"]  # no label of 'b' in the batch: no loss
    rows = data.masks["r"].flatten()
    expected = 2.0 * ((outputs["r"].float() - data.targets["r"])[rows] ** 2).mean()
    assert losses["r"].dtype == torch.float32
    torch.testing.assert_close(losses["r"], expected, rtol=1e-3, atol=1e-4)
    assert global_losses(losses) == losses  # one process: unchanged


def test_a_shard_is_every_size_th_row_and_needs_a_row_per_process():
    data = batch()
    part = shard(data, 1, 2)
    assert torch.equal(part.inputs, data.inputs[1::2])
    assert torch.equal(part.masks["r"], data.masks["r"][1::2])
    with pytest.raises(RunError, match="5 row"):
        shard(data, 0, 6)


def test_finish_gradients_adds_the_regularisation_penalty_times_the_scale():
    model = HardSharing(nn.Linear(3, 4), {t.name: nn.Linear(4, 1) for t in TASKS})
    weight = model.trunk.weight
    model.regularization = lambda: (weight**2).sum()  # type: ignore[method-assign]
    finish_gradients(model, torch.tensor(4.0))
    torch.testing.assert_close(weight.grad, 4.0 * 2 * weight.detach())
