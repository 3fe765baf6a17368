"""Wrappers composed around a balancer by ``build_balancer``: ``update_every`` (reuse the
weights between recomputations) and ``losses_from`` (a loss-weighting method's scaled losses
balanced by a gradient method, as in the papers: IMTL = IMTL-L's scaled losses combined by
IMTL-G; uncertainty weighting or DWA feeding PCGrad, CAGrad, …)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polytask.balancers.base import Balancer, Step
from polytask.balancers.engine import weighted_backward
from polytask.balancers.loss_weighting import LossWeighting


class Wrapper(Balancer):
    """A balancer around ``inner``: its steps, parameters, epochs and state pass through."""

    def __init__(self, inner: Balancer) -> None:
        super().__init__(inner.task_names)
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind  # type: ignore[misc]
        self.randomized = inner.randomized
        self.data_parallel = inner.data_parallel

    @property
    def mode(self) -> str | None:  # type: ignore[override]
        return self.inner.mode

    @property
    def needs_shared_params(self) -> bool:
        return self.inner.needs_shared_params

    def step(self, step: Step) -> Tensor:
        return self.inner.step(step)

    def parameters(self) -> list[Tensor]:
        return self.inner.parameters()

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:
        self.inner.epoch_end(mean_losses)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)


class UpdateEvery(Wrapper):
    """Recompute the weights every ``every`` steps; in between, reuse the last ones (for the
    same tasks) at the cost of one plain backward of ``Σᵢ wᵢLᵢ``."""

    def __init__(self, inner: Balancer, every: int) -> None:
        if int(every) != every or every < 1:
            raise ValueError(f"update_every must be a positive integer, got {every!r}")
        super().__init__(inner)
        self.every = int(every)
        self._step = 0
        self._cached_names: list[str] | None = None
        self._cached_weights: list[float] | None = None

    def step(self, step: Step) -> Tensor:
        if (
            self._cached_weights is not None
            and self._cached_names == step.names
            and self._step % self.every != 0
        ):
            weights = torch.tensor(self._cached_weights, dtype=torch.float64)
            weighted_backward(step.values, weights)
        else:
            weights = self.inner.step(step)
            self._cached_names, self._cached_weights = list(step.names), weights.tolist()
        self._step += 1
        return weights

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.inner.state_dict(),
            "step": self._step,
            "cached_names": None if self._cached_names is None else list(self._cached_names),
            "cached_weights": None if self._cached_weights is None else list(self._cached_weights),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)
        self._step = int(state.get("step", 0))  # absent when saved without update_every
        names, weights = state.get("cached_names"), state.get("cached_weights")
        self._cached_names = None if names is None else list(names)
        self._cached_weights = None if weights is None else [float(w) for w in weights]


class LossesFrom(Wrapper):
    """Each step the loss-weighting method ``loss_source`` scales the losses, ``Lᵢ → cᵢ·Lᵢ``,
    and ``inner`` balances the gradients of those terms. The source's own parameters (UW's and
    IMTL-L's log-scales) are trained by its own objective only, through one extra backward
    restricted to them. Returned weights are the effective ``wᵢ·cᵢ`` on each ``∇Lᵢ``; the
    source's state is saved under ``"losses_from"``."""

    def __init__(self, inner: Balancer, loss_source: LossWeighting) -> None:
        super().__init__(inner)
        self.loss_source = loss_source
        self.randomized = inner.randomized or loss_source.randomized
        self.data_parallel = inner.data_parallel and loss_source.data_parallel
        self.nonnegative_losses = loss_source.nonnegative_losses  # type: ignore[misc]

    def step(self, step: Step) -> Tensor:
        scaled = self.loss_source.scaled(step.names, step.losses, step.host_values)
        terms = list(scaled.terms.values())
        weights = self.inner.step(step._replace(losses=terms, values=torch.stack(terms)))
        if scaled.objective is not None:
            objective = scaled.objective * step.scale  # of detached losses (base.Step)
            torch.autograd.backward(objective, inputs=self.loss_source.parameters())
        return weights * torch.tensor(list(scaled.factors.values()), dtype=torch.float64)

    def parameters(self) -> list[Tensor]:
        return [*self.loss_source.parameters(), *self.inner.parameters()]

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:
        self.loss_source.epoch_end(mean_losses)
        self.inner.epoch_end(mean_losses)

    def state_dict(self) -> dict[str, Any]:
        return {**self.inner.state_dict(), "losses_from": self.loss_source.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)
        if "losses_from" in state:
            self.loss_source.load_state_dict(state["losses_from"])
