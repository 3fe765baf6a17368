"""Nash-MTL: the Nash bargaining solution between tasks.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya (2022), "Multi-Task Learning as a
Bargaining Game" (ICML).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from polytask.balancers.registry import register_balancer
from polytask.balancers.weighting import Weighting


class NashSolveError(RuntimeError):
    """Newton's method did not reach ``Gα = 1/α``."""


def _objective(c: Tensor, a: Tensor) -> float:
    return float(0.5 * a @ c @ a - torch.log(a).sum())


def solve_cosine(cosines: Tensor, tol: float = 1e-12, max_iter: int = 100) -> tuple[Tensor, float]:
    """``a > 0`` with ``C a = 1/a`` for a unit-diagonal PSD ``C``, and the residual reached.

    ``C a = 1/a`` is the stationarity condition of the strictly convex
    ``½ aᵀCa − Σ log aᵢ``; damped Newton (fraction-to-boundary and Armijo backtracking) converges
    quadratically. A solution exists unless 0 lies in the convex hull of the gradients
    (Pareto-stationary point), where the iterates diverge.
    """
    c = cosines.double()
    count = c.shape[0]
    a = torch.full((count,), (count / float(c.sum().clamp_min(1e-12))) ** 0.5, dtype=c.dtype)
    eye = torch.eye(count, dtype=c.dtype)
    residual = float("inf")
    for _ in range(max_iter):
        ca = c @ a
        residual = float((a * ca - 1).abs().max())
        if residual < tol:
            break
        grad = ca - 1 / a
        step, info = torch.linalg.solve_ex(c + eye / a**2, -grad)
        if int(info) != 0 or not bool(torch.isfinite(step).all()):
            break  # Hessian numerically singular: the iterates are diverging
        t = 1.0
        shrink = step < 0
        if bool(shrink.any()):
            t = min(1.0, 0.99 * float((-a[shrink] / step[shrink]).min()))
        f0, slope = _objective(c, a), float(grad @ step)
        slack = 1e-13 * (1 + abs(f0))  # round-off in f near the optimum
        while t > 1e-12 and _objective(c, a + t * step) > f0 + 1e-4 * t * slope + slack:
            t *= 0.5
        a = a + t * step
    else:
        residual = float((a * (c @ a) - 1).abs().max())
    return a, residual


def nash_weights(gramian: Tensor, tol: float = 1e-9) -> Tensor:
    """``α > 0`` with ``Gα = 1/α``, solved on the cosine matrix: with ``N = diag(‖gᵢ‖)``,
    ``α = N⁻¹a`` where ``(N⁻¹GN⁻¹) a = 1/a`` — exact rescaling, so loss scales do not matter.

    Tasks with a zero gradient cannot bargain; they get weight 0 (with a warning). A failed solve
    raises :class:`NashSolveError`.
    """
    g = gramian.double().cpu()
    norms = torch.diagonal(g).clamp_min(0).sqrt()
    live = norms > norms.max() * 1e-12
    weights = torch.zeros_like(norms)
    if not bool(live.any()):
        return weights
    if not bool(live.all()):
        warnings.warn(
            f"Nash-MTL: task index(es) {(~live).nonzero().flatten().tolist()} have a zero "
            "gradient; they get weight 0",
            RuntimeWarning,
            stacklevel=3,
        )
    n = norms[live]
    cosines = g[live][:, live] / n[:, None] / n[None, :]
    a, residual = solve_cosine(cosines)
    if not residual < tol or not bool(torch.isfinite(a).all()):
        raise NashSolveError(
            f"Nash-MTL: Newton solve of Gα = 1/α failed (max residual |αᵢ(Gα)ᵢ - 1| = "
            f"{residual:.3g}); the task gradients are likely Pareto-stationary"
        )
    weights[live] = a / n
    return weights


@register_balancer("nash_mtl", "nash-mtl")
class NashMTL(Weighting):
    """Weights ``α > 0`` solving ``Gα = 1/α``: each task's improvement ``gᵢ·d`` equals ``1/αᵢ``.

    Solved by damped Newton on the normalised (cosine) Gramian, without cvxpy. Invariant to
    scaling one loss: ``Lᵢ → sLᵢ`` gives ``αᵢ → αᵢ/s`` and the same update. If the solve fails
    (Pareto-stationary gradients), ``on_failure="warn"`` (default) warns and uses the previous
    step's weights (equal weights 1/T when there are none); ``"raise"`` raises.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        on_failure: Literal["warn", "raise"] = "warn",
    ) -> None:
        super().__init__(task_names)
        if on_failure not in ("warn", "raise"):
            raise ValueError(f"on_failure must be 'warn' or 'raise', got {on_failure!r}")
        self.on_failure = on_failure
        self.previous: tuple[list[str], list[float]] | None = None  # the fallback

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        try:
            weights = nash_weights(gramian)
        except NashSolveError as exc:
            if self.on_failure == "raise":
                raise
            if self.previous is not None and self.previous[0] == list(names):
                weights, what = torch.tensor(self.previous[1], dtype=torch.float64), "the "
                what += "previous step's weights"
            else:
                weights = torch.full((len(names),), 1.0 / len(names), dtype=torch.float64)
                what = "equal weights 1/T"
            warnings.warn(f"{exc}; using {what} instead", RuntimeWarning, stacklevel=3)
        if bool(torch.isfinite(weights).all()):
            self.previous = (list(names), weights.tolist())
        return weights

    def state_dict(self) -> dict[str, Any]:
        names, weights = self.previous if self.previous is not None else (None, None)
        return {"previous_names": names, "previous_weights": weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # states written before the redesign kept the last weights as "cached_*"
        names = state.get("previous_names", state.get("cached_names"))
        weights = state.get("previous_weights", state.get("cached_weights"))
        self.previous = None if names is None else (list(names), [float(w) for w in weights])
