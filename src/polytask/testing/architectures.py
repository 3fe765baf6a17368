"""``check_architecture``: the contract every multi-task architecture must keep, checked on a
small tabular problem (in the spirit of scikit-learn's ``check_estimator``).

The checks, each failing with an :class:`AssertionError` that names it:

* ``outputs``: ``forward`` returns one output per task, ``(N, output_size)``, and nothing else;
* ``representation``: ``forward_with_representation`` returns the same outputs and the shared
  representation ``z`` (a tensor with one row per example) that every output reads;
* ``parameters``: ``shared_parameters()`` and each task's ``task_parameters()`` are parameters
  of the model, listed once, and together are all of them;
* ``through_representation``: the shared parameters reach every task's output only through
  ``z`` (the gradient of an output over them equals ``z``'s pullback of the gradient over
  ``z``), which the Gramian engine's ``params`` mode relies on;
* ``task_isolation``: a task's own parameters get no gradient from another task's loss;
* ``state_dict``: a fresh model that loads the state dict gives the same outputs;
* ``eval_deterministic``: two forward passes in eval mode agree;
* ``trains``: a few steps with equal weights lower the summed loss;
* ``balancers``: one step with every registered balancer (each gradient mode it has) writes
  finite gradients and returns a finite weight per task; a method that needs shared parameters
  on an architecture that shares none is refused by the trainer with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.balancers import BALANCERS, Balancer, build_balancer
from polytask.balancers.engine import MODES
from polytask.balancers.registry import PRESETS
from polytask.models import ModelParts, MultiTaskModel, TabularEncoder, build_model
from polytask.training import Trainer

N_NUMERIC = 3
CARDINALITIES = (4, 3)
WIDTH = 8
OUTPUT_SIZES = {"reg": 1, "cls": 3, "bin": 1}

ArchitectureFactory = Callable[[ModelParts], MultiTaskModel]
"""``factory(parts)`` → a model over ``parts.encoder_factory`` for ``parts.output_sizes``."""


def tabular_body() -> nn.Sequential:
    """The body of the check: an input block (embeddings + one layer) and one more layer, so
    that layer-wise architectures (tied, cross-stitch) find two blocks."""
    return nn.Sequential(
        TabularEncoder(N_NUMERIC, CARDINALITIES, hidden=[WIDTH]),
        nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh()),
    )


def tabular_problem(n: int = 48, seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Inputs and targets of a regression, a 3-class and a binary task sharing a signal."""
    g = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, N_NUMERIC, generator=g)
    categorical = torch.stack(
        [torch.randint(0, c, (n,), generator=g) for c in CARDINALITIES], dim=1
    )
    signal = numeric[:, 0] - numeric[:, 1] + 0.5 * (categorical[:, 0] == 2).float()
    targets = {
        "reg": (signal + 0.3 * numeric[:, 2]).unsqueeze(1),
        "cls": torch.bucketize(signal, torch.tensor([-0.7, 0.7])),
        "bin": (signal + numeric[:, 2] > 0).float().unsqueeze(1),
    }
    return {"numeric": numeric, "categorical": categorical}, targets


def task_losses(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tasks' losses: squared error, cross-entropy, binary cross-entropy."""
    return {
        "reg": F.mse_loss(outputs["reg"], targets["reg"]),
        "cls": F.cross_entropy(outputs["cls"], targets["cls"]),
        "bin": F.binary_cross_entropy_with_logits(outputs["bin"], targets["bin"]),
    }


def check_architecture(
    architecture: str | ArchitectureFactory,
    *,
    options: Mapping[str, Any] | None = None,
    balancers: Iterable[str] | None = None,
    train_steps: int = 25,
) -> None:
    """Run every check on ``architecture``: a registered name (built by
    :func:`~polytask.models.build_model` with ``options``) or a factory taking
    :class:`~polytask.models.ModelParts`. ``balancers`` defaults to every registered one."""
    make = _maker(architecture, dict(options or {}))
    model = make(0)
    x, targets = tabular_problem()
    model.eval()
    check_outputs(model, x)
    check_parameters(model)
    check_through_representation(model, x)
    check_task_isolation(model, x, targets)
    check_state_dict(model, make(1), x)
    check_eval_deterministic(model, x)
    check_trains(make(0), x, targets, train_steps)
    names = sorted(BALANCERS) if balancers is None else list(balancers)
    for method in balancer_cases(names):
        check_balancer_step(make(0), method, x, targets)


def _maker(architecture: str | ArchitectureFactory, options: dict[str, Any]):
    parts = ModelParts(tabular_body, WIDTH, OUTPUT_SIZES)

    def make(seed: int) -> MultiTaskModel:
        torch.manual_seed(seed)
        if isinstance(architecture, str):
            model = build_model(
                architecture,
                encoder_factory=parts.encoder_factory,
                encoder_width=parts.encoder_width,
                output_sizes=parts.output_sizes,
                **options,
            )
        else:
            model = architecture(parts)
        _check(isinstance(model, MultiTaskModel), "type", "the model is not a MultiTaskModel")
        return model

    return make


def _check(condition: bool, check: str, message: str) -> None:
    if not condition:
        raise AssertionError(f"check_architecture [{check}]: {message}")


def _ids(params: Iterable[Tensor]) -> list[int]:
    return [id(p) for p in params]


def check_outputs(model: MultiTaskModel, x: Mapping[str, Tensor]) -> None:
    """One output per task with shape ``(N, size)``; the representation goes with them."""
    n = x["numeric"].shape[0]
    outputs = model(x)
    _check(
        list(outputs) == list(OUTPUT_SIZES),
        "outputs",
        f"outputs {list(outputs)}, expected one per task {list(OUTPUT_SIZES)}",
    )
    for name, size in OUTPUT_SIZES.items():
        shape = tuple(outputs[name].shape)
        _check(shape == (n, size), "outputs", f"task '{name}': shape {shape}, expected {(n, size)}")
    again, z = model.forward_with_representation(x)
    _check(
        isinstance(z, Tensor) and z.dim() >= 1 and z.shape[0] == n,
        "representation",
        "forward_with_representation must return a tensor with one row per example",
    )
    for name in OUTPUT_SIZES:
        _check(
            torch.allclose(again[name], outputs[name]),
            "representation",
            f"task '{name}': forward_with_representation and forward disagree",
        )
        (grad,) = torch.autograd.grad(again[name].sum(), z, retain_graph=True, allow_unused=True)
        _check(
            grad is not None and bool(grad.abs().sum() > 0),
            "representation",
            f"task '{name}': its output does not depend on the representation",
        )


def check_parameters(model: MultiTaskModel) -> None:
    """Shared and task parameters partition the model's parameters."""
    everything = _ids(model.parameters())
    shared = _ids(model.shared_parameters())
    listed = list(shared)
    for task in OUTPUT_SIZES:
        own = _ids(model.task_parameters(task))
        _check(
            set(own) <= set(everything),
            "parameters",
            f"task '{task}': a parameter not in the model",
        )
        listed += own
    _check(set(shared) <= set(everything), "parameters", "a shared parameter is not in the model")
    _check(len(listed) == len(set(listed)), "parameters", "a parameter is listed twice")
    missing = len(set(everything) - set(listed))
    _check(
        missing == 0,
        "parameters",
        f"{missing} parameter(s) are neither shared nor any task's (e.g. a trunk layer missing "
        "from shared_parameters())",
    )


def check_through_representation(model: MultiTaskModel, x: Mapping[str, Tensor]) -> None:
    """Each output's gradient over the shared parameters equals the pullback through ``z``."""
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    if not shared:
        return
    outputs, z = model.forward_with_representation(x)
    for name in OUTPUT_SIZES:
        out = outputs[name].sum()
        direct = torch.autograd.grad(out, shared, retain_graph=True, allow_unused=True)
        (dz,) = torch.autograd.grad(out, z, retain_graph=True)
        pulled = torch.autograd.grad(z, shared, dz, retain_graph=True, allow_unused=True)
        for p, a, b in zip(shared, direct, pulled, strict=True):
            a = torch.zeros_like(p) if a is None else a
            b = torch.zeros_like(p) if b is None else b
            _check(
                torch.allclose(a, b, rtol=1e-4, atol=1e-6),
                "through_representation",
                f"task '{name}': a shared parameter of shape {tuple(p.shape)} reaches the output "
                "other than through the representation",
            )


def check_task_isolation(
    model: MultiTaskModel, x: Mapping[str, Tensor], targets: Mapping[str, Tensor]
) -> None:
    """A task's own parameters get no gradient from any other task's loss."""
    losses = task_losses(model(x), targets)
    for task in OUTPUT_SIZES:
        own = [p for p in model.task_parameters(task) if p.requires_grad]
        for other, loss in losses.items():
            if other == task or not own:
                continue
            grads = torch.autograd.grad(loss, own, retain_graph=True, allow_unused=True)
            leaked = [g for g in grads if g is not None and bool(g.abs().sum() > 0)]
            _check(
                not leaked,
                "task_isolation",
                f"task '{task}': its own parameters get gradient from task '{other}''s loss",
            )


def check_state_dict(model: MultiTaskModel, fresh: MultiTaskModel, x: Mapping[str, Tensor]) -> None:
    """``fresh.load_state_dict(model.state_dict())`` reproduces the outputs."""
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    before, after = model(x), fresh(x)
    for name in OUTPUT_SIZES:
        _check(
            torch.allclose(before[name], after[name]),
            "state_dict",
            f"task '{name}': outputs differ after a state_dict round trip",
        )


def check_eval_deterministic(model: MultiTaskModel, x: Mapping[str, Tensor]) -> None:
    model.eval()
    first, second = model(x), model(x)
    for name in OUTPUT_SIZES:
        _check(
            torch.equal(first[name], second[name]),
            "eval_deterministic",
            f"task '{name}': two forward passes in eval mode differ",
        )


def _loss_after(model: MultiTaskModel, x: Mapping[str, Tensor], targets: Mapping[str, Tensor]):
    model.eval()
    with torch.no_grad():
        return float(sum(task_losses(model(x), targets).values()))


def check_trains(
    model: MultiTaskModel, x: Mapping[str, Tensor], targets: Mapping[str, Tensor], steps: int
) -> None:
    """A few Adam steps on the summed losses (and the architecture's penalty) lower the loss."""
    start = _loss_after(model, x, targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(task_losses(model(x), targets).values())
        penalty = model.regularization()
        if penalty is not None:
            _check(
                penalty.dim() == 0 and bool(torch.isfinite(penalty)),
                "trains",
                "regularization() must be a finite scalar or None",
            )
            loss = loss + penalty
        loss.backward()
        optimizer.step()
    end = _loss_after(model, x, targets)
    _check(
        end < 0.9 * start, "trains", f"{steps} steps moved the loss from {start:.3f} to {end:.3f}"
    )


def balancer_cases(names: Iterable[str]) -> list[Balancer]:
    """One balancer (default options) per registered class among ``names`` (aliases dropped),
    and one per gradient mode for methods that have a ``mode``."""
    methods: list[Balancer] = []
    seen: set[tuple[type, tuple[tuple[str, Any], ...]]] = set()
    tasks = list(OUTPUT_SIZES)
    for name in names:
        key = (BALANCERS[name], tuple(sorted(PRESETS.get(name, {}).items())))
        if key in seen:
            continue
        seen.add(key)
        method = build_balancer(name, tasks)
        methods.append(method)
        mode = getattr(method, "mode", None)
        for other in (m for m in MODES if mode is not None and m != mode):
            methods.append(build_balancer(name, tasks, mode=other))
    return methods


def check_balancer_step(
    model: MultiTaskModel,
    method: Balancer,
    x: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
) -> None:
    """One training step of ``model`` with ``method``: finite gradients and weights."""
    label = f"{method.name}" + (f" (mode {method.mode})" if getattr(method, "mode", None) else "")
    shared = list(model.shared_parameters())
    if method.needs_shared_params and not shared:
        try:
            Trainer(model, [], balancer=method)
        except ValueError as exc:
            _check("shares none" in str(exc), "balancers", f"{label}: unclear refusal: {exc}")
            return
        _check(False, "balancers", f"{label} needs shared parameters; the trainer accepted none")
    model.train()
    model.zero_grad()
    outputs, z = model.forward_with_representation(x)
    weights = method.backward(task_losses(outputs, targets), shared_params=shared, features=z)
    _check(
        set(weights) == set(OUTPUT_SIZES)
        and all(torch.isfinite(torch.tensor(w)) for w in weights.values()),
        "balancers",
        f"{label}: weights {weights}, expected a finite weight per task",
    )
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    _check(bool(grads), "balancers", f"{label}: the step wrote no gradient")
    _check(
        all(bool(torch.isfinite(g).all()) for g in grads),
        "balancers",
        f"{label}: a non-finite gradient",
    )
    moved = [g for g in grads if bool(g.abs().sum() > 0)]
    _check(bool(moved), "balancers", f"{label}: every gradient the step wrote is zero")


__all__ = [
    "CARDINALITIES",
    "N_NUMERIC",
    "OUTPUT_SIZES",
    "WIDTH",
    "balancer_cases",
    "check_architecture",
    "tabular_body",
    "tabular_problem",
    "task_losses",
]
