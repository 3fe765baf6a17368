"""IMTL-G: impartial multi-task learning, gradient part.

Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang (2021), "Towards Impartial Multi-task Learning"
(ICLR).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.balancers._qp import normalized
from polytask.balancers.registry import register_balancer
from polytask.balancers.weighting import Weighting


def imtl_g_weights(gramian: Tensor) -> Tensor:
    """The paper's closed form ``α₂:T = g₁Uᵀ(DUᵀ)⁻¹``, ``α₁ = 1 − Σα₂:T`` with
    ``D = [g₁ − gᵢ]`` and ``U = [u₁ − uᵢ]`` (``uᵢ = gᵢ/‖gᵢ‖``), all entries read off the Gramian
    (least squares where ``DUᵀ`` is singular)."""
    g = normalized(gramian).double().cpu()
    count = g.shape[0]
    if count == 1:
        return torch.ones(1, dtype=torch.float64)
    norms = torch.diagonal(g).clamp_min(1e-30).sqrt()
    gu = g / norms[None, :]  # gu[a, b] = gₐ·u_b
    g1_u = gu[0, 0] - gu[0, 1:]  # g₁·(u₁ − uⱼ)
    d_u = gu[0, 0] - gu[0, None, 1:] - gu[1:, 0, None] + gu[1:, 1:]  # (g₁ − gᵢ)·(u₁ − uⱼ)
    rest = torch.linalg.lstsq(d_u.T, g1_u[:, None]).solution[:, 0]
    return torch.cat([(1 - rest.sum())[None], rest])


@register_balancer("imtl_g", "imtl-g")
class IMTLG(Weighting):
    """Weights (summing to 1) making the update's projection onto every unit task gradient equal.

    The update's line is invariant to scaling one loss (its length, and with the paper's
    ``Σα = 1`` normalisation even its sign, may change: when ``1ᵀG⁻¹‖g‖ < 0`` every projection
    is negative); weights are invariant to scaling all losses together. Weights can be
    negative, as in the paper. The full IMTL (with IMTL-L's loss scales) is ``imtl``.
    """

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return imtl_g_weights(gramian)


#: The full IMTL of the paper: IMTL-L's scaled losses ``e^{sᵢ}·Lᵢ`` (``s`` learned by IMTL-L's
#: own objective ``Σ e^{sᵢ}·Lᵢ − sᵢ``) combined by IMTL-G. Returned weights are the effective
#: ``αᵢ·e^{sᵢ}`` on each ``∇Lᵢ``.
register_balancer("imtl", losses_from="imtl_l")(IMTLG)
