"""The Gramian engine: the one place that takes per-task gradients.

Most gradient-balancing methods (MGDA, CAGrad, Nash-MTL, IMTL-G, Aligned-MTL, UPGrad, PCGrad,
GradVac) need only the T×T Gramian ``G = J Jᵀ`` of the per-task gradients: the combined update
they produce is always a linear combination ``Σᵢ wᵢ gᵢ``. :class:`GramianEngine` computes ``G``
as cheaply as its ``mode`` allows and, once a weighting has turned it into ``w``, writes the
gradient of ``Σᵢ wᵢ Lᵢ`` into ``.grad``: in ``features`` mode one ordinary ``backward`` (no
per-task loops at the final step, so AMP and DDP work as with plain summed losses); in
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

Methods that need the per-task gradients themselves (GradDrop's coordinates, GradNorm's
last-layer norms, DB-MTL's averaged gradients) take them from :func:`task_jacobians` and
:meth:`GramianEngine.gradients` here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from polytask.balancers.base import graph_leaves, unscaled
from polytask.distributed import all_reduce_blocks, world

Mode = Literal["features", "params"]
"""The inputs a Gramian is taken over: the shared features or the shared parameters."""
MODES: tuple[str, ...] = get_args(Mode)


def _zeros_like_rows(count: int, tensor: Tensor) -> Tensor:
    return torch.zeros((count, *tensor.shape), dtype=tensor.dtype, device=tensor.device)


def task_jacobians(losses: Sequence[Tensor], inputs: Sequence[Tensor]) -> list[Tensor]:
    """``∂Lᵢ/∂input`` stacked over tasks (shape ``T × input.shape``) for each input.

    One retained backward per task: autograd visits only the nodes between ``Lᵢ`` and the inputs,
    so for ``inputs=[features]`` each call runs through task i's head alone (a batched vmap call
    would push all T cotangents through every head, T² head work; it measured slower on CPU).
    Inputs a loss does not reach get zeros.
    """
    return _stacked(_task_rows(losses, inputs, [[] for _ in losses]), inputs)


def _task_rows(
    losses: Sequence[Tensor], inputs: Sequence[Tensor], extra: Sequence[Sequence[Tensor]]
) -> list[Sequence[Tensor | None]]:
    """Per task, the gradients of its loss with respect to ``inputs`` and its ``extra`` leaves."""
    return [
        torch.autograd.grad(loss, [*inputs, *more], retain_graph=True, allow_unused=True)
        if loss.requires_grad
        else (None,) * (len(inputs) + len(more))
        for loss, more in zip(losses, extra, strict=True)
    ]


def _stacked(rows: Sequence[Sequence[Tensor | None]], inputs: Sequence[Tensor]) -> list[Tensor]:
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


def gramian_of(blocks: Iterable[Tensor], scale: Tensor | float = 1.0) -> Tensor:
    """Σ_blocks ``B Bᵀ`` over T×… Jacobian blocks, returned as a float64 T×T matrix; blocks of
    gradients taken under a loss ``scale`` are divided by it first, in (at least) float32, so
    the Gramian is that of the true gradients (not ``scale²`` times it, which would also
    overflow float32 sooner)."""
    total: Tensor | None = None
    for block in blocks:
        flat = unscaled(block.reshape(block.shape[0], -1), scale)
        part = (flat @ flat.T).double()
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no gradient blocks to build a Gramian from")
    return total


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
                w = _on(weights, parts[0][1])
                total = parts[0][1] * w[parts[0][0]]
                for task, grad in parts[1:]:
                    total = total.add_(grad, alpha=float(weights[task]))
                _accumulate(leaf, total)


def _on(weights: Tensor, like: Tensor) -> Tensor:
    """The T host weights on ``like``'s device and dtype, copied without waiting for the
    device (a blocking host-to-device copy would be a synchronisation)."""
    return weights.to(device=like.device, non_blocking=True).to(like.dtype)


def _weighted_rows(weights: Tensor, block: Tensor) -> Tensor:
    """``Σᵢ wᵢ blockᵢ`` over the first dimension, in the block's dtype."""
    w = _on(weights, block)
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
    rows = _task_rows(losses, inputs, per_task)
    stacked = _stacked(rows, inputs)
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


def shared_list(shared_params: Iterable[Tensor] | None) -> list[Tensor]:
    """Shared parameters that require grad, as a list; ``ValueError`` when none were given."""
    if shared_params is None:
        raise ValueError("mode 'params' needs shared_params=model.shared_parameters()")
    params = [p for p in shared_params if p.requires_grad]
    if not params:
        raise ValueError("mode 'params': shared_params holds no parameter requiring grad")
    return params


def check_mode(owner: str, mode: str, supported: Sequence[str] = MODES) -> str:
    """Return ``mode`` or raise a ``ValueError`` naming the supported ones."""
    if mode not in supported:
        raise ValueError(f"{owner} supports mode {' or '.join(map(repr, supported))}, got {mode!r}")
    return mode


def weighted_backward(stacked: Tensor, weights: Tensor) -> None:
    """The ordinary backward of ``Σᵢ wᵢ Lᵢ`` (``stacked``: the losses)."""
    (stacked * _on(weights, stacked)).sum().backward()


class GramianEngine:
    """Per-task gradients in ``mode`` (``"features"`` or ``"params"``), their Gramian, and the
    update ``Σᵢ wᵢ∇Lᵢ`` written into ``.grad``.

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
    """

    def __init__(self, mode: str = "features", reuse_jacobian: bool = True) -> None:
        self.mode = check_mode("the Gramian engine", mode)
        self.reuse_jacobian = bool(reuse_jacobian)

    def gradients(
        self,
        losses: Sequence[Tensor],
        shared_params: Sequence[Tensor] | None,
        features: Tensor | None,
        hold: bool | None = None,
    ) -> tuple[list[Tensor], HeldGradients | None]:
        """The T×… Jacobian blocks of ``mode`` (one per input) and, when held (``hold``,
        default ``reuse_jacobian``), every gradient the update needs (:func:`task_gradients`).
        Retains the graph."""
        hold = self.reuse_jacobian if hold is None else hold
        if self.mode == "features":
            if features is None:
                raise ValueError("mode 'features' needs features=<shared representation>")
            return task_gradients(losses, "features", None, features, hold)
        return task_gradients(losses, "params", shared_list(shared_params), features, hold)

    def gramian(
        self,
        losses: Sequence[Tensor],
        shared_params: Sequence[Tensor] | None,
        features: Tensor | None,
        scale: Tensor | float = 1.0,
        summed_with: Tensor | None = None,
    ) -> tuple[Tensor, HeldGradients | None]:
        """The float64 T×T Gramian of the true task gradients in ``mode`` (those taken under a
        loss ``scale`` divided by it, :func:`gramian_of`), and the held gradients (still
        scaled: they are what the update writes). ``summed_with``: a 1-d tensor (each
        process's loss values) summed over the processes, in place, in the same collective
        as the Gramian's or the gradient blocks'.

        Under ``torchrun`` (:mod:`polytask.distributed`; ``losses``: each process's part of
        the global losses) this is the Gramian of the global batch on every process:
        ``features`` mode sums the T×T matrix over the processes (it is a sum over samples, and
        each process holds its own samples' representation gradients); ``params`` mode sums the
        T×P per-task gradient blocks first (the Gramian of a sum is not the sum of Gramians)
        and holds nothing: the update is the ordinary backward of the local losses, whose
        gradients the trainer sums over the processes."""
        distributed = world().size > 1
        hold = False if distributed else None
        blocks, held = self.gradients(losses, shared_params, features, hold)
        extra = [summed_with] if distributed and summed_with is not None else []
        if distributed and self.mode == "params":
            summed = all_reduce_blocks([*blocks, *extra])
            blocks, extra = summed[: len(blocks)], summed[len(blocks) :]
        gramian = gramian_of(blocks, scale)
        if distributed and self.mode == "features":
            gramian, *extra = all_reduce_blocks([gramian, *extra])
        if summed_with is not None and extra:
            summed_with.copy_(extra[0])
        return gramian, held

    @staticmethod
    def write(stacked: Tensor, weights: Tensor, held: HeldGradients | None) -> None:
        """Accumulate ``Σᵢ wᵢ∇Lᵢ`` into ``.grad``: from ``held`` gradients, or by a backward."""
        if held is not None:
            held.apply(weights)
        else:
            weighted_backward(stacked, weights)
