"""Aligned-MTL: align the principal components of the task gradients.

Senushkin, Patakin, Kuznetsov & Konushin (2023), "Independent Component Alignment for Multi-Task
Learning" (CVPR).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from polytask.balancers.registry import register_balancer
from polytask.balancers.weighting import Weighting

Scale = Literal["min", "median", "rmse"]
SCALES: tuple[str, ...] = get_args(Scale)


def aligned_mtl_weights(gramian: Tensor, scale_mode: str = "min") -> Tensor:
    """``w = σ · V Λ^{-1/2} Vᵀ 1`` from ``G = VΛVᵀ`` (numerically nonzero eigenvalues only), so the
    aligned gradients ``Jᵀ V Λ^{-1/2} Vᵀ`` are orthogonal with equal norms ``σ``: the smallest
    singular value (``"min"``, the paper's default), the median or the root mean square."""
    g = gramian.double().cpu()
    g = (g + g.T) / 2
    values, vectors = torch.linalg.eigh(g)
    count = g.shape[0]
    top = float(values.max())
    if not top > 0:
        return torch.ones(count, dtype=torch.float64)
    keep = values > top * count * torch.finfo(torch.float32).eps
    values, vectors = values[keep], vectors[:, keep]
    sigma = {
        "min": values.min().sqrt(),
        "median": values.median().sqrt(),
        "rmse": values.mean().sqrt(),
    }[scale_mode]
    basis = vectors / values.sqrt() @ vectors.T
    return sigma * basis @ torch.ones(count, dtype=torch.float64)


@register_balancer("aligned_mtl", "aligned-mtl")
class AlignedMTL(Weighting):
    """Replace the task gradients by the closest orthogonal set with equal norms (a Procrustes
    problem on the Gramian's eigendecomposition) and sum them. Weights are invariant to scaling
    all losses together, not to scaling one.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        scale_mode: Scale = "min",
    ) -> None:
        super().__init__(task_names)
        if scale_mode not in SCALES:
            raise ValueError(f"scale_mode must be one of {SCALES}, got {scale_mode!r}")
        self.scale_mode = scale_mode

    def weights(self, gramian: Tensor, names: Sequence[str]) -> Tensor:
        return aligned_mtl_weights(gramian, self.scale_mode)
