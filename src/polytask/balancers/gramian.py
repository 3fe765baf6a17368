"""The Gramian engine: gradient balancing at close to the cost of one backward pass.

Most gradient-balancing methods (MGDA, CAGrad, Nash-MTL, IMTL-G, Aligned-MTL, UPGrad, PCGrad,
GradVac) need only the T×T Gramian ``G = J Jᵀ`` of the per-task gradients: the combined update
they produce is always a linear combination ``Σᵢ wᵢ gᵢ``. So a step is

1. compute ``G`` as cheaply as the ``mode`` allows;
2. turn ``G`` into weights ``w`` (the method, :meth:`GramianBalancer.weights`);
3. the gradient of ``Σᵢ wᵢ Lᵢ`` into ``.grad``: in ``features`` mode one ordinary ``backward``
   (no per-task loops at the final step, so AMP and DDP work as with plain summed losses); in
   ``params`` mode, by default, combined from the per-task gradients already computed for the
   Gramian (``reuse_jacobian``), with no second backward through the trunk.

Modes:

``features``
    Gradients with respect to the shared representation (the MGDA-UB idea, Sener & Koltun 2018):
    one batched backward through the heads only, never through the trunk.
``params``
    The exact Gramian over the shared parameters: representation gradients through the heads,
    then a pullback of those T rows through the trunk yields each parameter's T×|p| block,
    whose ``B Bᵀ`` contributions are summed. Transient memory is T×P floats (kept until the
    weights are known); the cost is about T trunk backward passes (one vectorised call on
    accelerators, a loop on CPU, see :func:`pullback`).

``losses_from="<loss-weighting method>"`` composes methods as in the papers (IMTL = IMTL-L's
scaled losses combined by IMTL-G; uncertainty weighting or DWA feeding PCGrad, CAGrad, …): each
step the named method (default options) scales the losses, ``Lᵢ → cᵢ·Lᵢ`` (``Balancer.
scaled_losses``), and the gradient method balances the gradients of those terms. The inner
method's own parameters (UW's and IMTL-L's log-scales) are trained by its own objective only,
through one extra backward restricted to them.

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

from polytask.balancers._qp import single_blas_thread
from polytask.balancers.base import Balancer, ScaledLosses, loss_source

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

    On accelerators, a single vmapped backward (``is_grads_batched``) when every op has a
    batching rule, so the T products run as one set of wide kernels. On CPU (and where a batching
    rule is missing) one retained backward per row, written into preallocated T×… blocks: there
    the trunk backward is compute-bound, so batching saves nothing (measured 10–30 % slower at
    T = 2–10 on the benchmark MLP) and it would hold T copies of every intermediate at once.
    """
    count = cotangents.shape[0]
    if output.device.type != "cpu":
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
            pass
        else:
            pairs = zip(grads, inputs, strict=True)
            return [g if g is not None else _zeros_like_rows(count, x) for g, x in pairs]
    blocks = [_zeros_like_rows(count, x) for x in inputs]
    for k, c in enumerate(cotangents):
        row = torch.autograd.grad(output, list(inputs), c, retain_graph=True, allow_unused=True)
        for block, g in zip(blocks, row, strict=True):
            if g is not None:
                block[k].copy_(g)
    return blocks


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
    pulled back through the trunk (:func:`pullback`); without, one backward per task.
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


class HeldGradients:
    """Per-task gradients kept from the Gramian's computation, so that the update
    ``Σᵢ wᵢ ∇Lᵢ`` is written without a second backward of ``Σᵢ wᵢ Lᵢ``.

    ``blocks``: (leaf, T×leaf block) pairs, the leaf's ``.grad`` gets ``Σᵢ wᵢ blockᵢ`` (the
    trunk); ``parts``: (leaf, [(task index, gradient)]) for the leaves above the representation
    (the heads), each reached by some of the tasks.
    """

    def __init__(self) -> None:
        self.blocks: list[tuple[Tensor, Tensor]] = []
        self.parts: list[tuple[Tensor, list[tuple[int, Tensor]]]] = []

    def apply(self, weights: Tensor, combine: Any = None) -> None:
        """Accumulate the combined gradients into ``.grad`` (``weights``: length T).

        ``combine(leaf, block)``, when given, replaces ``Σᵢ wᵢ blockᵢ`` for the ``blocks`` where it
        returns a tensor (GradDrop's masked sums); ``None`` keeps the weighted sum.
        """
        with torch.no_grad():
            for leaf, block in self.blocks:
                combined = combine(leaf, block) if combine is not None else None
                if combined is None:
                    combined = _weighted_rows(weights, block)
                _accumulate(leaf, combined)
            for leaf, parts in self.parts:
                w = weights.to(dtype=parts[0][1].dtype, device=parts[0][1].device)
                total = parts[0][1] * w[parts[0][0]]
                for task, grad in parts[1:]:
                    total = total.add_(grad, alpha=float(weights[task]))
                _accumulate(leaf, total)


def _weighted_rows(weights: Tensor, block: Tensor) -> Tensor:
    """``Σᵢ wᵢ blockᵢ`` over the first dimension, in the block's dtype."""
    w = weights.to(dtype=block.dtype, device=block.device)
    return (w @ block.reshape(block.shape[0], -1)).reshape(block.shape[1:])


def _accumulate(leaf: Tensor, grad: Tensor) -> None:
    """``leaf.grad += grad`` as autograd's accumulation does (sets it when there is none)."""
    if leaf.grad is None:
        leaf.grad = grad.detach()
    else:
        leaf.grad.add_(grad)


def task_gradients(
    losses: Sequence[Tensor],
    mode: str,
    shared: Sequence[Tensor] | None,
    features: Tensor | None,
    hold: bool,
) -> tuple[list[Tensor], HeldGradients | None]:
    """Jacobian blocks for the Gramian of ``mode`` and, with ``hold`` (``params`` mode only),
    every gradient the final update needs (see :class:`HeldGradients`), from the same per-task
    backward calls: the heads' parameter gradients come with the representation gradients, the
    trunk's with the pullback. Then no second backward of ``Σᵢ wᵢ Lᵢ`` is needed.

    Holding is exact under the model contract (the shared parameters are the trunk, which the
    heads reach only through ``features``). Trunk leaves missing from ``shared`` get their
    blocks too (outside the Gramian). When the heads' leaves and the trunk's overlap (a
    parameter used above and below the representation, or a skip connection around it) nothing
    is held and the caller runs the ordinary backward.
    """
    shared = list(shared) if shared is not None else None
    if mode == "features":
        assert features is not None
        inputs = [features]
        hold = False  # measured: no faster than the ordinary backward (see docs/benchmarks.md)
    else:
        assert shared is not None
        inputs = [features] if features is not None else list(shared)
    held: HeldGradients | None = None
    per_task: list[list[Tensor]] = [[] for _ in losses]
    trunk: list[Tensor] = []
    if hold:
        if features is not None:
            trunk = graph_leaves([features])
            below = {id(t) for t in trunk} | {id(features)}
            per_task = [graph_leaves([loss], features.grad_fn) for loss in losses]
            clash = any(id(t) in below for leaves in per_task for t in leaves)
        else:
            exclude = {id(p) for p in inputs}
            per_task = [
                [t for t in graph_leaves([loss]) if id(t) not in exclude] for loss in losses
            ]
            clash = False
        if clash:
            per_task = [[] for _ in losses]
        else:
            held = HeldGradients()
    rows = [
        torch.autograd.grad(loss, [*inputs, *extra], retain_graph=True, allow_unused=True)
        if loss.requires_grad
        else (None,) * (len(inputs) + len(extra))
        for loss, extra in zip(losses, per_task, strict=True)
    ]
    stacked = [
        torch.stack([row[k] if row[k] is not None else torch.zeros_like(x) for row in rows])
        for k, x in enumerate(inputs)
    ]
    if held is not None:
        index: dict[int, int] = {}
        for task, (row, extra) in enumerate(zip(rows, per_task, strict=True)):
            for leaf, grad in zip(extra, row[len(inputs) :], strict=True):
                if grad is None:
                    continue
                if id(leaf) not in index:
                    index[id(leaf)] = len(held.parts)
                    held.parts.append((leaf, []))
                held.parts[index[id(leaf)]][1].append((task, grad))
    if mode == "features":
        return stacked, held
    assert shared is not None
    if features is None:
        if held is not None:
            held.blocks = list(zip(shared, stacked, strict=True))
        return stacked, held
    ids = {id(p) for p in shared}
    others = [t for t in trunk if id(t) not in ids]  # below features, not shared: not in G
    blocks = pullback(features, stacked[0], [*shared, *others])
    if held is not None:
        held.blocks = list(zip([*shared, *others], blocks, strict=True))
    return blocks[: len(shared)], held


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
    non-finite gradients, and writes the gradient of ``Σᵢ wᵢ Lᵢ`` into ``.grad``.

    ``reuse_jacobian`` (``params`` mode; default ``True``): the per-task gradients computed for
    the Gramian (every shared parameter's T×|p| block, every head parameter's per-task
    gradient) are kept until the weights are known and combined into ``.grad`` directly
    (accumulating onto existing gradients), instead of a second backward of ``Σᵢ wᵢ Lᵢ``
    through the trunk. The result equals that backward's up to round-off. It relies on the
    model contract: the shared parameters are the trunk, reached by the heads only through
    ``features`` (a parameter used both in the trunk and in a head, or a skip connection around
    the representation, is detected and falls back to the ordinary backward). With ``False``
    the update is the single ordinary ``backward`` of ``Σᵢ wᵢ Lᵢ``: use it where something
    must see that backward, e.g. DDP's gradient all-reduce hooks or
    ``register_post_accumulate_grad_hook`` (gradients written directly trigger neither).
    ``features`` mode always runs the ordinary backward (holding the heads' gradients measured
    no faster there).

    ``losses_from`` (default ``None``): the registered name of a pure loss-weighting method
    (``uw``, ``imtl_l``, ``dwa``, ``rlw``, ``gls``, ``famo``, ``equal``, ``fixed``) whose scaled
    losses ``cᵢ·Lᵢ`` replace the losses before the Gramian (module docstring). Its state is
    saved under ``"losses_from"``, its parameters are :meth:`parameters`, :meth:`epoch_end`
    reaches it; returned weights are then the effective ``wᵢ·cᵢ`` multiplying each ``∇Lᵢ``.
    """

    modes: ClassVar[tuple[str, ...]] = MODES

    def __init__(
        self,
        task_names: Sequence[str],
        mode: str = "features",
        update_every: int = 1,
        reuse_jacobian: bool = True,
        losses_from: str | None = None,
    ) -> None:
        super().__init__(task_names)
        owner = getattr(self, "name", type(self).__name__)
        self.loss_source = loss_source(owner, losses_from, self.task_names)
        self.mode = check_mode(type(self).__name__, mode, self.modes)
        if int(update_every) != update_every or update_every < 1:
            raise ValueError(f"update_every must be a positive integer, got {update_every!r}")
        self.update_every = int(update_every)
        self.reuse_jacobian = bool(reuse_jacobian)
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
        clear = [*(params or ()), *self.parameters()]  # gradients a skipped step clears
        scaled: ScaledLosses | None = None
        if self.loss_source is not None:
            scaled = self.loss_source.scaled_losses({n: losses[n] for n in names})
            if scaled is None:  # the inner method rejected the losses (and warned)
                return skip_step(self.name, names, names, "or rejected loss", loss_list, clear)
            loss_list = [scaled.terms[n] for n in names]
        reuse = (
            self._cached_weights is not None
            and self._cached_names == names
            and self._step % self.update_every != 0
        )
        held: HeldGradients | None = None
        if reuse:
            assert self._cached_weights is not None
            weights = torch.tensor(self._cached_weights, dtype=torch.float64)
        else:
            blocks, held = self._task_gradients(loss_list, params, features)
            gram = gramian_of(blocks)
            del blocks
            diagonal = torch.diagonal(gram)
            bad = _nonfinite(names, diagonal)
            if bad:
                return skip_step(self.name, names, bad, "gradient", loss_list, clear)
            with single_blas_thread():
                weights = self.weights(gram, names).detach().to(torch.float64).cpu()
            if not bool(torch.isfinite(weights).all()):
                bad = _nonfinite(names, weights)
                return skip_step(self.name, names, bad, "weight", loss_list, clear)
            self._cached_names = list(names)
            self._cached_weights = weights.tolist()
        self._step += 1
        if held is not None:
            held.apply(weights)
        else:
            stacked = torch.stack([loss.reshape(()) for loss in loss_list])
            (stacked * weights.to(dtype=stacked.dtype, device=stacked.device)).sum().backward()
        if scaled is None:
            return dict(zip(names, weights.tolist(), strict=True))
        assert self.loss_source is not None
        if scaled.objective is not None:  # the inner method's parameters, by its own objective
            torch.autograd.backward(scaled.objective, inputs=self.loss_source.parameters())
        return {n: w * scaled.factors[n] for n, w in zip(names, weights.tolist(), strict=True)}

    def _task_gradients(
        self, losses: Sequence[Tensor], params: list[Tensor] | None, features: Tensor | None
    ) -> tuple[list[Tensor], HeldGradients | None]:
        if self.mode == "features":
            if features is None:
                raise ValueError(
                    f"{self.name}: mode 'features' needs features=<shared representation>"
                )
            shared = [p for p in params if p.requires_grad] if params is not None else None
            return task_gradients(losses, "features", shared, features, self.reuse_jacobian)
        return task_gradients(losses, "params", shared_list(params), features, self.reuse_jacobian)

    def parameters(self) -> list[Tensor]:
        return [] if self.loss_source is None else self.loss_source.parameters()

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:
        if self.loss_source is not None:
            self.loss_source.epoch_end(mean_losses)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self._step,
            "cached_names": None if self._cached_names is None else list(self._cached_names),
            "cached_weights": None if self._cached_weights is None else list(self._cached_weights),
        }
        if self.loss_source is not None:
            state["losses_from"] = self.loss_source.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._step = int(state["step"])
        names = state.get("cached_names")
        weights = state.get("cached_weights")
        self._cached_names = None if names is None else list(names)
        self._cached_weights = None if weights is None else [float(w) for w in weights]
        if self.loss_source is not None and "losses_from" in state:
            self.loss_source.load_state_dict(state["losses_from"])
