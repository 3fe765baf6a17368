"""``check_balancer``: the properties every balancer must have, checked on a small toy model,
in the spirit of scikit-learn's ``check_estimator``.

Each property failing raises an ``AssertionError`` whose message names the balancer, the mode
and the property. The properties:

``weights``
    ``backward`` returns one finite weight per present task (none for an empty batch) and
    writes finite gradients; an unknown task name raises ``KeyError``.
``gradient``
    For loss-weighting and Gramian methods, every model parameter's ``.grad`` equals the
    autograd gradient of ``Σᵢ wᵢLᵢ`` with the returned weights. Jacobian methods write their own
    update instead (GradDrop drops gradient coordinates by sign, DB-MTL combines averaged
    gradients of log-losses, GradNorm is checked as loss weighting would be but declares its
    per-task gradient norms), so for them only the other properties apply.
``task order``
    A balancer built with the tasks in another order, on the same model, gives each task the
    same weight. For randomised methods (``balancer.randomized``: RLW, PCGrad, GradVac,
    GradDrop) the draws follow the task positions, so only reproducibility is checked: two
    balancers built alike give identical weights.
``absent tasks``
    A batch with a subset of the tasks weights exactly those (and, where ``gradient`` applies,
    the gradient is that subset's weighted sum).
``state_dict``
    A fresh balancer loading ``state_dict()`` (saved with ``torch.save``, loaded with
    ``weights_only=True``, as checkpoints are) gives the same next weights and gradients.
``non-finite loss``
    A NaN or infinite task loss skips the step: a ``RuntimeWarning`` names the task, no
    ``.grad`` is left non-finite, the state is unchanged, and the next finite step trains on.
``modes``
    All of the above in every mode the method declares (``mode`` option: ``features`` and
    ``params``).
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.balancers import BALANCERS, Balancer, build_balancer
from polytask.balancers.engine import MODES
from polytask.balancers.registry import options_of
from polytask.models.hard import HardSharing

#: ``factory(task_names, **options)`` builds the balancer under test (``options``: ``mode``).
Factory = Callable[..., Balancer]

TASKS = ("a", "b", "c")


def check_balancer(
    balancer: str | Factory, *, modes: Sequence[str] | None = None, steps: int = 2
) -> None:
    """Assert the contract (module docstring) for the balancer registered as ``balancer``, or
    built by the factory ``balancer(task_names, **options)``.

    ``modes``: the modes to check (passed as ``mode=``); by default, for a registered name,
    both when it has a ``mode`` option and none otherwise; for a factory, none.
    """
    if isinstance(balancer, str):
        name = balancer
        if modes is None:
            modes = MODES if "mode" in options_of(BALANCERS[name]) else ()

        def factory(task_names: Sequence[str], **options: Any) -> Balancer:
            return build_balancer(name, task_names, **options)

    else:
        factory, name = balancer, getattr(balancer, "__name__", repr(balancer))
    for mode in modes or (None,):
        options = {} if mode is None else {"mode": mode}
        _Check(name if mode is None else f"{name} (mode {mode})", factory, options, steps).run()


# -- the toy problem -------------------------------------------------------------------------
def toy_model(tasks: Sequence[str] = TASKS, seed: int = 0) -> HardSharing:
    """Float64 trunk and one two-layer head per task, the same weights whatever the task order."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
    heads = {t: nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 1)) for t in sorted(tasks)}
    return HardSharing(trunk, {t: heads[t] for t in tasks}).double()


def toy_losses(
    model: HardSharing, step: int, tasks: Sequence[str] | None = None
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-task regression losses on batch ``step``, scaled differently per task so gradients
    differ in size and conflict; the shared representation."""
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    outputs, features = model.forward_with_representation(x)
    losses = {}
    for k, name in enumerate(sorted(outputs)):
        target = torch.randn(7, 1, generator=gen, dtype=torch.float64) * (k + 1)
        if tasks is None or name in tasks:
            losses[name] = ((outputs[name] - target) ** 2).mean() * (1 + k)
    return losses, features


def _roundtrip(state: Mapping[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return a.shape == b.shape and bool(torch.equal(a.nan_to_num(), b.nan_to_num()))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class _Check:
    def __init__(self, label: str, factory: Factory, options: dict[str, Any], steps: int):
        self.label, self.factory, self.options, self.steps = label, factory, options, steps

    def fail(self, prop: str, message: str) -> AssertionError:
        return AssertionError(f"check_balancer({self.label}): {prop}: {message}")

    def build(self, tasks: Sequence[str] = TASKS) -> Balancer:
        torch.manual_seed(12345)  # balancers drawing their seed from torch's RNG draw alike
        return self.factory(list(tasks), **self.options)

    def step(
        self, balancer: Balancer, model: HardSharing, k: int, tasks: Sequence[str] | None = None
    ) -> tuple[dict[str, float], list[Tensor | None]]:
        """One SGD step on the model and the balancer's parameters, then the epoch hook."""
        params = [*model.parameters(), *balancer.parameters()]
        for p in params:
            p.grad = None
        losses, features = toy_losses(model, k, tasks)
        weights = balancer.backward(
            losses, shared_params=list(model.shared_parameters()), features=features
        )
        grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        self.check_weights(weights, list(losses), grads)
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(0.05 * p.grad)
        balancer.epoch_end({n: float(v.detach()) for n, v in losses.items()})
        return weights, grads

    def run(self) -> None:
        kind = getattr(self.build(), "kind", None)
        if kind not in ("loss_weighting", "gramian", "jacobian"):
            raise self.fail("kind", f"declares kind {kind!r}, not loss_weighting/gramian/jacobian")
        self.check_empty_and_unknown()
        self.check_gradient()
        self.check_task_order()
        self.check_absent_tasks()
        self.check_state_dict()
        for bad in (float("nan"), float("inf")):
            self.check_non_finite(bad)

    # -- properties ---------------------------------------------------------------------------
    def check_weights(
        self, weights: Mapping[str, float], present: Sequence[str], grads: Sequence[Tensor | None]
    ) -> None:
        if set(weights) != set(present):
            raise self.fail("weights", f"got weights for {sorted(weights)}, tasks {present}")
        if not all(math.isfinite(w) for w in weights.values()):
            raise self.fail("weights", f"non-finite weights {weights}")
        if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
            raise self.fail("weights", "a parameter's .grad is not finite")
        if all(g is None for g in grads):
            raise self.fail("weights", "backward wrote no gradient")

    def check_empty_and_unknown(self) -> None:
        balancer, model = self.build(), toy_model()
        losses, features = toy_losses(model, 0)
        shared = list(model.shared_parameters())
        if balancer.backward({}, shared_params=shared, features=features) != {}:
            raise self.fail("weights", "an empty batch must give no weights")
        try:
            balancer.backward({**losses, "zzz": losses["a"]}, shared_params=shared,
                              features=features)  # fmt: skip
        except KeyError:
            pass
        else:
            raise self.fail("weights", "an unknown task name must raise KeyError")

    def _expect_weighted_sum(
        self, prop: str, model: HardSharing, k: int, weights: Mapping[str, float],
        grads: Sequence[Tensor | None],
    ) -> None:  # fmt: skip
        """``grads`` equal autograd of Σ wᵢLᵢ on batch ``k`` of ``model`` (before the step)."""
        losses, _ = toy_losses(model, k, list(weights))
        total = sum(weights[n] * losses[n] for n in weights)
        assert isinstance(total, Tensor)
        expected = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
        for (name, _), got, want in zip(model.named_parameters(), grads, expected, strict=True):
            got = torch.zeros_like(want) if got is None and want is not None else got
            want = torch.zeros_like(got) if want is None and got is not None else want
            if got is None or want is None:
                continue
            if not torch.allclose(got, want, rtol=1e-6, atol=1e-9):
                error = float((got - want).abs().max())
                raise self.fail(prop, f".grad of {name} differs from autograd of Σ wᵢLᵢ with "
                                      f"the returned weights by {error:.3g}")  # fmt: skip

    def check_gradient(self) -> None:
        balancer, model = self.build(), toy_model()
        if balancer.kind == "jacobian":
            for k in range(self.steps):
                self.step(balancer, model, k)
            return
        for k in range(self.steps):
            before = copy.deepcopy(model)
            weights, grads = self.step(balancer, model, k)
            self._expect_weighted_sum("gradient", before, k, weights, grads)

    def check_task_order(self) -> None:
        order = (TASKS[2], TASKS[0], TASKS[1])
        first, second = self.build(TASKS), self.build(TASKS if self._random else order)
        model_1, model_2 = toy_model(TASKS), toy_model(TASKS if self._random else order)
        what = "two balancers built alike" if self._random else f"tasks in order {order}"
        for k in range(self.steps):
            w1, _ = self.step(first, model_1, k)
            w2, _ = self.step(second, model_2, k)
            for n in TASKS:
                if not math.isclose(w1[n], w2[n], rel_tol=1e-6, abs_tol=1e-9):
                    raise self.fail(
                        "task order", f"{what}: step {k} weighs {n!r} {w2[n]!r}, not {w1[n]!r}"
                    )

    @property
    def _random(self) -> bool:
        return self.build().randomized

    def check_absent_tasks(self) -> None:
        balancer, model = self.build(), toy_model()
        subset = (TASKS[0], TASKS[2])
        self.step(balancer, model, 0)
        before = copy.deepcopy(model)
        weights, grads = self.step(balancer, model, 1, subset)
        if balancer.kind != "jacobian":
            self._expect_weighted_sum("absent tasks", before, 1, weights, grads)
        self.step(balancer, model, 2)

    def check_state_dict(self) -> None:
        balancer, model = self.build(), toy_model()
        for k in range(self.steps):
            self.step(balancer, model, k)
        resumed, twin = self.build(), copy.deepcopy(model)
        torch.manual_seed(999)  # a resumed balancer must not rely on torch's global RNG
        resumed.load_state_dict(_roundtrip(balancer.state_dict()))
        for k in range(self.steps, 2 * self.steps):
            w1, g1 = self.step(balancer, model, k)
            w2, g2 = self.step(resumed, twin, k)
            same = all(math.isclose(w1[n], w2[n], rel_tol=1e-9, abs_tol=1e-12) for n in w1)
            same = same and all(
                (a is None and b is None)
                or (a is not None and b is not None and torch.allclose(a, b, 1e-9, 1e-12))
                for a, b in zip(g1, g2, strict=True)
            )
            if not same:
                raise self.fail(
                    "state_dict", f"a balancer loaded from state_dict() gives {w2} at step {k}, "
                    f"the original {w1}"
                )  # fmt: skip

    def check_non_finite(self, bad: float) -> None:
        balancer, model = self.build(), toy_model()
        self.step(balancer, model, 0)
        state = _roundtrip(balancer.state_dict())
        params = [*model.parameters(), *balancer.parameters()]
        for p in params:
            p.grad = torch.ones_like(p)  # stale gradients must not survive a skipped step
        losses, features = toy_losses(model, 2)
        losses[TASKS[1]] = losses[TASKS[1]] * bad
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            balancer.backward(
                losses, shared_params=list(model.shared_parameters()), features=features
            )
        named = [w for w in caught if issubclass(w.category, RuntimeWarning)]
        if not any(repr(TASKS[1]) in str(w.message) for w in named):
            raise self.fail("non-finite loss", f"a {bad} loss of {TASKS[1]!r} gave no "
                            "RuntimeWarning naming the task")  # fmt: skip
        if any(p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in params):
            raise self.fail("non-finite loss", f"a {bad} loss left a non-finite .grad")
        if any(p.grad is not None and bool((p.grad == 1).all()) for p in params):
            raise self.fail("non-finite loss", "a skipped step left stale gradients in .grad")
        if not _same_state(_roundtrip(balancer.state_dict()), state):
            raise self.fail("non-finite loss", f"a {bad} loss changed the balancer's state")
        self.step(balancer, model, 3)  # and training goes on
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise self.fail("non-finite loss", "parameters became non-finite after the skip")
