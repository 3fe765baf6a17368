"""GradVac: reaches the target cosine, reduces to PCGrad at target 0, EMA state, symmetry."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers.gradvac import GradVac, gradvac_weights
from polytask.balancers.pcgrad import pcgrad_weights
from polytask.balancers.rng import random_orders
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


def test_raises_cosine_to_target() -> None:
    jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    targets = torch.full((2, 2), 0.3, dtype=torch.float64)
    coefficients = gradvac_weights(jac @ jac.T, targets, [[1], []], beta=0.0)[0]
    # only task 0 was visited: g₀' = coefficients·g − g₁
    g0 = coefficients @ jac - jac[1]
    cosine = g0 @ jac[1] / (g0.norm() * jac[1].norm())
    torch.testing.assert_close(cosine, torch.tensor(0.3, dtype=torch.float64))


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.integers(2, 5))
def test_zero_targets_reduce_to_pcgrad(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks)
    orders = [[j for j in range(tasks) if j != i] for i in range(tasks)]
    targets = torch.zeros(tasks, tasks, dtype=torch.float64)
    w, _ = gradvac_weights(jac @ jac.T, targets, orders, beta=0.0)
    torch.testing.assert_close(w, pcgrad_weights(jac @ jac.T, orders))


def test_targets_follow_an_ema_of_cosines() -> None:
    jac = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    balancer = GradVac(["a", "b"], beta=0.5, seed=0)
    balancer.weights(jac @ jac.T, ["a", "b"])
    cosine = 2**-0.5
    torch.testing.assert_close(balancer.targets[0, 1], torch.tensor(0.5 * cosine).double())
    assert balancer.state_dict()["targets"][0, 1] == balancer.targets[0, 1]


@settings(max_examples=10, deadline=None)
@given(SEEDS)
def test_two_task_permutation_equivariance(seed: int) -> None:
    """With two tasks the visiting order is fixed, so swapping tasks swaps the weights."""
    jac = random_jacobian(seed, 2)
    targets = torch.tensor([[0.0, 0.4], [0.2, 0.0]], dtype=torch.float64)
    w, t = gradvac_weights(jac @ jac.T, targets, [[1], [0]], 0.1)
    w_sw, t_sw = gradvac_weights(jac.flip(0) @ jac.flip(0).T, targets.flip(0, 1), [[1], [0]], 0.1)
    torch.testing.assert_close(w_sw, w.flip(0))
    torch.testing.assert_close(t_sw, t.flip(0, 1))
    torch.testing.assert_close(
        gradvac_weights(5 * jac @ (5 * jac).T, targets, [[1], [0]], 0.1)[0], w
    )


def loop_gradvac_weights(gramian, targets, orders, beta):
    """The former implementation (one small torch op per task pair), kept as the reference."""
    g = gramian.double().cpu()
    count = g.shape[0]
    targets = targets.double().clone()
    coefficients = torch.eye(count, dtype=torch.float64)
    for i, order in enumerate(orders):
        for j in order:
            norm_j = math.sqrt(max(float(g[j, j]), 0.0))
            norm_i = math.sqrt(max(float(coefficients[i] @ g @ coefficients[i]), 0.0))
            if norm_i == 0 or norm_j == 0:
                continue
            phi = float(coefficients[i] @ g[:, j]) / (norm_i * norm_j)
            phi = min(1.0, max(-1.0, phi))
            target = float(targets[i, j])
            if phi < target and target < 1:
                gain = target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)
                coefficients[i, j] += norm_i * gain / (norm_j * math.sqrt(1 - target**2))
            targets[i, j] = (1 - beta) * target + beta * phi
    return coefficients.sum(dim=0), targets


@settings(max_examples=25, deadline=None)
@given(SEEDS, st.integers(1, 40), st.integers(0, 30), st.floats(0.0, 1.0))
def test_vectorised_weights_match_the_pairwise_loop(seed, tasks, extra, beta) -> None:
    """Same RNG draws, same weights and targets as the per-pair loop (up to summation-order
    round-off), on random Gramians with one zero row and random targets in [-1, 1] (one
    exactly 1). Full row rank otherwise: in a rank-deficient Gramian a projection can cancel to
    a vector of round-off size whose cosine is noise in either implementation."""
    jac = random_jacobian(seed, tasks, tasks + extra)
    if tasks > 2:
        jac[seed % tasks] = 0.0
    gen = torch.Generator().manual_seed(seed)
    targets = torch.rand(tasks, tasks, generator=gen, dtype=torch.float64) * 2 - 1
    targets[0, -1] = 1.0
    orders = random_orders(tasks, gen)
    gram = jac @ jac.T
    w, t = gradvac_weights(gram, targets, orders, beta)
    w_ref, t_ref = loop_gradvac_weights(gram, targets, orders, beta)
    torch.testing.assert_close(w, w_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t, t_ref, rtol=1e-12, atol=1e-12)
    ragged = [order[: k % tasks] for k, order in enumerate(orders)]
    w, t = gradvac_weights(gram, targets, ragged, beta)
    w_ref, t_ref = loop_gradvac_weights(gram, targets, ragged, beta)
    torch.testing.assert_close(w, w_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t, t_ref, rtol=1e-12, atol=1e-12)
