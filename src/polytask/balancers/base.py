"""The :class:`Balancer` contract: per-task losses in, weights chosen, one backward pass done.

The trainer (or a user's own loop) calls::

    weights = balancer.backward(losses, shared_params=model.shared_parameters(),
                                features=representation)
    optimizer.step()

``losses`` maps task names to scalar losses; tasks without labels in the batch are simply absent
and get no weight. After ``backward`` every parameter holds an ordinary ``.grad``, so any
``torch.optim`` optimizer applies. Balancers are stateful; their ``state_dict`` is saved in
checkpoints. The trainer never names a method: methods are found by name in the registry.

:meth:`Balancer.backward` is the one place that guards a step: it orders the present tasks,
checks their losses, and runs :meth:`Balancer.step`; a non-finite loss, gradient or weight found
there (:func:`check_finite` raises :class:`SkipStep`) skips the whole step with one warning.

Loss scaling (mixed precision with a ``torch.amp.GradScaler``): ``backward(..., grad_scale=s)``
makes every gradient the balancer *writes* ``s`` times the true one, as
``scaler.scale(total).backward()`` would (so ``scaler.unscale_`` / ``scaler.step`` apply
unchanged), while everything it *reads* is true: the losses keep their unscaled float32
values (a :func:`scale_gradient` node multiplies only what flows back through them), and the
per-task gradients it decides on are divided by ``Step.scale`` in float32 before any Gramian,
norm or running average is formed. A non-finite gradient under a scale is an overflow, not a
failed task: no warning, every gradient is cleared and :class:`GradientOverflow` is raised for
the caller to hand to its scaler (which skips the step and lowers the scale); the balancer's
state is left as it was.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from torch import Tensor

#: What a method needs: ``loss_weighting`` the losses alone, ``gramian`` the T×T Gramian of the
#: per-task gradients, ``jacobian`` per-task gradients of its own (coordinates or norms).
Kind = Literal["loss_weighting", "gramian", "jacobian"]


class ScaledLosses(NamedTuple):
    """A loss-weighting method's per-task terms, for a gradient method to combine.

    ``terms[n] = factors[n]·Lₙ`` with the factor detached, so a gradient method backpropagating
    ``Σᵢ wᵢ·termᵢ`` reaches the model alone; ``objective`` (or ``None``) is the scalar whose
    gradient with respect to the method's own :meth:`Balancer.parameters` trains them (e.g.
    ``Σ e^{-sᵢ}·Lᵢ + sᵢ`` for uncertainty weighting, with the losses detached).
    """

    terms: dict[str, Tensor]
    factors: dict[str, float]
    objective: Tensor | None


class SkipStep(Exception):
    """Raised inside :meth:`Balancer.step`, before anything is written, to skip the step."""

    def __init__(self, what: str, tasks: Sequence[str]) -> None:
        super().__init__(what)
        self.what, self.tasks = what, list(tasks)


class GradientOverflow(Exception):
    """Raised by :meth:`Balancer.backward` under a ``grad_scale`` when the scaled per-task
    gradients of finite losses are not finite: every gradient is cleared, nothing was
    written and the balancer's state is unchanged; the caller's gradient scaler must skip the
    step and lower its scale."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(f"scaled gradients of task(s) {', '.join(map(repr, tasks))} overflowed")
        self.tasks = list(tasks)


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(scale)
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype), None


def scale_gradient(value: Tensor, scale: Tensor | float) -> Tensor:
    """``value`` unchanged, but every gradient flowing back through it is multiplied by
    ``scale`` (a GradScaler's loss scale applied below the loss, not to its value)."""
    if not value.requires_grad:
        return value
    scale = torch.as_tensor(scale, dtype=torch.float32, device=value.device)
    return _ScaleGradient.apply(value, scale)


def unscaled(tensor: Tensor, scale: Tensor | float) -> Tensor:
    """``tensor / scale`` computed in (at least) float32: a scaled gradient made true again
    without underflowing in a half-precision dtype."""
    tensor = tensor.to(torch.promote_types(tensor.dtype, torch.float32))
    if isinstance(scale, float | int) and scale == 1:
        return tensor
    return tensor / torch.as_tensor(scale, dtype=tensor.dtype, device=tensor.device)


def check_finite(
    what: str, names: Sequence[str], values: Tensor | Sequence[Tensor], nonnegative: bool = False
) -> None:
    """Raise :class:`SkipStep` naming the tasks whose ``values`` (one per task, or tensors with
    one row per task) are not finite (or negative, with ``nonnegative``). One host sync."""
    tensors = [values] if isinstance(values, Tensor) else list(values)
    ok: Tensor | None = None
    for tensor in tensors:
        rows = tensor.detach()
        good = torch.isfinite(rows) & (rows >= 0) if nonnegative else torch.isfinite(rows)
        good = good if rows.dim() == 1 else good.reshape(len(names), -1).all(dim=1)
        ok = good if ok is None else ok & good.to(ok.device)
    if ok is not None and not bool(ok.all()):
        bad = [n for n, fine in zip(names, ok.tolist(), strict=True) if not fine]
        raise SkipStep(f"non-finite{' or negative' if nonnegative else ''} {what}", bad)


def graph_leaves(tensors: Iterable[Tensor], stop: Any = None) -> list[Tensor]:
    """Leaf tensors (parameters) that receive gradient from ``tensors`` through autograd, each
    once; the graph is not followed below the node ``stop`` (e.g. ``features.grad_fn``)."""
    leaves: list[Tensor] = []
    seen: set[Any] = set() if stop is None else {stop}
    stack = []
    for t in tensors:
        if t.grad_fn is not None:
            stack.append(t.grad_fn)
        elif t.requires_grad:
            leaves.append(t)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return leaves


class Step(NamedTuple):
    """What one step works on: the present tasks (in the balancer's order), their finite
    losses (and the same stacked, ``values``), the shared parameters (or ``None``), the
    shared representation (or ``None``), the loss ``scale`` (1 without one): gradients
    taken through the losses are ``scale`` times the true ones; divide those a method reads
    by it (:func:`unscaled`), never those it writes, and multiply the gradient of an
    objective of detached losses (its own parameters') by it; and ``host_values``, the
    losses copied to the host by :meth:`Balancer.backward`'s check (``None`` when the method
    checks them itself): what a method computes its weights from without another device
    synchronisation; ``summed``: whether the values are the global ones under data-parallel
    training (``False``: each process's own part, :meth:`Balancer.backward`)."""

    names: list[str]
    losses: list[Tensor]
    values: Tensor
    shared_params: list[Tensor] | None
    features: Tensor | None
    scale: Tensor | float = 1.0
    host_values: Tensor | None = None
    summed: bool = True


class Balancer(ABC):
    """Base class of loss-weighting and gradient-balancing methods.

    A method declares its :data:`Kind` and implements :meth:`step`; :meth:`backward` does the
    rest (task order, unknown names, the non-finite guard, the returned dict).
    """

    name: str = "balancer"
    kind: ClassVar[Kind]
    #: Whether the losses must be non-negative (methods taking their logarithm).
    nonnegative_losses: ClassVar[bool] = False
    #: ``"features"`` or ``"params"`` for methods with gradient modes, ``None`` otherwise.
    mode: str | None = None
    #: Whether the weights depend on random draws (from a generator kept in the state).
    randomized: bool = False
    #: Whether a data-parallel run (``torchrun``, :mod:`polytask.distributed`) of the method
    #: equals one process on the same global batches: true of every method that reads only
    #: loss values, a Gramian (summed over processes by the engine) or GradNorm's norms.
    data_parallel: bool = True
    #: Whether, under data-parallel training, :meth:`backward` needs the global loss values
    #: (each loss carrying the sum over the processes). ``False`` for a method that is handed
    #: each process's own values (``summed=False``) and either reads none (equal weights: no
    #: state, no collective) or sums them itself in a collective it makes anyway (a Gramian
    #: method, before its loss check); the trainer sums them with the gradients too (one
    #: collective fewer a step), skipping the step on every process when a global value is
    #: not finite (:func:`polytask.training.step.skip_unless_finite`).
    needs_global_losses: ClassVar[bool] = True
    #: Whether :meth:`step` checks the losses itself (``check_finite("loss", ...)``, before it
    #: writes a gradient or changes its state), so that the check shares the step's one host
    #: synchronisation with what the method reads back anyway (the Gramian); otherwise
    #: :meth:`backward` checks them first.
    defers_loss_check: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str]) -> None:
        if not task_names or len(set(task_names)) != len(task_names):
            raise ValueError(f"task names must be unique and non-empty, got {list(task_names)}")
        self.task_names = tuple(task_names)

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
        grad_scale: Tensor | float | None = None,
        summed: bool = True,
    ) -> dict[str, float]:
        """Backpropagate the balanced loss into ``.grad`` and return the weight of each task.

        A non-finite loss (gradient, weight) skips the step: a ``RuntimeWarning`` names the
        tasks, every gradient the step would have written is set to ``None`` (``torch.optim``
        then leaves those parameters, momentum included, unchanged), the weights returned are 0,
        and a non-finite loss leaves the method's state as it was.

        ``grad_scale``: a GradScaler's loss scale (module docstring); the written gradients
        are that many times the true ones, and an overflow raises :class:`GradientOverflow`.
        ``summed=False`` (data-parallel training, a method whose :attr:`needs_global_losses`
        is false): the losses' values are this process's parts, not the global ones.
        """
        if not summed and self.needs_global_losses:
            raise ValueError(f"{self.name} needs the global loss values (summed=True)")
        names = self.present(losses)
        if not names:
            return {}
        values = [losses[n] for n in names]
        params = list(shared_params) if shared_params is not None else None
        scale: Tensor | float = 1.0
        if grad_scale is not None:
            scale = grad_scale
            values = [scale_gradient(v, scale) for v in values]
        stacked = torch.stack([v if v.dim() == 0 else v.reshape(()) for v in values])
        try:
            host = None
            if not self.defers_loss_check or self.nonnegative_losses:
                host = stacked.detach().cpu()  # the step's host synchronisation
                check_finite("loss", names, host, self.nonnegative_losses)
            weights = self.step(Step(names, values, stacked, params, features, scale, host, summed))
        except SkipStep as skip:
            for leaf in [*graph_leaves(values), *(params or ()), *self.parameters()]:
                leaf.grad = None
            if grad_scale is not None and skip.what == "non-finite gradient":
                raise GradientOverflow(skip.tasks) from None
            warnings.warn(
                f"{self.name}: {skip.what} for task(s) {', '.join(map(repr, skip.tasks))}; "
                "skipping this step (gradients cleared, no update)",
                RuntimeWarning,
                stacklevel=2,
            )
            return dict.fromkeys(names, 0.0)
        return dict(zip(names, weights.tolist(), strict=True))

    @abstractmethod
    def step(self, step: Step) -> Tensor:
        """Write the gradients of the step's losses and return their weights (one per task).
        Raise :class:`SkipStep` (:func:`check_finite`) before writing anything to skip it."""

    @property
    def needs_shared_params(self) -> bool:
        """Whether ``backward`` needs a non-empty ``shared_params`` (gradients over them)."""
        return self.mode == "params"

    def parameters(self) -> list[Tensor]:
        """Trainable parameters of the method itself (e.g. log-variances); the trainer adds them
        to its optimizer."""
        return []

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:  # noqa: B027 - optional hook
        """Called once per epoch with each task's mean training loss (DWA uses it)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; tensors, numbers, lists and dicts only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless default
        """Restore :meth:`state_dict` output."""

    def present(self, losses: Mapping[str, Tensor]) -> list[str]:
        """Task names present in ``losses``, in the balancer's order; unknown names raise."""
        unknown = [name for name in losses if name not in self.task_names]
        if unknown:
            raise KeyError(f"{self.name}: unknown task {unknown[0]!r}; known {self.task_names}")
        return [name for name in self.task_names if name in losses]
