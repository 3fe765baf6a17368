"""IMTL-L: learned loss scales that equalise the scaled task losses (Liu et al. 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.balancers.registry import register_balancer
from polytask.balancers.uncertainty import LearnedScaleBalancer


@register_balancer("imtl_l", "imtl-l")
class IMTLLoss(LearnedScaleBalancer):
    """IMTL-L, the loss-balance half of impartial multi-task learning (Liu et al., ICLR 2021,
    "Towards impartial multi-task learning").

    Learnable ``s_i``, loss ``Σ e^{s_i}·L_i − s_i``, weights ``e^{s_i}``. The stationary point in
    ``s`` is ``e^{s_i}·L_i = 1``: scaled losses become equal, so a task whose loss is multiplied by
    a constant ends with a weight divided by it (scale-balanced).
    """

    def loss_term(self, losses: Tensor, s: Tensor) -> Tensor:
        return torch.exp(s) * losses - s

    def weight(self, s: Tensor) -> Tensor:
        return torch.exp(s)
