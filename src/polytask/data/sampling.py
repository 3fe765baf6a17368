"""Where training batches come from: one shared table, or several per-task tables mixed.

Both sources define an epoch the same way: ``ceil(total training rows / batch size)`` steps.
For a mixture, each step draws one source with the policy's probabilities and takes the next
batch of that source's own reshuffled stream, so small tasks can be revisited within an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Literal, Protocol

import torch

from polytask.data.dataset import Batch, MultiTaskData

Policy = Literal["proportional", "uniform", "temperature"]


class BatchSource(Protocol):
    """What the trainer iterates over: deterministic given ``(seed, epoch)``."""

    def steps_per_epoch(self) -> int: ...

    def epoch(self, seed: int, epoch: int) -> Iterator[Batch]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator whose state depends only on ``(seed, epoch)``, so resumed runs repeat it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class ShuffledBatches:
    """Every row once per epoch, in a fresh random order."""

    def __init__(self, data: MultiTaskData, batch_size: int) -> None:
        self.data = data
        self.batch_size = batch_size

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def epoch(self, seed: int, epoch: int) -> Iterator[Batch]:
        return self.data.batches(
            self.batch_size, shuffle=True, generator=epoch_generator(seed, epoch)
        )

    def describe(self) -> str:
        return f"1 epoch = {self.steps_per_epoch()} steps of {self.batch_size} rows (all rows once)"


def task_probabilities(
    sizes: Mapping[str, int], policy: Policy, temperature: float = 2.0
) -> dict[str, float]:
    """Sampling probability of each source: ∝ size, uniform, or ∝ size^(1/T)."""
    if policy == "proportional":
        raw = {k: float(v) for k, v in sizes.items()}
    elif policy == "uniform":
        raw = dict.fromkeys(sizes, 1.0)
    elif policy == "temperature":
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        raw = {k: float(v) ** (1.0 / temperature) for k, v in sizes.items()}
    else:
        raise ValueError(f"unknown sampling policy {policy!r}")
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


class TaskMixture:
    """Mixes per-task (or per-source) datasets by a sampling policy."""

    def __init__(
        self,
        sources: Mapping[str, MultiTaskData],
        batch_size: int,
        policy: Policy = "proportional",
        temperature: float = 2.0,
    ) -> None:
        self.sources = dict(sources)
        self.batch_size = batch_size
        self.probabilities = task_probabilities(
            {k: len(v) for k, v in self.sources.items()}, policy, temperature
        )

    def steps_per_epoch(self) -> int:
        return math.ceil(sum(len(d) for d in self.sources.values()) / self.batch_size)

    def epoch(self, seed: int, epoch: int) -> Iterator[Batch]:
        generator = epoch_generator(seed, epoch)
        names = list(self.sources)
        weights = torch.tensor([self.probabilities[n] for n in names])
        draws = torch.multinomial(weights, self.steps_per_epoch(), True, generator=generator)
        streams = {name: self._stream(self.sources[name], generator) for name in names}
        for draw in draws.tolist():
            yield next(streams[names[draw]])

    def _stream(self, data: MultiTaskData, generator: torch.Generator) -> Iterator[Batch]:
        while True:
            yield from data.batches(self.batch_size, shuffle=True, generator=generator)

    def describe(self) -> str:
        shares = ", ".join(f"{k} {p:.0%}" for k, p in self.probabilities.items())
        return (
            f"1 epoch = {self.steps_per_epoch()} steps of {self.batch_size} rows "
            f"(total rows / batch size); sources drawn with probabilities: {shares}"
        )
