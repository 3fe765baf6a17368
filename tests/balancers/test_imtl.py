"""IMTL-G: equal projections on the unit task gradients, weights sum to one, symmetries."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers.imtl import imtl_g_weights
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


@settings(max_examples=20, deadline=None)
@given(SEEDS, st.integers(2, 8))
def test_equal_projection_on_every_unit_gradient(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks, dim=10)
    alpha = imtl_g_weights(jac @ jac.T)
    assert abs(float(alpha.sum()) - 1) < 1e-10
    d = alpha @ jac
    projections = (jac / jac.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(projections, projections.mean().expand(tasks), rtol=1e-8, atol=1e-10)


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.floats(1e-2, 1e2), st.integers(0, 2))
def test_line_invariant_to_scaling_one_loss(seed: int, scale: float, task: int) -> None:
    """The update lies on the same line (the paper's Σα = 1 normalisation can flip its sign)."""
    jac = random_jacobian(seed, 3, 6)
    scaled = jac.clone()
    scaled[task] *= scale
    d = imtl_g_weights(jac @ jac.T) @ jac
    d_scaled = imtl_g_weights(scaled @ scaled.T) @ scaled
    cosine = float(d @ d_scaled / (d.norm() * d_scaled.norm()))
    assert abs(abs(cosine) - 1) < 1e-9
    torch.testing.assert_close(imtl_g_weights(4 * jac @ jac.T), imtl_g_weights(jac @ jac.T))


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.randoms(use_true_random=False))
def test_permutation_equivariance(seed: int, rnd) -> None:
    jac = random_jacobian(seed, 4, 8)
    perm = [0, 1, 2, 3]
    rnd.shuffle(perm)
    torch.testing.assert_close(
        imtl_g_weights(jac[perm] @ jac[perm].T), imtl_g_weights(jac @ jac.T)[perm]
    )
