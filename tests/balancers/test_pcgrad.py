"""PCGrad on the Gramian: closed form, explicit-order symmetry, seeded reproducibility."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.balancers.pcgrad import PCGrad, pcgrad_weights
from polytask.balancers.rng import random_orders, seeded_generator
from tests.balancers.gb_toys import random_jacobian

SEEDS = st.integers(0, 10_000)


def explicit_pcgrad(jac: torch.Tensor, orders) -> torch.Tensor:
    """The paper's algorithm on explicit vectors."""
    out = []
    for i, order in enumerate(orders):
        g = jac[i].clone()
        for j in order:
            dot = g @ jac[j]
            if dot < 0:
                g = g - dot / (jac[j] @ jac[j]) * jac[j]
        out.append(g)
    return torch.stack(out).sum(0)


def test_two_conflicting_gradients_closed_form() -> None:
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    dot = g1 @ g2
    expected = (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1)
    jac = torch.stack([g1, g2])
    w = PCGrad(["a", "b"], seed=0).weights(jac @ jac.T, ["a", "b"])
    torch.testing.assert_close(w @ jac, expected)
    torch.testing.assert_close(w @ jac, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_non_conflicting_gradients_are_summed() -> None:
    jac = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    w = PCGrad(["a", "b"]).weights(jac @ jac.T, ["a", "b"])
    torch.testing.assert_close(w, torch.ones(2, dtype=torch.float64))


@settings(max_examples=15, deadline=None)
@given(SEEDS, st.integers(2, 5))
def test_gramian_weights_match_explicit_projections(seed: int, tasks: int) -> None:
    jac = random_jacobian(seed, tasks, 6)
    gen = torch.Generator().manual_seed(seed)
    orders = [
        [j for j in torch.randperm(tasks, generator=gen).tolist() if j != i] for i in range(tasks)
    ]
    torch.testing.assert_close(
        pcgrad_weights(jac @ jac.T, orders) @ jac, explicit_pcgrad(jac, orders)
    )


@settings(max_examples=10, deadline=None)
@given(SEEDS, st.randoms(use_true_random=False))
def test_permutation_equivariance_for_matching_orders(seed: int, rnd) -> None:
    """Random orders make the weights random; with the orders permuted along with the tasks
    (same distribution), the weights permute. Averaged over all orders: exact symmetry."""
    tasks = 3
    jac = random_jacobian(seed, tasks)
    perm = list(range(tasks))
    rnd.shuffle(perm)
    inverse = [perm.index(k) for k in range(tasks)]
    orders = [[j for j in rnd.sample(range(tasks), tasks) if j != i] for i in range(tasks)]
    permuted_orders = [[inverse[j] for j in orders[perm[i]]] for i in range(tasks)]
    w = pcgrad_weights(jac @ jac.T, orders)
    w_perm = pcgrad_weights(jac[perm] @ jac[perm].T, permuted_orders)
    torch.testing.assert_close(w[perm], w_perm)


def test_seed_fixes_the_random_orders() -> None:
    jac = random_jacobian(3, 5)  # 8 of its 10 pairs conflict
    names = list("abcde")
    runs = [PCGrad(names, seed=4).weights(jac @ jac.T, names) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1])
    all_orders = {
        tuple(PCGrad(names, seed=s).weights(jac @ jac.T, names).tolist()) for s in range(20)
    }
    assert len(all_orders) > 1  # the orders really are random


def test_invariant_to_scaling_all_losses() -> None:
    jac = random_jacobian(2, 4)
    orders = [list(itertools.chain(range(i), range(i + 1, 4))) for i in range(4)]
    torch.testing.assert_close(
        pcgrad_weights(9 * jac @ (9 * jac).T, orders), pcgrad_weights(jac @ jac.T, orders)
    )


def loop_pcgrad_weights(gramian: torch.Tensor, orders) -> torch.Tensor:
    """The former implementation (one small torch op per task pair), kept as the reference."""
    g = gramian.double().cpu()
    count = g.shape[0]
    coefficients = torch.eye(count, dtype=torch.float64)
    for i, order in enumerate(orders):
        for j in order:
            dot = float(coefficients[i] @ g[:, j])
            if dot < 0 and g[j, j] > 0:
                coefficients[i, j] -= dot / g[j, j]
    return coefficients.sum(dim=0)


@settings(max_examples=25, deadline=None)
@given(SEEDS, st.integers(1, 40), st.integers(1, 64))
def test_vectorised_weights_match_the_pairwise_loop(seed: int, tasks: int, dim: int) -> None:
    """Same RNG draws, same result as the per-pair loop, on random (also rank-deficient and
    zero-row) Gramians."""
    jac = random_jacobian(seed, tasks, dim)
    if tasks > 2:
        jac[seed % tasks] = 0.0  # a task with no gradient is never projected against
    gen = torch.Generator().manual_seed(seed)
    names = [f"t{k}" for k in range(tasks)]
    orders = random_orders(tasks, gen)
    gram = jac @ jac.T
    expected = loop_pcgrad_weights(gram, orders)
    torch.testing.assert_close(pcgrad_weights(gram, orders), expected, rtol=1e-12, atol=1e-12)
    # through the balancer: its generator draws the same orders
    balancer = PCGrad(names, seed=seed)
    reference = loop_pcgrad_weights(gram, random_orders(tasks, seeded_generator(seed)))
    torch.testing.assert_close(balancer.weights(gram, names), reference, rtol=1e-12, atol=1e-12)


def test_ragged_orders() -> None:
    jac = random_jacobian(1, 4)
    orders = [[3, 1], [], [0, 1, 3], [2]]
    torch.testing.assert_close(
        pcgrad_weights(jac @ jac.T, orders), loop_pcgrad_weights(jac @ jac.T, orders)
    )
