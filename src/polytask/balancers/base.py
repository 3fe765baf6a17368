"""The :class:`Balancer` contract: per-task losses in, weights chosen, one backward pass done.

The trainer (or a user's own loop) calls::

    weights = balancer.backward(losses, shared_params=model.shared_parameters(),
                                features=representation)
    optimizer.step()

``losses`` maps task names to scalar losses; tasks without labels in the batch are simply absent
and get no weight. After ``backward`` every parameter holds an ordinary ``.grad``, so any
``torch.optim`` optimizer applies. Balancers are stateful; their ``state_dict`` is saved in
checkpoints. The trainer never names a method: methods are found by name in the registry.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from polytask.errors import ConfigError, did_you_mean


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


class Balancer(ABC):
    """Base class of loss-weighting and gradient-balancing methods."""

    name: ClassVar[str]

    def __init__(self, task_names: Sequence[str]) -> None:
        if not task_names or len(set(task_names)) != len(task_names):
            raise ValueError(f"task names must be unique and non-empty, got {list(task_names)}")
        self.task_names = tuple(task_names)

    @abstractmethod
    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        """Backpropagate the balanced loss into ``.grad`` and return the weight of each task."""

    @property
    def needs_shared_params(self) -> bool:
        """Whether ``backward`` needs a non-empty ``shared_params`` (gradients over them)."""
        return getattr(self, "mode", None) == "params"

    def parameters(self) -> list[Tensor]:
        """Trainable parameters of the method itself (e.g. log-variances); the trainer adds them
        to its optimizer."""
        return []

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        """The per-task scaled losses of a pure loss-weighting method (its update being
        ``Σᵢ cᵢ∇Lᵢ`` with ``cᵢ`` chosen from the losses alone), advancing its state as
        :meth:`backward` would; ``None`` when the step must be skipped (no task, or a loss it
        rejects). Methods that need gradients of their own (gradient methods, GradNorm, DB-MTL)
        do not implement it: they cannot feed a gradient method (``losses_from``)."""
        raise NotImplementedError(f"{self.name} does not provide scaled losses")

    @classmethod
    def provides_scaled_losses(cls) -> bool:
        return cls.scaled_losses is not Balancer.scaled_losses

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


BALANCERS: dict[str, type[Balancer]] = {}


def register_balancer(*names: str) -> Callable[[type[Balancer]], type[Balancer]]:
    """Class decorator: address a balancer by ``name`` (and aliases) in configs."""

    def decorate(cls: type[Balancer]) -> type[Balancer]:
        for name in names:
            if name in BALANCERS:
                raise ValueError(f"balancer name {name!r} registered twice")
            BALANCERS[name] = cls
        cls.name = names[0]
        return cls

    return decorate


def loss_source(owner: str, name: str | None, task_names: Sequence[str]) -> Balancer | None:
    """The loss-weighting balancer ``name`` (default options) whose scaled losses the gradient
    method ``owner`` combines (its ``losses_from`` option); ``None`` for ``None``."""
    if name is None:
        return None
    allowed = sorted(n for n, cls in BALANCERS.items() if cls.provides_scaled_losses())
    if name not in allowed:
        kind = "unknown balancer" if name not in BALANCERS else "not a pure loss-weighting method"
        raise ValueError(
            f"{owner}: losses_from={name!r} is {kind}{did_you_mean(name, allowed)}; "
            f"choose from {allowed}"
        )
    return BALANCERS[name](task_names)


def options_of(cls: type[Balancer]) -> list[str]:
    """Keyword options of ``cls``: its constructor's, plus its bases' where it forwards
    ``**engine`` options to them (gradient methods forward ``mode``, ``update_every``, ...)."""
    accepted: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        named = (p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        accepted += [n for n in named if n not in ("self", "task_names", *accepted)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return accepted


def build_balancer(name: str, task_names: Sequence[str], **options: Any) -> Balancer:
    """Instantiate the balancer registered as ``name``; unknown options raise a ConfigError."""
    if name not in BALANCERS:
        raise ConfigError(
            f"balancer.name: unknown balancer '{name}'{did_you_mean(name, BALANCERS)}; "
            f"choose from {sorted(BALANCERS)}"
        )
    cls = BALANCERS[name]
    accepted = options_of(cls)
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"balancer.{key}: '{name}' has no option '{key}'{did_you_mean(key, accepted)}; "
                f"its options are {accepted}"
            )
    try:
        return cls(task_names, **options)
    except (TypeError, ValueError, ArithmeticError) as exc:  # e.g. update_every: .inf
        raise ConfigError(f"balancer '{name}': {exc}") from exc
