"""RLW: softmax-of-normal weights, reproducible from the seed and from a checkpoint."""

from __future__ import annotations

import pytest
import torch

from polytask.balancers import RandomLossWeighting

TASKS = ["a", "b", "c", "d"]


def draw(rlw: RandomLossWeighting, names=TASKS) -> dict[str, float]:
    return rlw.backward({n: torch.tensor(1.0, requires_grad=True) for n in names})


def test_weights_are_a_distribution_over_present_tasks():
    rlw = RandomLossWeighting(TASKS, seed=0)
    for _ in range(50):
        w = draw(rlw)
        assert sum(w.values()) == pytest.approx(1.0)
        assert all(v > 0 for v in w.values())
    w = draw(rlw, ["b", "d"])
    assert set(w) == {"b", "d"} and sum(w.values()) == pytest.approx(1.0)
    scaled = RandomLossWeighting(TASKS, seed=0, scale_to_tasks=True)
    assert sum(draw(scaled).values()) == pytest.approx(len(TASKS))


def test_weights_are_exchangeable_and_vary():
    rlw = RandomLossWeighting(TASKS, seed=1)
    samples = torch.tensor([list(draw(rlw).values()) for _ in range(3000)])
    means = samples.mean(0)
    torch.testing.assert_close(means, torch.full((4,), 0.25), atol=0.01, rtol=0)
    assert samples.std(0).min() > 0.05
    # softmax of N(0, 1): log-ratios of two weights are N(0, 2)
    log_ratio = (samples[:, 0] / samples[:, 1]).log()
    assert log_ratio.var().item() == pytest.approx(2.0, rel=0.1)


def test_same_seed_same_weights_other_seed_other_weights():
    first, second, other = (RandomLossWeighting(TASKS, seed=s) for s in (7, 7, 8))
    a, b, c = draw(first), draw(second), draw(other)
    assert a == b and a != c


def test_gradient_is_the_weighted_sum():
    rlw = RandomLossWeighting(["a", "b"], seed=2)
    losses = {
        "a": torch.tensor(3.0, requires_grad=True),
        "b": torch.tensor(5.0, requires_grad=True),
    }
    w = rlw.backward(losses)
    assert losses["a"].grad.item() == pytest.approx(w["a"])
    assert losses["b"].grad.item() == pytest.approx(w["b"])
