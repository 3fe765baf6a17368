"""Multi-task relationship learning: per-task towers coupled by a learned task covariance.

Zhang & Yeung 2010, "A Convex Formulation for Learning Task Relationships in Multi-Task
Learning" (MTRL); Long et al. 2017, "Learning Multiple Tasks with Multilinear Relationship
Networks" (MRN, the deep form).

Each task has its own tower and head; nothing is shared. The coupled weights of task ``t``
(chosen by ``layers``) are flattened into column ``t`` of ``W`` (``d × T``). The penalty is
``strength · tr(W Ω⁻¹ Wᵀ)``, where the task covariance ``Ω`` is a buffer, constant between
updates; its closed-form update with ``W`` fixed (and detached) is

    Ω = (WᵀW + ε·I)^{1/2} / tr((WᵀW + ε·I)^{1/2}),

positive definite (the ridge ``ε`` keeps it invertible) with trace 1. Before the first update
``Ω = I / T`` (the penalty is then a weight decay). As in :mod:`polytask.models.soft`, the
representation is the stack of the tower outputs, ``(N, T, width)``, and
:meth:`shared_parameters` is empty, so ``params``-mode balancers are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from polytask.models.parts import Factory, HeadFactory
from polytask.models.towers import TaskTowers

Layers = Literal["last", "tower"]
LAYERS: tuple[Layers, ...] = ("last", "tower")


def covariance_update(w: Tensor, ridge: float) -> Tensor:
    """MTRL's closed-form ``Ω = (WᵀW + ε·I)^{1/2} / tr(·)`` for ``W`` of shape ``(d, T)``,
    computed in float64 by an eigendecomposition (no gradient flows through it)."""
    w = w.detach().to(torch.float64)
    gram = w.T @ w + ridge * torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
    values, vectors = torch.linalg.eigh(gram)
    root = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    root = (root + root.T) / 2
    return root / torch.trace(root)


def relationship_penalty(w: Tensor, omega: Tensor) -> Tensor:
    """``tr(W Ω⁻¹ Wᵀ)`` for ``W`` of shape ``(d, T)`` and a positive definite ``Ω`` (T × T)."""
    solved = torch.linalg.solve(omega.to(w.dtype), w.T)  # Ω⁻¹ Wᵀ, (T, d)
    return (w.T * solved).sum()


def correlations(omega: Tensor) -> Tensor:
    """``D^{-1/2} Ω D^{-1/2}`` with ``D = diag(Ω)``: the task correlations of a covariance."""
    scale = omega.diagonal().clamp(min=torch.finfo(omega.dtype).tiny).rsqrt()
    return omega * scale[:, None] * scale[None, :]


class MTRL(TaskTowers):
    """``heads[t](towers[t](x))`` per task; :meth:`regularization` is the MTRL penalty.

    The towers (and the heads of equal shape) start from the same initial values, so that
    their hidden units correspond. ``layers="last"``: the parameters (weight and bias) of the
    last module of the tower that holds parameters, i.e. the last hidden layer;
    ``layers="tower"``: every trainable parameter of the tower, concatenated. Every
    ``update_every``-th call of :meth:`regularization` in training mode (once per training
    step) first re-estimates ``Ω`` from the current ``W``.
    """

    omega: Tensor
    steps: Tensor

    def __init__(
        self,
        encoder_factory: Factory,
        encoder_width: int,
        output_sizes: Mapping[str, int],
        *,
        strength: float = 1e-3,
        ridge: float = 1e-3,
        update_every: int = 10,
        layers: Layers = "last",
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(
            encoder_factory, encoder_width, output_sizes, head_factory=head_factory, what="mtrl"
        )
        if not math.isfinite(strength) or strength < 0:
            raise ValueError(f"strength must be finite and >= 0, got {strength}")
        if not math.isfinite(ridge) or ridge <= 0:
            raise ValueError(f"ridge must be finite and > 0, got {ridge}")
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {update_every!r}")
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {LAYERS}, got {layers!r}")
        self.strength = float(strength)
        self.ridge = float(ridge)
        self.update_every = update_every
        self.layers: Layers = layers
        self._coupled = _coupled_names(next(iter(self.towers.values())), layers)
        if not self._coupled:
            raise ValueError("mtrl: the towers have no trainable parameter to couple")
        _start_alike(list(self.towers.values()))
        _start_alike(list(self.heads.values()))
        n = len(self.task_names)
        self.register_buffer("omega", torch.eye(n) / n)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def coupled_weights(self) -> Tensor:
        """``W`` (``d × T``): column ``t`` is task ``t``'s coupled tower weights, flattened."""
        return torch.stack(
            [
                torch.cat([self.towers[t].get_parameter(n).flatten() for n in self._coupled])
                for t in self.task_names
            ],
            dim=1,
        )

    @torch.no_grad()
    def update_relationships(self) -> None:
        """Re-estimate ``Ω`` from the current ``W`` (the closed-form step of MTRL); a
        non-finite ``W`` (a diverged run, which the trainer reports) leaves ``Ω`` as it is."""
        w = self.coupled_weights()
        if not bool(torch.isfinite(w).all()):
            return
        omega = covariance_update(w, self.ridge)
        self.omega.copy_(omega.to(self.omega.dtype))

    def regularization(self) -> Tensor:
        """``strength · tr(W Ω⁻¹ Wᵀ)`` (a scalar); in training mode, counts the step and first
        updates ``Ω`` every ``update_every`` steps."""
        if self.training:
            self.steps += 1
            if int(self.steps) % self.update_every == 0:
                self.update_relationships()
        return self.strength * relationship_penalty(self.coupled_weights(), self.omega)

    def relationships(self) -> tuple[tuple[str, ...], Tensor]:
        """The task names and the learned ``Ω`` as correlations (T × T, unit diagonal)."""
        return self.task_names, correlations(self.omega.detach().to(torch.float64))


@torch.no_grad()
def _start_alike(modules: list[nn.Module]) -> None:
    """Give every module the first one's initial values where its parameter and buffer shapes
    match (the towers always; heads of equal output size): hidden units of separately drawn
    towers do not correspond, so their weights could not be compared as columns of ``W``."""
    reference = modules[0].state_dict()
    shapes = {name: value.shape for name, value in reference.items()}
    for module in modules[1:]:
        if {name: value.shape for name, value in module.state_dict().items()} == shapes:
            module.load_state_dict(reference)


def _coupled_names(tower: nn.Module, layers: Layers) -> list[str]:
    """The names of the tower's trainable parameters that ``layers`` selects."""
    if layers == "tower":
        return [name for name, p in tower.named_parameters() if p.requires_grad]
    last: list[str] = []
    for prefix, module in tower.named_modules():
        own = [
            f"{prefix}.{name}" if prefix else name
            for name, p in module.named_parameters(recurse=False)
            if p.requires_grad
        ]
        if own:
            last = own
    return last
