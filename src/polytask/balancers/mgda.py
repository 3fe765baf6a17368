"""MGDA: the min-norm point of the convex hull of the task gradients.

Désidéri (2012), "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization";
Sener & Koltun (2018), "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS), whose
MGDA-UB upper bound is ``mode="features"`` here.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from polytask.balancers._qp import min_norm_simplex
from polytask.balancers.registry import register_balancer
from polytask.balancers.weighting import Weighting


@register_balancer("mgda", "mgda_ub")
class MGDA(Weighting):
    """Weights ``α = argmin_{α ∈ Δ} ‖Σᵢ αᵢ gᵢ‖²``, solved exactly (any number of tasks).

    The resulting direction ``d`` satisfies ``gᵢ·d ≥ ‖d‖² ≥ 0`` for every task: no task's loss
    increases to first order. Weights sum to 1 (as in the paper, not T). Not invariant to scaling
    one loss (the small-gradient task dominates); invariant to scaling all losses together.
    """

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return min_norm_simplex(gramian)
