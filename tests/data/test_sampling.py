import pytest
import torch

from polytask.data.dataset import MultiTaskData
from polytask.data.sampling import ShuffledBatches, TaskMixture, task_probabilities


def dataset(n: int, task: str, tasks=("a", "b")) -> MultiTaskData:
    targets = {t: torch.zeros(n) for t in tasks}
    masks = {t: torch.full((n,), t == task) for t in tasks}
    return MultiTaskData(torch.arange(n, dtype=torch.float32)[:, None], targets, masks)


def test_policies():
    sizes = {"a": 900, "b": 100}
    assert task_probabilities(sizes, "proportional") == pytest.approx({"a": 0.9, "b": 0.1})
    assert task_probabilities(sizes, "uniform") == pytest.approx({"a": 0.5, "b": 0.5})
    assert task_probabilities(sizes, "temperature", 2.0) == pytest.approx({"a": 0.75, "b": 0.25})


def test_mixture_epoch_length_frequencies_and_determinism():
    mixture = TaskMixture({"a": dataset(900, "a"), "b": dataset(100, "b")}, 10, "uniform")
    assert mixture.steps_per_epoch() == 100
    batches = list(mixture.epoch(seed=0, epoch=1))
    from_b = sum(bool(batch.masks["b"].any()) for batch in batches)
    assert 30 <= from_b <= 70  # uniform: about half of the 100 steps
    again = list(mixture.epoch(seed=0, epoch=1))
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(batches, again, strict=True))
    other = list(mixture.epoch(seed=0, epoch=2))
    assert not all(torch.equal(x.inputs, y.inputs) for x, y in zip(batches, other, strict=True))


def test_each_batch_comes_from_one_source_with_only_its_labels():
    mixture = TaskMixture({"a": dataset(50, "a"), "b": dataset(50, "b")}, 8)
    for batch in mixture.epoch(seed=1, epoch=1):
        assert batch.masks["a"].all() != batch.masks["b"].all()


def test_shuffled_batches_visit_every_row_once():
    source = ShuffledBatches(dataset(25, "a"), 4)
    rows = torch.cat([b.inputs[:, 0] for b in source.epoch(seed=0, epoch=3)])
    assert sorted(rows.tolist()) == list(range(25))
    assert source.steps_per_epoch() == 7
