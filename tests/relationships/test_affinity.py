"""Task affinity: gradient cosines against naive per-task gradients, the TAG lookahead against
a hand-computed one, a planted sign pattern, and no side effect on training."""

import copy
import math

import pytest
import torch
from torch import nn

from polytask.balancers import EqualWeights, build_balancer
from polytask.config import AffinityConfig
from polytask.data.dataset import Batch
from polytask.errors import ConfigError
from polytask.models import HardSharing
from polytask.relationships.affinity import (
    GradientCosine,
    TagLookahead,
    build_affinity,
    run_affinity,
)
from polytask.relationships.grouping import best_groupings
from polytask.tasks import RegressionTask
from polytask.training import Trainer
from polytask.training.observers import StepView

NAMES = ["a", "b", "c"]
TASKS = [RegressionTask(name=n, mean=(0.0,), std=(1.0,)) for n in NAMES]


def toy_model(seed: int = 0, same_heads: bool = False) -> HardSharing:
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
    heads = {n: nn.Linear(6, 1) for n in NAMES}
    if same_heads:
        for n in NAMES[1:]:
            heads[n].load_state_dict(heads["a"].state_dict())
    return HardSharing(trunk, heads)


def toy_batch(targets: dict[str, torch.Tensor] | None = None, n: int = 16) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    if targets is None:
        targets = {name: torch.randn(n, 1, generator=g) for name in NAMES}
    return Batch(x, targets, {name: torch.ones(n, 1, dtype=torch.bool) for name in NAMES})


def losses_of(model, batch):
    outputs, z = model.forward_with_representation(batch.inputs)
    losses = {
        t.name: t.loss_value(outputs[t.name], batch.targets[t.name], batch.masks[t.name])
        for t in TASKS
    }
    return losses, z


def view(model, batch, lr=0.1, balancer=None):
    losses, z = losses_of(model, batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    balancer = balancer or EqualWeights(NAMES)
    return StepView(batch, losses, list(model.trunk.parameters()), z, model, TASKS, optimizer,
                    balancer)  # fmt: skip


def matrix_of(record) -> torch.Tensor:
    return torch.tensor(record["matrix"], dtype=torch.float64)


def naive_cosines(model, batch, mode):
    losses, z = losses_of(model, batch)
    inputs = [z] if mode == "features" else list(model.trunk.parameters())
    grads = [
        torch.cat([g.flatten() for g in torch.autograd.grad(losses[n], inputs, retain_graph=True)])
        for n in NAMES
    ]
    return torch.tensor([[float(nn.functional.cosine_similarity(u, v, dim=0)) for v in grads]
                         for u in grads])  # fmt: skip


@pytest.mark.parametrize("mode", ["features", "params"])
def test_cosine_equals_the_cosine_of_naive_per_task_gradients(mode):
    model, batch = toy_model(), toy_batch()
    meter = GradientCosine(NAMES, mode=mode)
    step = view(model, batch)
    meter.before_backward(step)
    meter.after_backward(step)
    record = meter.epoch_end(1)
    assert not meter.reuses_balancer
    assert record["tasks"] == NAMES and record["steps"] == [[1] * 3] * 3
    expected = naive_cosines(model, batch, mode)
    assert torch.allclose(matrix_of(record), expected.double(), atol=1e-5)
    assert not torch.allclose(expected, torch.ones(3, 3), atol=1e-2)  # a non-trivial case


def test_cosine_reuses_a_gramian_balancers_gramian_in_the_same_mode():
    model, batch = toy_model(), toy_batch()
    expected = naive_cosines(model, batch, "params")
    balancer = build_balancer("mgda", NAMES, mode="params")
    meter = GradientCosine(NAMES, mode="params", balancer=balancer)
    assert meter.reuses_balancer
    assert not GradientCosine(NAMES, mode="features", balancer=balancer).reuses_balancer
    trainer = Trainer(model, TASKS, balancer=balancer, observers=[meter])
    calls = []
    meter.engine.gramian = lambda *a: calls.append(a)  # the engine must not run again
    model.train()
    trainer.step(batch)
    record = meter.epoch_end(1)
    assert calls == []
    assert torch.allclose(matrix_of(record), expected.double(), atol=1e-5)


def hand_lookahead(model, batch, lr):
    """Z[i][j] = 1 − L_j(trunk − lr ∇_trunk L_i) / L_j(trunk), on copies of the model."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        before = [float(losses_of(model, batch)[0][n]) for n in NAMES]
    z = torch.zeros(3, 3, dtype=torch.float64)
    for i, name in enumerate(NAMES):
        moved = copy.deepcopy(model)
        loss = losses_of(moved, batch)[0][name]
        grads = torch.autograd.grad(loss, list(moved.trunk.parameters()))
        with torch.no_grad():
            for p, g in zip(moved.trunk.parameters(), grads, strict=True):
                p -= lr * g
            after = losses_of(moved, batch)[0]
        for j, other in enumerate(NAMES):
            z[i, j] = 1 - float(after[other]) / before[j]
    return z


def test_tag_equals_a_hand_computed_lookahead_and_leaves_the_model_as_it_was():
    model, batch = toy_model(), toy_batch()
    expected = hand_lookahead(model, batch, lr=0.3)
    state = copy.deepcopy(model.state_dict())
    meter = TagLookahead(NAMES)
    model.train()
    step = view(model, batch, lr=0.3)
    meter.before_backward(step)
    record = meter.epoch_end(1)
    assert torch.allclose(torch.tensor(record["matrix"], dtype=torch.float64), expected,
                          atol=1e-5)  # fmt: skip
    assert expected.abs().max() > 1e-3 and not torch.allclose(expected, expected.T, atol=1e-4)
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    sum(step.losses.values()).backward()  # the step's graph is still usable


def test_a_planted_pattern_gives_the_expected_signs_and_groups():
    """a and b fit the same target, c its negation (identical heads): a and b agree, c opposes."""
    n = 32
    y = torch.randn(n, 1, generator=torch.Generator().manual_seed(3)) + 2.0
    batch = toy_batch({"a": y, "b": y.clone(), "c": -y}, n)
    cos, tag = GradientCosine(NAMES, mode="params"), TagLookahead(NAMES)
    model = toy_model(same_heads=True)
    step = view(model, batch, lr=0.05)
    cos.before_backward(step)
    tag.before_backward(step)
    c = torch.tensor(cos.epoch_end(1)["matrix"])
    z = torch.tensor(tag.epoch_end(1)["matrix"])
    assert c[0, 1] > 0.99 and c[0, 2] < 0 and c[1, 2] < 0
    assert z[0, 1] > 0 and z[1, 0] > 0
    assert z[0, 2] < 0 and z[2, 0] < 0 and z[2, 1] < 0
    for matrix in (c, z):
        assert best_groupings(matrix.numpy(), 2)[1].groups == ((0, 1), (2,))


@pytest.mark.parametrize("method", ["cosine", "tag"])
def test_an_observer_does_not_change_training(method):
    batch = toy_batch()
    runs = []
    for observe in (False, True):
        model = toy_model()
        meter = build_affinity(AffinityConfig(method=method, mode="params"), NAMES)
        trainer = Trainer(model, TASKS, observers=[meter] if observe else [])
        model.train()
        for _ in range(3):
            trainer.step(batch)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_every_k_steps_and_the_run_average_weighs_epochs_by_their_steps():
    model, batch = toy_model(), toy_batch()
    meter = GradientCosine(NAMES, every=2, mode="features")
    trainer = Trainer(model, TASKS, observers=[meter])
    model.train()
    for _ in range(5):
        trainer.step(batch)
    first = meter.epoch_end(1)
    assert first["steps"][0][1] == 3  # steps 1, 3, 5
    history = [{"observations": {"affinity": first}},
               {"observations": {"affinity": {**first, "matrix": [[0.0] * 3] * 3,
                                              "steps": [[1] * 3] * 3}}}]  # fmt: skip
    names, mean = run_affinity(history)
    assert names == NAMES
    assert math.isclose(float(mean[0, 1]), first["matrix"][0][1] * 3 / 4, rel_tol=1e-9)


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_a_bad_every_or_a_single_task_is_a_config_error(every):
    with pytest.raises(ConfigError, match="every"):
        GradientCosine(NAMES, every=every)
    with pytest.raises(ConfigError, match="at least 2"):
        TagLookahead(["a"])


def test_a_resumed_trainer_measures_the_same_steps(tmp_path):
    """The meter's step count is in the checkpoint: with ``every: 2`` a run resumed after an
    odd number of steps measures the steps an uninterrupted run measures."""
    from polytask.data.dataset import MultiTaskData

    batch = toy_batch(n=24)
    data = MultiTaskData(batch.inputs, batch.targets, batch.masks)

    def trainer(epochs, folder):
        meter = GradientCosine(NAMES, every=2, mode="features")
        model = toy_model()
        return Trainer(
            model, TASKS, epochs=epochs, batch_size=8, checkpoint_dir=folder, observers=[meter]
        )

    full = trainer(2, tmp_path / "straight").fit(data)
    trainer(1, tmp_path / "resumed").fit(data)
    resumed = trainer(2, tmp_path / "resumed").fit(data, resume=True)
    steps = [log.observations["affinity"]["steps"] for log in full]
    assert [log.observations["affinity"]["steps"] for log in resumed] == steps
    assert steps[0][0][1] != steps[1][0][1]  # 3 steps per epoch, every 2: 2 then 1 measured


def test_nothing_measured_gives_no_affinity():
    record = {
        "method": "cosine",
        "tasks": NAMES,
        "matrix": [[None] * 3] * 3,
        "steps": [[0] * 3] * 3,
    }
    assert run_affinity([{"observations": {"affinity": record}}]) is None
