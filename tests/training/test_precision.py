"""The trainer under ``training.precision`` on the CPU: bf16 autocast end to end, and the
GradScaler path of fp16 (run here with a CPU GradScaler on float32 compute, which fp16 on the
CPU is refused for): scaled steps equal unscaled ones, and an overflow skips the step, lowers the
scale and leaves the balancer's state alone. The CUDA fp16 checks are in tests/test_device.py."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from polytask.balancers import build_balancer
from polytask.config import parse_config
from polytask.data import MultiTaskData
from polytask.experiment import run_experiment
from polytask.models import HardSharing
from polytask.tasks import BinaryTask, RegressionTask
from polytask.testing.balancers import _roundtrip, _same_state
from polytask.training import StepObserver, Trainer

from ..conftest import config_dict

TASKS = [
    RegressionTask(name="r", mean=(0.0,), std=(1.0,)),
    BinaryTask(name="b", classes=("0", "1")),
]


def toy_data(n: int = 64, seed: int = 0, size: float = 1.0) -> MultiTaskData:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    r = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) * size
    return MultiTaskData(
        x,
        {"r": r, "b": (x[:, 0] > 0).float()},
        {"r": torch.ones(n, 1, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool)},
    )


def toy_model() -> HardSharing:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh())
    return HardSharing(trunk, {"r": nn.Linear(8, 1), "b": nn.Linear(8, 1)})


class Dtypes(StepObserver):
    name = "dtypes"

    def __init__(self) -> None:
        self.seen: list[tuple[torch.dtype, set[torch.dtype]]] = []

    def before_backward(self, view) -> None:
        self.seen.append((view.features.dtype, {v.dtype for v in view.losses.values()}))


def test_bf16_runs_the_forward_pass_in_bf16_and_hands_float32_losses_to_the_balancer():
    observer = Dtypes()
    trainer = Trainer(
        toy_model(), TASKS, balancer=build_balancer("mgda", ["r", "b"], mode="params"),
        precision="bf16", observers=[observer],
    )  # fmt: skip
    trainer.step(toy_data().batch(slice(None)))
    assert observer.seen == [(torch.bfloat16, {torch.float32})]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


@pytest.mark.parametrize("balancer", ["mgda", "nash_mtl"])
def test_a_bf16_run_trains_end_to_end_with_finite_metrics(table, tmp_path, balancer):
    training = {"epochs": 2, "batch_size": 64, "lr": 0.01, "seed": 0, "precision": "bf16"}
    config = parse_config(
        config_dict(
            str(table), output_dir=str(tmp_path), training=training, balancer={"name": balancer}
        )
    )
    result = run_experiment(config, baselines=False)
    for metrics in result.multitask.test.values():
        assert metrics and all(math.isfinite(v) for v in metrics.values())
    assert (result.run_dir / "config.json").read_text().count('"precision": "bf16"') == 1


# -- the GradScaler path ---------------------------------------------------------------------
def scaled_trainer(name: str, init_scale: float, **options) -> Trainer:
    model = toy_model()
    balancer = build_balancer(name, ["r", "b"], **options)
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.1)
    trainer = Trainer(model, TASKS, balancer=balancer, optimizer=optimizer)
    if init_scale:  # what precision fp16 sets up on CUDA, here on float32 compute
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return trainer


CASES = [
    ("mgda", {"mode": "params"}),
    ("upgrad", {"mode": "features"}),
    ("nash_mtl", {}),
    ("uw", {}),
    ("famo", {}),
    ("db_mtl", {}),
    ("gradnorm", {}),
    ("graddrop", {"seed": 0}),
]


@pytest.mark.parametrize(("name", "options"), CASES)
def test_a_scaled_step_equals_the_unscaled_one(name, options):
    plain, scaled = scaled_trainer(name, 0, **options), scaled_trainer(name, 2.0**12, **options)
    for seed in range(3):
        batch = toy_data(seed=seed).batch(slice(None))
        _, w1 = plain.step(batch)
        _, w2 = scaled.step(batch)
        assert w2 == pytest.approx(w1, rel=1e-6)
    for a, b in zip(plain.model.parameters(), scaled.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.balancer.parameters(), scaled.balancer.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert scaled.scaler is not None and scaled.scaler.get_scale() == 2.0**12


# FAMO's update is about Σᵢ ∇log Lᵢ whatever the losses' size, so no batch here overflows it;
# uw stands for the loss-weighting methods
@pytest.mark.parametrize(("name", "options"), [c for c in CASES if c[0] != "famo"])
def test_an_overflow_skips_the_step_lowers_the_scale_and_keeps_the_state(name, options):
    trainer = scaled_trainer(name, 2.0**12, **options)
    trainer.step(toy_data(seed=0).batch(slice(None)))  # a state to keep
    assert trainer.scaler is not None
    trainer.scaler.update(3.0e38)  # a scale at which float32 gradients overflow
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    own = [p.detach().clone() for p in trainer.balancer.parameters()]
    state = _roundtrip(trainer.balancer.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow is the scaler's business: no warning
        # regression targets of 1e3 give gradients of 1e3: times 3e38, beyond float32
        losses, _ = trainer.step(toy_data(seed=1, size=1e3).batch(slice(None)))
    assert all(bool(v.isfinite()) for v in losses.values())
    assert trainer.scaler.get_scale() == pytest.approx(1.5e38)  # backed off by one half
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(own, trainer.balancer.parameters(), strict=True))
    if trainer.balancer.kind != "loss_weighting":  # whose state follows the (true) losses alone
        assert _same_state(state, _roundtrip(trainer.balancer.state_dict()))
    trainer.scaler.update(2.0**12)
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.step(toy_data(seed=2).batch(slice(None)))  # and training goes on
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
