"""Small exact solvers on a T×T Gramian, shared by the gradient-balancing methods.

Every problem here is a quadratic in ``‖Jᵀa‖² = aᵀGa``. Factoring ``G = M Mᵀ`` (eigendecomposition,
negative round-off eigenvalues clipped) turns them into non-negative least squares, which
scipy's Lawson–Hanson active-set solver handles exactly (finite termination, no tolerance knob).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import numpy as np
import torch
from scipy.optimize import nnls
from threadpoolctl import ThreadpoolController
from torch import Tensor


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Built once (inspecting the loaded libraries takes ~5 ms); NumPy's and SciPy's BLAS are
    # loaded by the imports above, before the first solve.
    return ThreadpoolController()


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block with every BLAS library (OpenBLAS, MKL, BLIS) limited to one thread.

    The solves here are on T×T matrices, far too small for threads to help; with OpenBLAS's
    pool active (another solver started it, or other work holds the cores) they only wait on it:
    SciPy's SLSQP in CAGrad took ~250 ms instead of ~1.5 ms at T = 40. Restored on exit;
    ~50 µs per use.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def normalized(gramian: Tensor) -> Tensor:
    """``G`` divided by its largest diagonal entry (argmins are invariant, conditioning is not)."""
    scale = torch.diagonal(gramian).max()
    return gramian / scale if scale > 0 else gramian


def factor(gramian: Tensor) -> np.ndarray:
    """``M`` (T×r, float64) with ``M Mᵀ = G`` up to round-off, over the numerically nonzero
    eigenvalues of the symmetric PSD ``G``."""
    g = gramian.detach().double().cpu()
    g = (g + g.T) / 2
    values, vectors = torch.linalg.eigh(g)
    top = float(values.max()) if values.numel() else 0.0
    keep = values > max(top, 0.0) * g.shape[0] * 1e-13
    if not bool(keep.any()):
        return np.zeros((g.shape[0], 1))
    return (vectors[:, keep] * values[keep].sqrt()).numpy()


def min_norm_simplex(gramian: Tensor) -> Tensor:
    """``argmin_{α ∈ Δ} αᵀGα``: the convex combination of the task gradients of least norm.

    Exact via NNLS: minimising ``‖Mᵀλ‖² + (1ᵀλ − 1)²`` over ``λ ≥ 0`` and writing ``λ = sα`` with
    ``α ∈ Δ`` gives the value ``‖Mᵀα‖²/(1 + ‖Mᵀα‖²)``, increasing in ``‖Mᵀα‖²``, so ``λ/1ᵀλ`` is
    a min-norm point.
    """
    count = gramian.shape[0]
    m = factor(normalized(gramian))
    a = np.vstack([m.T, np.ones((1, count))])
    b = np.zeros(a.shape[0])
    b[-1] = 1.0
    lam, _ = nnls(a, b, maxiter=50 * count + 100)
    total = lam.sum()
    if not total > 0:
        return torch.full((count,), 1.0 / count, dtype=torch.float64)
    return torch.from_numpy(lam / total)


def dual_cone_weights(gramian: Tensor, u: Tensor) -> Tensor:
    """Weights ``u + v`` of the projection of ``Jᵀu`` onto the dual cone ``{x : Jx ≥ 0}``.

    The projection is ``Jᵀ(u + v)`` with ``v = argmin_{v ≥ 0} ½‖Mᵀ(v + u)‖²`` (the QP dual), an
    NNLS problem. ``u`` may hold several columns (T×k): one projection per column.
    """
    m = factor(normalized(gramian))
    u_np = u.detach().double().cpu().numpy()
    columns = u_np if u_np.ndim == 2 else u_np[:, None]
    out = np.empty_like(columns)
    for k in range(columns.shape[1]):
        v, _ = nnls(m.T, -(m.T @ columns[:, k]), maxiter=50 * m.shape[0] + 100)
        out[:, k] = columns[:, k] + v
    return torch.from_numpy(out if u_np.ndim == 2 else out[:, 0])
