"""CAGrad: mean gradient at c = 0, the ball constraint, worst-case improvement, symmetry."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers.cagrad import cagrad_weights
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.integers(1, 8))
def test_c_zero_is_the_mean_gradient(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks)
    w = cagrad_weights(jac @ jac.T, c=0.0)
    torch.testing.assert_close(w @ jac, jac.mean(0))


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.integers(2, 6), st.sampled_from([0.2, 0.5, 0.9]))
def test_solves_the_primal_problem(seed: int, tasks: int, c: float) -> None:
    """d = argmax_{‖d − g₀‖ ≤ c‖g₀‖} minᵢ gᵢ·d: on the boundary, and no feasible random
    direction does better on the worst task."""
    jac = random_jacobian(seed, tasks)
    g0 = jac.mean(0)
    d = cagrad_weights(jac @ jac.T, c=c, rescale=False) @ jac
    radius = c * float(g0.norm())
    worst = float((jac @ d).min())
    gen = torch.Generator().manual_seed(seed)
    for _ in range(200):
        u = torch.randn(jac.shape[1], generator=gen, dtype=torch.float64)
        candidate = g0 + radius * u / u.norm()
        assert float((jac @ candidate).min()) <= worst + 1e-6 * float(g0.norm() ** 2)
    assert abs(float((d - g0).norm()) - radius) <= 1e-6 * radius or worst > 0


@settings(max_examples=8, deadline=None)
@given(SEEDS, st.randoms(use_true_random=False))
def test_permutation_equivariance_and_global_scale(seed: int, rnd) -> None:
    jac = random_jacobian(seed, 4)
    perm = [0, 1, 2, 3]
    rnd.shuffle(perm)
    w = cagrad_weights(jac @ jac.T, 0.5)
    torch.testing.assert_close(
        cagrad_weights(jac[perm] @ jac[perm].T, 0.5), w[perm], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(cagrad_weights(100 * jac @ jac.T, 0.5), w, atol=1e-5, rtol=1e-5)


def test_rescale_divides_by_one_plus_c_squared() -> None:
    jac = random_jacobian(3, 3)
    gram = jac @ jac.T
    torch.testing.assert_close(
        cagrad_weights(gram, 0.5, rescale=True) * 1.25, cagrad_weights(gram, 0.5, rescale=False)
    )
