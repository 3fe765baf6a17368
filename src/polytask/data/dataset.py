"""In-memory multi-task data: inputs, per-task targets and label masks, and batching.

Data are held as tensors and batched by slicing (no per-sample Python work), which keeps the
trainer's overhead next to that of a hand-written loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Inputs = Tensor | Mapping[str, Tensor]


def take(inputs: Inputs, index: Tensor | slice) -> Inputs:
    """Rows ``index`` of a tensor or of every tensor in a mapping."""
    if isinstance(inputs, Tensor):
        return inputs[index]
    return {key: value[index] for key, value in inputs.items()}


def _length(inputs: Inputs) -> int:
    if isinstance(inputs, Tensor):
        return inputs.shape[0]
    return next(iter(inputs.values())).shape[0]


@dataclass
class Batch:
    """One mini-batch: model inputs, and for each task its targets and label mask.

    ``sharded``: under ``torchrun``, the batch already holds this process's rows only (a
    source that reads a disjoint shard per process: streamed data); otherwise it is the
    global batch, which each process cuts (:meth:`polytask.training.Trainer.step`)."""

    inputs: Any
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]
    sharded: bool = False

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device``."""
        inputs = self.inputs
        if isinstance(inputs, Tensor):
            inputs = inputs.to(device)
        elif isinstance(inputs, Mapping):
            inputs = {k: v.to(device) for k, v in inputs.items()}
        return Batch(
            inputs,
            {k: v.to(device) for k, v in self.targets.items()},
            {k: v.to(device) for k, v in self.masks.items()},
            self.sharded,
        )


@dataclass
class MultiTaskData:
    """Rows of inputs with, per task, encoded targets and a mask of labelled entries."""

    inputs: Inputs
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]

    def __post_init__(self) -> None:
        n = _length(self.inputs)
        for name in self.targets:
            if self.targets[name].shape[0] != n or self.masks[name].shape[0] != n:
                raise ValueError(f"task '{name}': targets and masks need {n} rows")

    def __len__(self) -> int:
        return _length(self.inputs)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.targets)

    def batch(self, index: Tensor | slice) -> Batch:
        """The rows ``index`` as a :class:`Batch`."""
        return Batch(
            take(self.inputs, index),
            {k: v[index] for k, v in self.targets.items()},
            {k: v[index] for k, v in self.masks.items()},
        )

    def subset(self, index: Tensor) -> MultiTaskData:
        """A new dataset with the rows ``index``."""
        batch = self.batch(index)
        return MultiTaskData(batch.inputs, batch.targets, batch.masks)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Consecutive mini-batches (the last one may be smaller), optionally shuffled."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                yield self.batch(order[start : start + batch_size])
        else:
            for start in range(0, n, batch_size):
                yield self.batch(slice(start, start + batch_size))

    def label_counts(self) -> dict[str, int]:
        """Number of labelled rows per task (a row counts if any of its labels is present)."""
        return {
            name: int(mask.reshape(mask.shape[0], -1).any(dim=1).sum())
            for name, mask in self.masks.items()
        }

    @staticmethod
    def concat(parts: list[MultiTaskData]) -> MultiTaskData:
        """Stack datasets with the same tasks and input layout row-wise."""
        first = parts[0]
        if isinstance(first.inputs, Tensor):
            inputs: Inputs = torch.cat([p.inputs for p in parts])  # type: ignore[misc]
        else:
            inputs = {k: torch.cat([p.inputs[k] for p in parts]) for k in first.inputs}  # type: ignore[index]
        return MultiTaskData(
            inputs,
            {k: torch.cat([p.targets[k] for p in parts]) for k in first.targets},
            {k: torch.cat([p.masks[k] for p in parts]) for k in first.masks},
        )
