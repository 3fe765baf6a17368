"""UPGrad: projections onto the dual cone, no conflict, symmetry, scale behaviour."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers._qp import dual_cone_weights
from polytask.balancers.upgrad import UPGrad
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


def weights(jac: torch.Tensor) -> torch.Tensor:
    names = [f"t{i}" for i in range(jac.shape[0])]
    return UPGrad(names).weights(jac @ jac.T, names)


@settings(max_examples=20, deadline=None)
@given(SEEDS, st.integers(2, 10), st.integers(2, 20))
def test_direction_conflicts_with_no_task(seed: int, tasks: int, dim: int) -> None:
    jac = random_jacobian(seed, tasks, dim)
    d = weights(jac) @ jac
    assert float((jac @ d).min()) >= -1e-9 * float((jac**2).sum())


@settings(max_examples=15, deadline=None)
@given(SEEDS, st.integers(2, 6))
def test_each_projection_is_optimal(seed: int, tasks: int) -> None:
    """π(gᵢ) = Jᵀ(eᵢ + v) is feasible (Jπ ≥ 0), and KKT: v ≥ 0, v ⊥ Jπ."""
    jac = random_jacobian(seed, tasks, 4)
    gram = jac @ jac.T
    tol = 1e-9 * float(torch.diagonal(gram).max())
    eye = torch.eye(tasks, dtype=torch.float64)
    w = dual_cone_weights(gram, eye)
    for i in range(tasks):
        v = w[:, i] - eye[:, i]
        slack = gram @ w[:, i]
        assert v.min() >= -1e-12 and slack.min() >= -tol
        assert abs(float(v @ slack)) <= tol * (1 + float(v.abs().sum()))


def test_no_conflict_means_mean_gradient() -> None:
    jac = torch.tensor([[1.0, 0.2], [0.3, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(weights(jac), torch.tensor([0.5, 0.5], dtype=torch.float64))


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.integers(2, 7), st.randoms(use_true_random=False))
def test_permutation_equivariance_and_global_scale(seed: int, tasks: int, rnd) -> None:
    jac = random_jacobian(seed, tasks)
    perm = list(range(tasks))
    rnd.shuffle(perm)
    d = weights(jac) @ jac
    torch.testing.assert_close(weights(jac[perm]) @ jac[perm], d, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(weights(7.0 * jac) @ jac, d, atol=1e-9, rtol=1e-7)
