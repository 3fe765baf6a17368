"""Soft parameter sharing: one tower per task, corresponding layers pulled together by a penalty.

Duong et al. 2015, "Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a Neural
Network Parser" (L2 distance between the towers' weights); Yang & Hospedales 2017, "Trace Norm
Regularised Deep Multi-Task Learning" (trace norm of the stacked weights).

No parameter is used by more than one task, so :meth:`shared_parameters` is empty: balancers in
``params`` mode have nothing to reconcile. The representation is the stack of the tower outputs,
``(N, T, width)``; task ``t`` reads slice ``[:, t]`` only, so ``features``-mode gradients of
different tasks are disjoint (well defined, but no gradient conflict to resolve). Towers interact
through :meth:`regularization` alone, which the trainer backpropagates next to the balanced
loss (see :meth:`MultiTaskModel.regularization`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import get_args

import torch
from torch import Tensor

from polytask.builtin_options import Penalty
from polytask.models.parts import Factory, HeadFactory
from polytask.models.towers import TaskTowers

PENALTIES: tuple[Penalty, ...] = get_args(Penalty)


class SoftSharing(TaskTowers):
    """``heads[t](towers[t](x))`` per task; ``regularization()`` couples corresponding layers.

    ``penalty="l2"``: Σ_layers Σ_t ‖W_t − mean_t W_t‖² (zero when the towers are equal).
    ``penalty="trace"``: Σ_layers ‖[vec W_1; …; vec W_T]‖_* (low rank ⇔ similar towers).
    Every parameter tensor of the tower (weights and biases) counts as a layer; the result is
    multiplied by ``strength``.
    """

    def __init__(
        self,
        encoder_factory: Factory,
        encoder_width: int,
        output_sizes: Mapping[str, int],
        *,
        penalty: Penalty = "l2",
        strength: float = 1e-3,
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(
            encoder_factory,
            encoder_width,
            output_sizes,
            head_factory=head_factory,
            what="soft sharing",
        )
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        if not math.isfinite(strength) or strength < 0:
            raise ValueError(f"strength must be finite and >= 0, got {strength}")
        self.penalty: Penalty = penalty
        self.strength = float(strength)

    def regularization(self) -> Tensor:
        """``strength`` × the penalty between corresponding tower layers (a scalar)."""
        towers = list(self.towers.values())
        terms = []
        for name in self.layer_names:
            stacked = torch.stack([tower.get_parameter(name).flatten() for tower in towers])
            if self.penalty == "l2":
                terms.append((stacked - stacked.mean(dim=0)).pow(2).sum())
            else:
                terms.append(torch.linalg.matrix_norm(stacked, ord="nuc"))
        if not terms:
            return torch.zeros(())
        return self.strength * torch.stack(terms).sum()
