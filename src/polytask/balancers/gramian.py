"""The Gramian engine: gradient balancing at close to the cost of one backward pass.

Most gradient-balancing methods (MGDA, CAGrad, Nash-MTL, IMTL-G, Aligned-MTL, UPGrad, PCGrad,
GradVac) need only the T×T Gramian ``G = J Jᵀ`` of the per-task gradients: the combined update
they produce is always a linear combination ``Σᵢ wᵢ gᵢ``. So a step is

1. compute ``G`` as cheaply as the ``mode`` allows;
2. turn ``G`` into weights ``w`` (the method, :meth:`GramianBalancer.weights`);
3. one ordinary ``backward`` of ``Σᵢ wᵢ Lᵢ`` — no per-task loops at the final step, so AMP and
   DDP work as with plain summed losses.

Modes:

``features``
    Gradients with respect to the shared representation (the MGDA-UB idea, Sener & Koltun 2018):
    one batched backward through the heads only, never through the trunk.
``params``
    The exact Gramian over the shared parameters: representation gradients through the heads,
    then one batched (vmapped) pullback through the trunk yields each parameter's T×|p| block,
    whose ``B Bᵀ`` contributions are summed. Transient memory is T×P floats; the cost is about T
    trunk backward passes, run as one vectorised call.

``update_every=k`` recomputes the weights every k steps and reuses them in between, where a step
costs one plain backward.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from polytask.balancers.base import Balancer

MODES = ("features", "params")


def _zeros_like_rows(count: int, tensor: Tensor) -> Tensor:
    return torch.zeros((count, *tensor.shape), dtype=tensor.dtype, device=tensor.device)


def task_jacobians(losses: Sequence[Tensor], inputs: Sequence[Tensor]) -> list[Tensor]:
    """``∂Lᵢ/∂input`` stacked over tasks (shape ``T × input.shape``) for each input.

    One retained backward per task: autograd visits only the nodes between ``Lᵢ`` and the inputs,
    so for ``inputs=[features]`` each call runs through task i's head alone (a batched vmap call
    would push all T cotangents through every head, T² head work; it measured slower on CPU).
    Inputs a loss does not reach get zeros.
    """
    rows = [
        torch.autograd.grad(loss, list(inputs), retain_graph=True, allow_unused=True)
        if loss.requires_grad
        else (None,) * len(inputs)
        for loss in losses
    ]
    return [
        torch.stack([row[k] if row[k] is not None else torch.zeros_like(x) for row in rows])
        for k, x in enumerate(inputs)
    ]


def pullback(output: Tensor, cotangents: Tensor, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Vector-Jacobian products of ``output`` for T stacked ``cotangents``, one per input.

    A single vmapped backward (``is_grads_batched``) when every op has a batching rule, so the
    T products run as one set of wide matrix products; otherwise one retained backward per row.
    """
    count = cotangents.shape[0]
    try:
        grads: Sequence[Tensor | None] = torch.autograd.grad(
            output,
            list(inputs),
            grad_outputs=cotangents,
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=True,
        )
    except (RuntimeError, NotImplementedError):
        rows = [
            torch.autograd.grad(output, list(inputs), c, retain_graph=True, allow_unused=True)
            for c in cotangents
        ]
        grads = [
            torch.stack([row[k] if row[k] is not None else torch.zeros_like(x) for row in rows])
            for k, x in enumerate(inputs)
        ]
    pairs = zip(grads, inputs, strict=True)
    return [g if g is not None else _zeros_like_rows(count, x) for g, x in pairs]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def gramian_of(blocks: Iterable[Tensor]) -> Tensor:
    """Σ_blocks ``B Bᵀ`` over T×… Jacobian blocks, returned as a float64 T×T matrix."""
    total: Tensor | None = None
    for block in blocks:
        flat = block.reshape(block.shape[0], -1)
        flat = flat.to(_accumulation_dtype(flat.dtype))
        part = (flat @ flat.T).double()
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no gradient blocks to build a Gramian from")
    return total


def features_gramian(losses: Sequence[Tensor], features: Tensor) -> Tensor:
    """Gramian of the task gradients with respect to the shared representation ``features``."""
    return gramian_of(task_jacobians(losses, [features]))


def params_jacobian(
    losses: Sequence[Tensor], params: Sequence[Tensor], features: Tensor | None = None
) -> list[Tensor]:
    """Per-parameter T×|p| blocks of the task Jacobian over the shared parameters.

    With ``features`` (the model contract: shared parameters reach the losses only through the
    representation), per-task representation gradients are computed through the heads and then
    pulled back through the trunk in one batched call; without, one backward per task.
    """
    if features is None:
        return task_jacobians(losses, params)
    return pullback(features, task_jacobians(losses, [features])[0], params)


def params_gramian(
    losses: Sequence[Tensor], params: Sequence[Tensor], features: Tensor | None = None
) -> Tensor:
    """Exact Gramian ``J Jᵀ`` of the task gradients over the shared parameters ``params``,
    summed block by block from :func:`params_jacobian` (T×P floats held transiently)."""
    return gramian_of(params_jacobian(losses, params, features))


def graph_leaves(tensors: Iterable[Tensor]) -> list[Tensor]:
    """Leaf tensors (parameters) that receive gradient from ``tensors`` through autograd."""
    leaves: list[Tensor] = []
    seen: set[Any] = set()
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


def shared_list(shared_params: Iterable[torch.nn.Parameter] | None) -> list[Tensor]:
    """Shared parameters that require grad, as a list; ``ValueError`` when none were given."""
    if shared_params is None:
        raise ValueError("mode 'params' needs shared_params=model.shared_parameters()")
    params = [p for p in shared_params if p.requires_grad]
    if not params:
        raise ValueError("mode 'params': shared_params holds no parameter requiring grad")
    return params


def check_mode(owner: str, mode: str, supported: Sequence[str]) -> str:
    """Return ``mode`` or raise a ``ValueError`` naming the supported ones."""
    if mode not in supported:
        raise ValueError(f"{owner} supports mode {' or '.join(map(repr, supported))}, got {mode!r}")
    return mode


def skip_step(
    owner: str,
    names: Sequence[str],
    bad: Sequence[str],
    what: str,
    tensors: Iterable[Tensor],
    extra: Iterable[Tensor] = (),
) -> dict[str, float]:
    """Warn naming the offending tasks and clear every gradient so the optimizer makes no update.

    Gradients are set to ``None`` (not zero): ``torch.optim`` optimizers skip such parameters, so
    even momentum-based ones leave them unchanged.
    """
    warnings.warn(
        f"{owner}: non-finite {what} for task(s) {', '.join(map(repr, bad))}; "
        "skipping this step (gradients cleared, no update)",
        RuntimeWarning,
        stacklevel=3,
    )
    for leaf in [*graph_leaves(tensors), *extra]:
        leaf.grad = None
    return dict.fromkeys(names, 0.0)


def _nonfinite(names: Sequence[str], values: Tensor) -> list[str]:
    return [n for n, v in zip(names, values.tolist(), strict=True) if not math.isfinite(v)]


def nonfinite_losses(losses: Mapping[str, Tensor], names: Sequence[str]) -> list[str]:
    return [n for n in names if not bool(torch.isfinite(losses[n].detach()).all())]


class GramianBalancer(Balancer):
    """Base of the methods whose update is ``Σᵢ wᵢ gᵢ`` with ``w`` a function of the Gramian.

    Subclasses implement :meth:`weights`; the engine computes the Gramian in ``mode``
    (``"features"`` or ``"params"``), reuses weights for ``update_every`` steps, skips steps with
    non-finite gradients, and performs the single final backward of ``Σᵢ wᵢ Lᵢ``.
    """

    modes: ClassVar[tuple[str, ...]] = MODES

    def __init__(
        self, task_names: Sequence[str], mode: str = "features", update_every: int = 1
    ) -> None:
        super().__init__(task_names)
        self.mode = check_mode(type(self).__name__, mode, self.modes)
        if int(update_every) != update_every or update_every < 1:
            raise ValueError(f"update_every must be a positive integer, got {update_every!r}")
        self.update_every = int(update_every)
        self._step = 0
        self._cached_names: list[str] | None = None
        self._cached_weights: list[float] | None = None

    @abstractmethod
    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        """Weights (float64, length T) for the tasks ``names`` given their float64 Gramian."""

    def gramian(
        self,
        losses: Sequence[Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> Tensor:
        """The Gramian this balancer's mode uses (float64, T×T); retains the graph."""
        if self.mode == "features":
            if features is None:
                raise ValueError(
                    f"{self.name}: mode 'features' needs features=<shared representation>"
                )
            return features_gramian(losses, features)
        return params_gramian(losses, shared_list(shared_params), features)

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        names = self.present(losses)
        if not names:
            return {}
        params = list(shared_params) if shared_params is not None else None
        loss_list = [losses[n] for n in names]
        bad = nonfinite_losses(losses, names)
        if bad:
            return skip_step(self.name, names, bad, "loss", loss_list, params or ())
        reuse = (
            self._cached_weights is not None
            and self._cached_names == names
            and self._step % self.update_every != 0
        )
        if reuse:
            assert self._cached_weights is not None
            weights = torch.tensor(self._cached_weights, dtype=torch.float64)
        else:
            gram = self.gramian(loss_list, shared_params=params, features=features)
            diagonal = torch.diagonal(gram)
            bad = _nonfinite(names, diagonal)
            if bad:
                return skip_step(self.name, names, bad, "gradient", loss_list, params or ())
            weights = self.weights(gram, names).detach().to(torch.float64).cpu()
            if not bool(torch.isfinite(weights).all()):
                bad = _nonfinite(names, weights)
                return skip_step(self.name, names, bad, "weight", loss_list, params or ())
            self._cached_names = list(names)
            self._cached_weights = weights.tolist()
        self._step += 1
        stacked = torch.stack([loss.reshape(()) for loss in loss_list])
        (stacked * weights.to(dtype=stacked.dtype, device=stacked.device)).sum().backward()
        return dict(zip(names, weights.tolist(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self._step,
            "cached_names": None if self._cached_names is None else list(self._cached_names),
            "cached_weights": None if self._cached_weights is None else list(self._cached_weights),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._step = int(state["step"])
        names = state.get("cached_names")
        weights = state.get("cached_weights")
        self._cached_names = None if names is None else list(names)
        self._cached_weights = None if weights is None else [float(w) for w in weights]
