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
``loss scale``
    Under a GradScaler's loss scale (``backward(..., grad_scale=s)``, ``s`` a power of two so
    that scaling is exact) the weights are those of the unscaled step and every ``.grad`` (the
    method's own parameters' included) is ``s`` times the unscaled one; a scale so large that
    the scaled gradients overflow either raises ``GradientOverflow`` with every gradient
    cleared and the state unchanged, or leaves a non-finite ``.grad`` for the scaler to find.
``modes``
    All of the above in every mode the method declares (``mode`` option: ``features`` and
    ``params``).

``precision="bf16"`` runs every property with a float32 toy model whose forward pass and
losses run under CPU bfloat16 autocast (as the trainer's ``training.precision: bf16``); the
tolerances of the gradient comparisons are then those of bf16 (:data:`BF16_GRAD_TOL`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polytask.balancers import BALANCERS, Balancer, build_balancer
from polytask.balancers.base import GradientOverflow
from polytask.balancers.engine import MODES
from polytask.balancers.registry import options_of
from polytask.models.hard import HardSharing

#: ``factory(task_names, **options)`` builds the balancer under test (``options``: ``mode``).
Factory = Callable[..., Balancer]

TASKS = ("a", "b", "c")

#: Loss scale of the ``loss scale`` property: a power of two, so scaling and unscaling are exact.
LOSS_SCALE = 2.0**10

BF16_GRAD_TOL = 2.0**-5
"""Norm-wise tolerance of the ``gradient`` and ``absent tasks`` comparisons under bf16
autocast: ``‖.grad − autograd(Σ wᵢLᵢ)‖ ≤ 2⁻⁵·Σᵢ |wᵢ|·‖∇Lᵢ‖``. Both sides run the same bf16
forward pass but round their backward differently (the balancer's, e.g., takes per-task
gradients and combines them in float32; autograd rounds the weighted sum). Each bf16 result
carries a relative error up to ``u = 2⁻⁸``, and the toy model's deepest backward path crosses
four bf16 matmuls (two head layers, two trunk layers), so each side is within about ``4u`` of
the exact gradient, norm-wise, relative to the terms it sums: ``2 × 4u = 2⁻⁵`` for the two.
Relative to the sum itself no bound holds where the tasks' gradients cancel, and entry by
entry none does either (a bias gradient is a sum over the batch that can cancel). Measured
on the registry: at most ``1.5u``. The float64 checks keep ``rtol=1e-6``."""

#: Relative tolerance of weights compared across two bf16 runs that differ only by rounding
#: (``task order``): one bf16 ulp, ``u = 2⁻⁸``; a weight cannot be more accurate than the bf16
#: losses and gradients it is computed from (measured: at most ``0.15u``).
BF16_WEIGHT_TOL = 2.0**-8


def check_balancer(
    balancer: str | Factory,
    *,
    modes: Sequence[str] | None = None,
    steps: int = 2,
    precision: Literal["fp32", "bf16"] = "fp32",
) -> None:
    """Assert the contract (module docstring) for the balancer registered as ``balancer``, or
    built by the factory ``balancer(task_names, **options)``.

    ``modes``: the modes to check (passed as ``mode=``); by default, for a registered name,
    both when it has a ``mode`` option and none otherwise; for a factory, none.
    ``precision``: ``fp32`` (a float64 toy model) or ``bf16`` (float32 under CPU bf16
    autocast, module docstring).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
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
        label = name if mode is None else f"{name} (mode {mode})"
        label = label if precision == "fp32" else f"{label} under {precision} autocast"
        _Check(label, factory, options, steps, precision).run()


# -- the toy problem -------------------------------------------------------------------------
def toy_model(
    tasks: Sequence[str] = TASKS, seed: int = 0, dtype: torch.dtype = torch.float64
) -> HardSharing:
    """Float64 (or ``dtype``) trunk and one two-layer head per task, the same weights whatever
    the task order."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
    heads = {t: nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 1)) for t in sorted(tasks)}
    return HardSharing(trunk, {t: heads[t] for t in tasks}).double().to(dtype)


def toy_losses(
    model: HardSharing, step: int, tasks: Sequence[str] | None = None
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-task regression losses on batch ``step``, scaled differently per task so gradients
    differ in size and conflict (float32 or float64 as the model, whatever autocast computes
    the forward pass in); the shared representation."""
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64).to(dtype)
    outputs, features = model.forward_with_representation(x)
    losses = {}
    for k, name in enumerate(sorted(outputs)):
        target = torch.randn(7, 1, generator=gen, dtype=torch.float64).to(dtype) * (k + 1)
        if tasks is None or name in tasks:
            error = outputs[name].to(dtype) - target
            losses[name] = (error**2).mean() * (1 + k)
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
    def __init__(
        self, label: str, factory: Factory, options: dict[str, Any], steps: int, precision: str
    ) -> None:
        self.label, self.factory, self.options, self.steps = label, factory, options, steps
        self.bf16 = precision == "bf16"
        self.dtype = torch.float32 if self.bf16 else torch.float64

    def fail(self, prop: str, message: str) -> AssertionError:
        return AssertionError(f"check_balancer({self.label}): {prop}: {message}")

    def build(self, tasks: Sequence[str] = TASKS) -> Balancer:
        torch.manual_seed(12345)  # balancers drawing their seed from torch's RNG draw alike
        return self.factory(list(tasks), **self.options)

    def model(self, tasks: Sequence[str] = TASKS) -> HardSharing:
        return toy_model(tasks, dtype=self.dtype)

    def losses(
        self, model: HardSharing, k: int, tasks: Sequence[str] | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The toy losses, under CPU bf16 autocast for ``precision="bf16"``."""
        context = (
            torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        with context:
            return toy_losses(model, k, tasks)

    def step(
        self,
        balancer: Balancer,
        model: HardSharing,
        k: int,
        tasks: Sequence[str] | None = None,
        grad_scale: float | None = None,
    ) -> tuple[dict[str, float], list[Tensor | None]]:
        """One SGD step on the model and the balancer's parameters, then the epoch hook; the
        gradients (the balancer's own parameters' last) are returned as written."""
        params = [*model.parameters(), *balancer.parameters()]
        for p in params:
            p.grad = None
        losses, features = self.losses(model, k, tasks)
        scale = {} if grad_scale is None else {"grad_scale": grad_scale}
        weights = balancer.backward(
            losses, shared_params=list(model.shared_parameters()), features=features, **scale
        )
        grads = [None if p.grad is None else p.grad.clone() for p in params]
        self.check_weights(weights, list(losses), grads)
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(0.05 * p.grad / (grad_scale or 1.0))
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
        self.check_loss_scale()
        self.check_overflow()

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
        balancer, model = self.build(), self.model()
        losses, features = self.losses(model, 0)
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
        losses, _ = self.losses(model, k, list(weights))
        total = sum(weights[n] * losses[n] for n in weights)
        assert isinstance(total, Tensor)
        named = list(model.named_parameters())
        expected = torch.autograd.grad(total, [p for _, p in named], allow_unused=True)
        pairs = []
        for (name, _), got, want in zip(named, grads[: len(named)], expected, strict=True):
            got = torch.zeros_like(want) if got is None and want is not None else got
            want = torch.zeros_like(got) if want is None and got is not None else want
            if got is not None and want is not None:
                pairs.append((name, got, want))
        if self.bf16:  # norm-wise, see BF16_GRAD_TOL
            error = torch.cat([(got - want).flatten() for _, got, want in pairs]).norm()
            bound = BF16_GRAD_TOL * self._terms_norm(model, k, weights)
            if not float(error) <= bound:
                raise self.fail(prop, f".grad differs from autograd of Σ wᵢLᵢ with the returned "
                                      f"weights by {float(error):.3g} in norm, more than bf16's "
                                      f"{bound:.3g}")  # fmt: skip
            return
        for name, got, want in pairs:
            if not torch.allclose(got, want, rtol=1e-6, atol=1e-9):
                error = float((got - want).abs().max())
                raise self.fail(prop, f".grad of {name} differs from autograd of Σ wᵢLᵢ with "
                                      f"the returned weights by {error:.3g}")  # fmt: skip

    def _terms_norm(self, model: HardSharing, k: int, weights: Mapping[str, float]) -> float:
        """``Σᵢ |wᵢ|·‖∇Lᵢ‖`` over the model's parameters: the size of the terms the gradient
        sums, which its bf16 rounding error scales with (not the sum's, which cancels where
        the tasks conflict)."""
        params = list(model.parameters())
        total = 0.0
        for n, w in weights.items():
            losses, _ = self.losses(model, k, [n])
            grads = torch.autograd.grad(losses[n], params, allow_unused=True)
            flat = torch.cat([g.flatten() for g in grads if g is not None])
            total += abs(w) * float(flat.norm())
        return total

    def check_gradient(self) -> None:
        balancer, model = self.build(), self.model()
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
        model_1, model_2 = self.model(TASKS), self.model(TASKS if self._random else order)
        what = "two balancers built alike" if self._random else f"tasks in order {order}"
        for k in range(self.steps):
            w1, _ = self.step(first, model_1, k)
            w2, _ = self.step(second, model_2, k)
            for n in TASKS:
                rel = BF16_WEIGHT_TOL if self.bf16 else 1e-6
                if not math.isclose(w1[n], w2[n], rel_tol=rel, abs_tol=1e-9):
                    raise self.fail(
                        "task order", f"{what}: step {k} weighs {n!r} {w2[n]!r}, not {w1[n]!r}"
                    )

    @property
    def _random(self) -> bool:
        return self.build().randomized

    def check_absent_tasks(self) -> None:
        balancer, model = self.build(), self.model()
        subset = (TASKS[0], TASKS[2])
        self.step(balancer, model, 0)
        before = copy.deepcopy(model)
        weights, grads = self.step(balancer, model, 1, subset)
        if balancer.kind != "jacobian":
            self._expect_weighted_sum("absent tasks", before, 1, weights, grads)
        self.step(balancer, model, 2)

    def check_state_dict(self) -> None:
        balancer, model = self.build(), self.model()
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
        balancer, model = self.build(), self.model()
        self.step(balancer, model, 0)
        state = _roundtrip(balancer.state_dict())
        params = [*model.parameters(), *balancer.parameters()]
        for p in params:
            p.grad = torch.ones_like(p)  # stale gradients must not survive a skipped step
        losses, features = self.losses(model, 2)
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

    def check_loss_scale(self) -> None:
        plain, model = self.build(), self.model()
        if "grad_scale" not in inspect.signature(plain.backward).parameters:
            raise self.fail("loss scale", "backward() takes no grad_scale (a GradScaler's scale)")
        scaled, twin = self.build(), copy.deepcopy(model)
        for k in range(self.steps):
            w1, g1 = self.step(plain, model, k)
            w2, g2 = self.step(scaled, twin, k, grad_scale=LOSS_SCALE)
            if not all(math.isclose(w1[n], w2[n], rel_tol=1e-9, abs_tol=1e-12) for n in w1):
                raise self.fail(
                    "loss scale", f"step {k} under a loss scale weighs {w2}, unscaled {w1}"
                )
            for a, b in zip(g1, g2, strict=True):
                if (a is None) != (b is None) or (
                    a is not None
                    and b is not None
                    and not torch.allclose(b, a * LOSS_SCALE, rtol=1e-6, atol=1e-9 * LOSS_SCALE)
                ):
                    raise self.fail(
                        "loss scale", f"step {k}: a .grad under a loss scale of {LOSS_SCALE:g} "
                        "is not that many times the unscaled one"
                    )  # fmt: skip

    def check_overflow(self) -> None:
        balancer, model = self.build(), self.model()
        self.step(balancer, model, 0)
        state = _roundtrip(balancer.state_dict())
        params = [*model.parameters(), *balancer.parameters()]
        for p in params:
            p.grad = None
        losses, features = self.losses(model, 1)
        huge = math.inf  # the limit of an overflow: every scaled gradient is inf or NaN
        try:
            balancer.backward(
                losses, shared_params=list(model.shared_parameters()), features=features,
                grad_scale=huge,
            )  # fmt: skip
        except GradientOverflow:
            if any(p.grad is not None for p in params):
                raise self.fail("loss scale", "GradientOverflow left gradients in .grad") from None
            if not _same_state(_roundtrip(balancer.state_dict()), state):
                raise self.fail("loss scale", "an overflowed step changed the state") from None
            self.step(balancer, model, 2)  # and training goes on
            return
        if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
            raise self.fail(
                "loss scale", "overflowed scaled gradients were neither reported "
                "(GradientOverflow) nor left non-finite in .grad for the scaler to find"
            )  # fmt: skip
