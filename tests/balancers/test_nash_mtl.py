"""Nash-MTL: Gα = 1/α, loss-scale invariance, loud failure."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers.nash_mtl import NashMTL, NashSolveError, nash_weights
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


@settings(max_examples=25, deadline=None)
@given(SEEDS, st.integers(1, 10))
def test_solves_g_alpha_equals_inverse_alpha(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks, dim=max(tasks, 4))
    gram = jac @ jac.T
    alpha = nash_weights(gram)
    assert alpha.min() > 0
    torch.testing.assert_close(alpha * (gram @ alpha), torch.ones_like(alpha), rtol=0, atol=1e-8)


def test_losses_of_very_different_scales() -> None:
    jac = random_jacobian(0, 4, 6) * torch.tensor(
        [[1e-4], [1.0], [1e3], [1e6]], dtype=torch.float64
    )
    alpha = nash_weights(jac @ jac.T)
    torch.testing.assert_close(alpha * (jac @ jac.T @ alpha), torch.ones(4, dtype=torch.float64))


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.floats(1e-3, 1e3), st.integers(0, 2))
def test_invariant_to_scaling_one_loss(seed: int, scale: float, task: int) -> None:
    jac = random_jacobian(seed, 3, 5)
    scaled = jac.clone()
    scaled[task] *= scale
    d = nash_weights(jac @ jac.T) @ jac
    torch.testing.assert_close(nash_weights(scaled @ scaled.T) @ scaled, d, rtol=1e-7, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.randoms(use_true_random=False))
def test_permutation_equivariance(seed: int, rnd) -> None:
    jac = random_jacobian(seed, 5)
    perm = list(range(5))
    rnd.shuffle(perm)
    torch.testing.assert_close(
        nash_weights(jac[perm] @ jac[perm].T), nash_weights(jac @ jac.T)[perm]
    )


def test_pareto_stationary_gradients_fail_loudly() -> None:
    jac = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    gram = jac @ jac.T
    with pytest.raises(NashSolveError, match="Gα = 1/α"):
        nash_weights(gram)
    with pytest.raises(NashSolveError):
        NashMTL(["a", "b"], on_failure="raise").weights(gram, ["a", "b"])
    with pytest.warns(RuntimeWarning, match="equal weights"):
        w = NashMTL(["a", "b"]).weights(gram, ["a", "b"])
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_zero_gradient_task_gets_zero_weight_with_warning() -> None:
    jac = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="zero gradient"):
        alpha = nash_weights(jac @ jac.T)
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))
