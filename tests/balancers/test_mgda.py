"""MGDA: exact min-norm point (KKT conditions), no conflict, symmetry, scale behaviour."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers.mgda import MGDA
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)
TASKS = st.integers(2, 12)


def weights(jac: torch.Tensor) -> torch.Tensor:
    names = [f"t{i}" for i in range(jac.shape[0])]
    return MGDA(names).weights(jac @ jac.T, names)


@settings(max_examples=25, deadline=None)
@given(SEEDS, TASKS, st.integers(2, 20))
def test_kkt_conditions_of_min_norm_point(seed: int, tasks: int, dim: int) -> None:
    jac = random_jacobian(seed, tasks, dim)
    gram = jac @ jac.T
    alpha = weights(jac)
    scale = float(torch.diagonal(gram).max())
    assert alpha.min() >= 0
    assert abs(float(alpha.sum()) - 1) < 1e-12
    grad = gram @ alpha  # ∇(½αᵀGα); optimality: grad_i ≥ αᵀGα, equal on the support
    value = float(alpha @ grad)
    assert float(grad.min()) >= value - 1e-9 * scale
    support = alpha > 1e-9
    assert torch.allclose(grad[support], torch.full_like(grad[support], value), atol=1e-9 * scale)


@settings(max_examples=20, deadline=None)
@given(SEEDS, TASKS)
def test_direction_conflicts_with_no_task(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks)
    d = weights(jac) @ jac
    assert float((jac @ d).min()) >= -1e-9 * float((jac**2).sum())


def test_two_tasks_closed_form() -> None:
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([-0.5, 1.0]).double()
    alpha = weights(torch.stack([g1, g2]))
    a = float((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)))
    torch.testing.assert_close(alpha, torch.tensor([a, 1 - a], dtype=torch.float64))


def test_zero_in_hull_gives_zero_direction() -> None:
    jac = torch.tensor([[1.0, 2.0], [-2.0, -4.0], [0.0, 1.0]], dtype=torch.float64)
    d = weights(jac) @ jac
    assert float(d.norm()) < 1e-10


@settings(max_examples=15, deadline=None)
@given(SEEDS, st.integers(2, 8), st.randoms(use_true_random=False))
def test_permutation_equivariance(seed: int, tasks: int, rnd) -> None:
    jac = random_jacobian(seed, tasks)
    perm = list(range(tasks))
    rnd.shuffle(perm)
    torch.testing.assert_close(weights(jac)[perm], weights(jac[perm]), atol=1e-9, rtol=1e-7)


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.floats(1e-3, 1e3))
def test_invariant_to_scaling_all_losses_not_one(seed: int, scale: float) -> None:
    jac = random_jacobian(seed, 3)
    torch.testing.assert_close(weights(scale * jac), weights(jac), atol=1e-9, rtol=1e-7)
    # documented: not invariant to one loss's scale; orthogonal gradients show it exactly
    pair = torch.eye(2, dtype=torch.float64)
    d = weights(pair) @ pair
    scaled = pair.clone()
    scaled[0] *= 10
    d_scaled = weights(scaled) @ scaled
    torch.testing.assert_close(d, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert not torch.allclose(d / d.norm(), d_scaled / d_scaled.norm(), atol=1e-3)
