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
from torch import Tensor

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


class ShuffleBuffer:
    """Random batches from a stream of rows, holding at most ``capacity`` rows (at least one
    batch): rows fill the buffer; once it is full, each batch is ``batch_size`` slots drawn
    uniformly without replacement, which the next incoming rows take over; :meth:`drain` lets
    the rest out in a random order.

    Rows further apart in the stream than about ``capacity`` rarely meet in a batch: a larger
    buffer shuffles closer to a full permutation (a stream that fits in it is fully permuted),
    at the cost of holding ``capacity`` encoded rows. ``peak`` records the most rows held."""

    def __init__(self, capacity: int, batch_size: int, generator: torch.Generator) -> None:
        self.capacity = max(capacity, batch_size)
        self.batch_size = batch_size
        self.generator = generator
        self.size = 0
        self.peak = 0
        self._rows: MultiTaskData | None = None

    def push(self, data: MultiTaskData) -> Iterator[Batch]:
        """Take in the rows of ``data``, yielding each batch that becomes due."""
        start, n = 0, len(data)
        while start < n:
            if self.size < self.capacity:
                count = min(self.capacity - self.size, n - start)
                self._write(torch.arange(self.size, self.size + count), data, start, count)
                self.size += count
                self.peak = max(self.peak, self.size)
                start += count
                continue
            slots = self._draw()
            assert self._rows is not None
            yield self._rows.batch(slots)
            count = min(self.batch_size, n - start)
            self._write(slots[:count], data, start, count)
            start += count
            if count < self.batch_size:  # the stream paused: close the gaps of the other slots
                self._compact(slots[count:])

    def drain(self) -> Iterator[Batch]:
        """The rows left, in a random order."""
        order = torch.randperm(self.size, generator=self.generator)
        rows, self.size = self._rows, 0
        for begin in range(0, len(order), self.batch_size):
            assert rows is not None
            yield rows.batch(order[begin : begin + self.batch_size])

    def _draw(self) -> Tensor:
        """``batch_size`` distinct slots, a uniform draw: distinct values of independent
        draws, then a random subset of them (a permutation of every slot when few are held)."""
        if self.size < 4 * self.batch_size:
            return torch.randperm(self.size, generator=self.generator)[: self.batch_size]
        while True:
            draws = torch.randint(self.size, (2 * self.batch_size,), generator=self.generator)
            distinct = torch.unique(draws)
            if len(distinct) >= self.batch_size:
                pick = torch.randperm(len(distinct), generator=self.generator)
                return distinct[pick[: self.batch_size]]

    def _write(self, slots: Tensor, data: MultiTaskData, start: int, count: int) -> None:
        rows = data.batch(slice(start, start + count))
        if self._rows is None:
            self._rows = _allocate(rows, self.capacity)
        for mine, theirs in zip(_tensors(self._rows), _tensors(rows), strict=True):
            mine[slots] = theirs

    def _compact(self, holes: Tensor) -> None:
        """Move the rows held past ``size - len(holes)`` into the ``holes`` below it."""
        assert self._rows is not None
        size = self.size - len(holes)
        empty = torch.zeros(self.size, dtype=torch.bool)
        empty[holes] = True
        low = holes[holes < size]
        moved = torch.arange(size, self.size)[~empty[size:]]
        for tensor in _tensors(self._rows):
            tensor[low] = tensor[moved]
        self.size = size


def _allocate(rows: Batch, capacity: int) -> MultiTaskData:
    def empty(tensor: Tensor) -> Tensor:
        return tensor.new_empty((capacity, *tensor.shape[1:]))

    inputs = rows.inputs
    inputs = (
        empty(inputs) if isinstance(inputs, Tensor) else {k: empty(v) for k, v in inputs.items()}
    )
    return MultiTaskData(
        inputs,
        {k: empty(v) for k, v in rows.targets.items()},
        {k: empty(v) for k, v in rows.masks.items()},
    )


def _tensors(data: MultiTaskData | Batch) -> list[Tensor]:
    inputs = data.inputs
    found = [inputs] if isinstance(inputs, Tensor) else [inputs[k] for k in sorted(inputs)]
    return [*found, *(data.targets[k] for k in sorted(data.targets))] + [
        data.masks[k] for k in sorted(data.masks)
    ]
