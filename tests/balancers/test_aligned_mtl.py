"""Aligned-MTL: aligned gradients are orthogonal with equal norms; symmetries."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers import build_balancer
from polytask.balancers.aligned_mtl import aligned_mtl_weights
from polytask.errors import ConfigError
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


@settings(max_examples=15, deadline=None)
@given(SEEDS, st.integers(2, 6))
def test_aligned_gradients_orthogonal_with_min_singular_norm(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks, dim=10)
    gram = jac @ jac.T
    values, vectors = torch.linalg.eigh(gram)
    basis = values.min().sqrt() * vectors / values.sqrt() @ vectors.T
    aligned = basis @ jac  # rows: aligned gradients
    torch.testing.assert_close(
        aligned @ aligned.T, values.min() * torch.eye(tasks, dtype=torch.float64)
    )
    torch.testing.assert_close(aligned_mtl_weights(gram) @ jac, aligned.sum(0))


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.randoms(use_true_random=False))
def test_permutation_equivariance_and_global_scale(seed: int, rnd) -> None:
    jac = random_jacobian(seed, 4, 8)
    perm = [0, 1, 2, 3]
    rnd.shuffle(perm)
    w = aligned_mtl_weights(jac @ jac.T)
    torch.testing.assert_close(aligned_mtl_weights(jac[perm] @ jac[perm].T), w[perm])
    torch.testing.assert_close(aligned_mtl_weights(25 * jac @ jac.T), w)


def test_rank_deficient_gramian_uses_nonzero_components() -> None:
    jac = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    w = aligned_mtl_weights(jac @ jac.T)
    assert torch.isfinite(w).all()


def test_unknown_scale_mode() -> None:
    with pytest.raises(ConfigError, match="scale_mode"):
        build_balancer("aligned_mtl", ["a", "b"], scale_mode="max")
