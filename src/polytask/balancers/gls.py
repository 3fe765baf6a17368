"""Geometric loss strategy (Chennupati et al., CVPR Workshops 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.balancers._common import LOG_EPS
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.registry import register_balancer


@register_balancer("gls", "geometric")
class GeometricLossStrategy(LossWeighting):
    """GLS from "MultiNet++: Multi-stream feature aggregation and geometric loss strategy for
    multi-task learning" (Chennupati, Sistu, Yogamani & Rawashdeh, CVPRW 2019).

    Minimises the geometric mean ``(Π L_i)^(1/T)`` over the ``T`` tasks present, computed as
    ``exp(mean(log(L_i + ε)))`` with ``ε = 1e-8`` so a zero loss stays finite; losses must be
    non-negative. Its gradient is ``Σ w_i ∇L_i`` with the implied weights
    ``w_i = G / (T·(L_i + ε))`` (``G`` the geometric mean), which are returned: ``w_i·L_i`` is the
    same for every task, so multiplying one loss by ``c`` divides its weight by ``c^(1-1/T)``.
    Stateless.
    """

    nonnegative_losses = True

    def factors(self, names: Sequence[str], values: Tensor) -> Tensor:
        shifted = values + LOG_EPS
        return torch.exp(torch.log(shifted).mean()) / (len(names) * shifted)
