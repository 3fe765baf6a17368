"""UPGrad: average of the projections of each task gradient onto the dual cone of all of them.

Quinton & Rey (2024), "Jacobian Descent for Multi-Objective Optimization" (the ``UPGrad``
aggregator of torchjd).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.balancers._qp import dual_cone_weights
from polytask.balancers.registry import register_balancer
from polytask.balancers.weighting import Weighting


@register_balancer("upgrad")
class UPGrad(Weighting):
    """``d = (1/T) Σᵢ π(gᵢ)`` with ``π`` the projection onto ``{x : gⱼ·x ≥ 0 ∀j}``.

    Each projection's weights come from a non-negative QP on the Gramian (solved exactly), so
    ``d`` conflicts with no task: ``gⱼ·d ≥ 0``. Not invariant to scaling one loss; invariant to
    scaling all losses together.
    """

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        count = gramian.shape[0]
        per_task = dual_cone_weights(gramian, torch.eye(count, dtype=torch.float64))
        return per_task.mean(dim=1)
