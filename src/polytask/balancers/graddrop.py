"""GradDrop: Gradient Sign Dropout.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov (2020), "Just Pick a Sign: Optimizing
Deep Multitask Models with Gradient Sign Dropout" (NeurIPS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from polytask.balancers.base import Balancer, Kind, Step, check_finite
from polytask.balancers.engine import GramianEngine, Mode
from polytask.balancers.registry import register_balancer
from polytask.balancers.rng import generator_state, load_generator_state, seeded_generator
from polytask.distributed import all_reduce_blocks, finite_flags, world


def sign_masks(signals: Tensor, generator: torch.Generator, eps: float = 1e-7) -> Tensor:
    """Keep masks (T × …, bool) from per-task gradient signals ``S`` (T × …).

    Sign purity ``P = ½(1 + ΣᵢSᵢ / Σᵢ|Sᵢ|)``; with ``U ~ Uniform(0,1)`` per coordinate, task i
    keeps a coordinate when ``P > U`` and ``Sᵢ > 0``, or ``P < U`` and ``Sᵢ < 0``.
    """
    purity = 0.5 * (1 + signals.sum(0) / (signals.abs().sum(0) + eps))
    uniform = torch.rand(purity.shape, generator=generator, dtype=purity.dtype).to(purity.device)
    positive = (purity > uniform).unsqueeze(0)
    return (positive & (signals > 0)) | (~positive & (purity < uniform) & (signals < 0))


def masked_sum(grads: Tensor, generator: torch.Generator, leak: float, eps: float = 1e-7) -> Tensor:
    """``dropped(grads, sign_masks(grads, generator), leak)`` without T×… masks.

    Summed over tasks the kept gradients are the positive parts where ``P > U`` and the
    negative parts where ``P < U``, and ``Σᵢ|Sᵢ| = Σ⁺ − Σ⁻``: two reductions over the T×P block
    instead of masks, factors and products of its size (same random draws).
    """
    positive = grads.clamp(min=0).sum(0)
    negative = grads.clamp(max=0).sum(0)
    purity = 0.5 * (1 + (positive + negative) / (positive - negative + eps))
    uniform = torch.rand(purity.shape, generator=generator, dtype=purity.dtype).to(purity.device)
    kept = torch.where(purity > uniform, positive, torch.where(purity < uniform, negative, 0))
    if leak == 0:
        return kept
    return leak * (positive + negative) + (1 - leak) * kept


def dropped(grads: Tensor, masks: Tensor, leak: float) -> Tensor:
    """``Σᵢ (leak + (1 − leak)·Mᵢ) ⊙ ∇ᵢ`` (masks broadcast over ``grads``' batch dimension)."""
    factor = leak + (1 - leak) * masks.to(grads.dtype)
    while factor.dim() < grads.dim():
        factor = factor.unsqueeze(1)
    return (factor * grads).sum(0)


@register_balancer("graddrop")
class GradDrop(Balancer):
    """Drop, per coordinate, the gradients of the sign that is in the minority (randomly, with
    probability given by sign purity). Needs per-coordinate signs, so it uses task Jacobians, not
    the Gramian, and returns nominal weights 1.0 (it masks, it does not weight).

    Modes:
    ``features`` (default, as in the paper): GradDrop acts on the shared representation; signals
    are the batch sums of ``sign(features) ⊙ ∇ᵢ``; the masked sum is backpropagated through the
    trunk together with ``Σᵢ Lᵢ`` for the heads in one backward call (heads get the ordinary
    gradient of their own loss).
    ``params``: masks over the coordinates of the shared parameters' T×P Jacobian. With
    ``reuse_jacobian`` (default) the shared ``.grad`` is the masked sum formed from that Jacobian
    and the heads get ``Σᵢ ∇Lᵢ`` from the per-task gradients computed with it: no second
    backward (see :class:`~polytask.balancers.engine.GramianEngine` for the contract and the
    fallback). With ``reuse_jacobian=False``, an ordinary backward of ``Σᵢ Lᵢ`` and then the
    shared ``.grad`` corrected to the masked sum. Neither suits DDP's overlapping all-reduce
    (both write ``.grad`` outside a backward).
    ``leak`` ∈ [0, 1] lets each task's gradient through regardless of the mask.

    Under ``torchrun`` (:mod:`polytask.distributed`) it equals one process on the global batch:
    every process draws the same uniforms (the generator's state is the same everywhere) and
    takes its signs from the global per-task gradients. In ``features`` mode the signals are a
    sum over samples, so the T×d signals are summed over the processes (one collective, with
    the finiteness flags) and each process masks its own rows; in ``params`` mode the T×P
    blocks are summed over the processes (one collective), nothing is held, and the masked sum
    of the global blocks is added by rank 0 alone while every process removes its own part of
    ``Σᵢ∇Lᵢ`` (the trainer then sums the gradients).
    """

    randomized = True

    kind: ClassVar[Kind] = "jacobian"

    def __init__(
        self,
        task_names: Sequence[str],
        mode: Mode = "features",
        leak: float = 0.0,
        seed: int | None = None,
        reuse_jacobian: bool = True,
    ) -> None:
        super().__init__(task_names)
        self.engine = GramianEngine(mode, reuse_jacobian)
        self.mode = mode
        if not 0 <= leak <= 1:
            raise ValueError(f"leak must be in [0, 1], got {leak}")
        self.leak = float(leak)
        self.generator = seeded_generator(seed)

    def step(self, step: Step) -> Tensor:
        names, losses, values, shared_params, features = step[:5]
        ones = torch.ones(len(names), dtype=torch.float64)
        here = world()
        hold = False if here.size > 1 else None  # under torchrun: the ordinary backward
        blocks, held = self.engine.gradients(losses, shared_params, features, hold)
        total = values.sum()
        if self.mode == "features":
            assert features is not None
            grads = blocks[0]
            signals = (features.detach().sign().unsqueeze(0) * grads).sum(1)
            if here.size > 1:  # the global signals (a sum over samples), checked alike
                signals, flags = all_reduce_blocks([signals, finite_flags(grads).to(signals)])
                check_finite("gradient", names, flags)
            else:
                check_finite("gradient", names, blocks)
            combined = dropped(grads, sign_masks(signals, self.generator), self.leak)
            # Σᵢ Lᵢ already sends Σᵢ ∇ᵢ into features; add the difference to the masked sum.
            torch.autograd.backward(
                [total, features], [torch.ones_like(total), combined - grads.sum(0)]
            )
            return ones
        assert shared_params is not None
        local = blocks  # this process's part of the per-task gradients
        blocks = all_reduce_blocks(blocks)  # the global ones (the same in one process)
        check_finite("gradient", names, blocks)
        shared = [p for p in shared_params if p.requires_grad]
        if held is not None:
            ids = {id(p) for p in shared}

            def masked(leaf: Tensor, block: Tensor) -> Tensor | None:
                if id(leaf) not in ids:
                    return None  # trunk leaves outside shared_params: plain sum
                return masked_sum(block, self.generator, self.leak)

            held.apply(ones, combine=masked)
            return ones
        total.backward()
        with torch.no_grad():
            for p, block, mine in zip(shared, blocks, local, strict=True):
                masks = sign_masks(block, self.generator)
                kept = dropped(block.unsqueeze(1), masks, self.leak)[0]
                if not here.is_main:  # rank 0 adds the global masked sum, each its own part
                    kept = torch.zeros_like(kept)
                correction = kept - mine.sum(0)
                p.grad = correction if p.grad is None else p.grad + correction
        return ones

    def state_dict(self) -> dict[str, Any]:
        return generator_state(self.generator)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_generator_state(self.generator, state)
