"""Geometric loss strategy (Chennupati et al., CVPR Workshops 2019)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from polytask.balancers._common import LOG_EPS, scaled, stack_losses
from polytask.balancers.base import Balancer, ScaledLosses, register_balancer


@register_balancer("gls", "geometric")
class GeometricLossStrategy(Balancer):
    """GLS from "MultiNet++: Multi-stream feature aggregation and geometric loss strategy for
    multi-task learning" (Chennupati, Sistu, Yogamani & Rawashdeh, CVPRW 2019).

    Minimises the geometric mean ``(Π L_i)^(1/T)`` over the ``T`` tasks present, computed as
    ``exp(mean(log(L_i + ε)))`` with ``ε = 1e-8`` so a zero loss stays finite; losses must be
    non-negative. Its gradient is ``Σ w_i ∇L_i`` with the implied weights
    ``w_i = G / (T·(L_i + ε))`` (``G`` the geometric mean), which are returned: ``w_i·L_i`` is the
    same for every task, so multiplying one loss by ``c`` divides its weight by ``c^(1-1/T)``.
    Stateless.
    """

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_params: Iterable[torch.nn.Parameter] | None = None,
        features: Tensor | None = None,
    ) -> dict[str, float]:
        stacked = stack_losses(self, losses, nonnegative=True)
        if stacked is None:
            return {}
        names, values = stacked
        shifted = values + LOG_EPS
        geometric = torch.exp(torch.log(shifted).mean())
        geometric.backward()
        weights = geometric.detach() / (len(names) * shifted.detach())
        return dict(zip(names, weights.tolist(), strict=True))

    def scaled_losses(self, losses: Mapping[str, Tensor]) -> ScaledLosses | None:
        """Terms ``wᵢ·Lᵢ`` with the implied weights above (their gradient is the geometric
        mean's)."""
        stacked = stack_losses(self, losses, nonnegative=True)
        if stacked is None:
            return None
        names, values = stacked
        shifted = values.detach() + LOG_EPS
        weights = torch.exp(torch.log(shifted).mean()) / (len(names) * shifted)
        return scaled(names, values, weights)

    def state_dict(self) -> dict[str, Any]:
        return {}
