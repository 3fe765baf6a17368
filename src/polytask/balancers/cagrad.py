"""CAGrad: Conflict-Averse Gradient descent.

Liu, Liu, Jin, Stone & Liu (2021), "Conflict-Averse Gradient Descent for Multi-task Learning"
(NeurIPS).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from polytask.balancers._qp import normalized, single_blas_thread
from polytask.balancers.registry import register_balancer
from polytask.balancers.weighting import Weighting


def cagrad_weights(gramian: Tensor, c: float, rescale: bool = True) -> Tensor:
    """Weights of ``d = g₀ + (c‖g₀‖/‖g_w‖) g_w`` with ``g₀`` the mean gradient and
    ``w = argmin_{w ∈ Δ} g_w·g₀ + c‖g₀‖‖g_w‖`` (the dual of the paper's problem);
    divided by ``1 + c²`` when ``rescale`` (the authors' default)."""
    count = gramian.shape[0]
    mean = torch.full((count,), 1.0 / count, dtype=torch.float64)
    if c == 0:
        return mean
    g = normalized(gramian).double().cpu().numpy()
    b = g @ mean.numpy()
    g0_norm = math.sqrt(max(float(mean.numpy() @ b), 0.0))
    radius = c * g0_norm

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        gw = g @ w
        norm = math.sqrt(max(float(w @ gw), 1e-30))
        return float(w @ b) + radius * norm, b + radius * gw / norm

    with single_blas_thread():  # also when called directly, outside the engine
        result = minimize(
            objective,
            mean.numpy(),
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * count,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": np.ones_like}],
            options={"ftol": 1e-12, "maxiter": 500},
        )
    if not result.success:
        warnings.warn(
            f"CAGrad: SLSQP did not converge ({result.message}); using its last iterate",
            RuntimeWarning,
            stacklevel=3,
        )
    w = np.clip(result.x, 0.0, None)
    w = w / w.sum()
    gw_norm = math.sqrt(max(float(w @ g @ w), 0.0))
    lam = radius / gw_norm if gw_norm > 0 else 0.0
    weights = mean + lam * torch.from_numpy(w)
    return weights / (1.0 + c**2) if rescale else weights


@register_balancer("cagrad")
class CAGrad(Weighting):
    """Maximise the worst task's improvement within a ball of radius ``c‖g₀‖`` around the mean
    gradient ``g₀``. ``c = 0`` is the mean gradient (weights ``1/T``); larger ``c`` moves towards
    MGDA. Not invariant to scaling one loss; invariant to scaling all losses together.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        c: float = 0.5,
        rescale: bool = True,
    ) -> None:
        super().__init__(task_names)
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)
        self.rescale = bool(rescale)

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return cagrad_weights(gramian, self.c, self.rescale)
