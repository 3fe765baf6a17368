"""DB-MTL: dual balancing of loss scales and gradient magnitudes (Lin & Zhang 2023)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from polytask.balancers._common import LOG_EPS, reorder
from polytask.balancers.base import Balancer, Kind, Step, check_finite, unscaled
from polytask.balancers.engine import check_mode, task_jacobians
from polytask.balancers.registry import register_balancer
from polytask.distributed import all_reduce_sum, finite_flags, world


@register_balancer("db_mtl", "db-mtl")
class DualBalancing(Balancer):
    """DB-MTL from "Dual-Balancing for Multi-Task Learning" (Lin, Ye, Zhang & Kwok, 2023).

    Loss-scale balance: every task loss is replaced by ``log(L_i + ε)`` (``ε = 1e-8``), so
    multiplying a loss by a constant changes nothing. Gradient-magnitude balance: per-task
    gradients ``g_i = ∇log(L_i + ε)`` w.r.t. the shared parameters (``mode='params'``) or the
    shared representation ``features`` (``mode='features'``) are averaged over steps,
    ``ĝ_i ← β_t·ĝ_i + (1 − β_t)·g_i`` with ``β_t = β / t^σ`` (``β = beta``, ``σ = beta_sigma``,
    ``t`` the task's step count; ``ĝ_i = g_i`` on its first step), and the shared update is
    ``Σ α_i·ĝ_i`` with ``α_i = max_j ‖ĝ_j‖ / ‖ĝ_i‖`` (every task at the largest norm). Task-specific
    parameters get ``∇Σ log(L_i + ε)``. Returned weights are ``α_i`` (factors on the averaged
    log-loss gradients).

    Needs one ``torch.autograd.grad`` per present task on the shared part, then one ordinary
    backward whose result on the shared part is corrected to ``Σ α_i·ĝ_i``. In features mode the
    average is over per-sample representation gradients (as the authors' code does); it restarts
    when the batch shape changes. Absent tasks keep their average and step count.

    Under ``torchrun`` (:mod:`polytask.distributed`) it equals one process on the global batch:
    in ``params`` mode the T×P per-task gradients are summed over the processes (one
    collective) before they are checked and averaged, so every process holds the global
    averages, and the combined update is added by rank 0 alone while every process removes
    its own part of ``∇Σ log Lᵢ`` (the trainer then sums the gradients); in ``features`` mode
    each process averages its own rows (the average is per sample), a restart when the global
    batch shape changes and the finiteness check are agreed by one collective of T + 1 flags,
    and the squared norms ``‖ĝᵢ‖²`` are summed over the processes (one more collective).
    """

    kind: ClassVar[Kind] = "jacobian"
    nonnegative_losses = True

    def __init__(
        self,
        task_names: Sequence[str],
        beta: float = 0.9,
        beta_sigma: float = 0.5,
        mode: Literal["params", "features"] = "params",
    ) -> None:
        super().__init__(task_names)
        if not 0 <= beta < 1 or beta_sigma < 0:
            raise ValueError(f"need 0 <= beta < 1 and beta_sigma >= 0, got {beta}, {beta_sigma}")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.mode = check_mode("db_mtl", mode)
        self.buffer: Tensor | None = None  # (T, n) averaged flat gradients
        self.steps = torch.zeros(len(self.task_names))
        self._position = {n: i for i, n in enumerate(self.task_names)}

    def step(self, step: Step) -> Tensor:
        names, _, values, shared_params, features, scale = step[:6]
        inputs: list[Tensor]
        if self.mode == "features":
            if features is None:
                raise ValueError("db_mtl: mode='features' needs the shared representation")
            inputs = [features]
        else:
            if shared_params is None:
                raise ValueError("db_mtl: mode='params' needs shared_params")
            inputs = [p for p in shared_params if p.requires_grad]
        log_losses = torch.log(values + LOG_EPS)

        blocks = task_jacobians(list(log_losses.unbind()), inputs)
        # this process's part of the per-task gradients (all of them in one process)
        local = torch.cat([block.reshape(len(names), -1) for block in blocks], dim=1).detach()
        here = world()
        grads = local
        if self.mode == "params" and here.size > 1:  # the global per-task gradients
            grads = all_reduce_sum(local.clone())
        restart = self._restarts(grads)
        if self.mode == "features" and here.size > 1:  # agreed by every process
            flags = all_reduce_sum(
                torch.cat([torch.tensor([float(restart)]), finite_flags(local).cpu()])
            )
            restart = bool(flags[0] > 0)  # the global batch changed shape
            check_finite("gradient", names, flags[1:])
        else:
            check_finite("gradient", names, grads)  # before the running averages take them in
        rows = torch.tensor([self._position[n] for n in names])
        # the true gradients, averaged in (at least) float32: half precision would underflow
        averaged = self._average(rows, unscaled(grads, scale), restart)
        if self.mode == "features" and here.size > 1:  # the rows are spread over processes
            norms = all_reduce_sum(averaged.pow(2).sum(dim=1)).sqrt()
        else:
            norms = averaged.norm(dim=1)
        alpha = norms.max() / (norms + 1e-8)
        # what Σ log L's (scaled) backward adds, fixed up to the (scaled) Σ αᵢ ĝᵢ; in params
        # mode under torchrun rank 0 alone adds Σ αᵢ ĝᵢ (global), each removing its own part
        scaled = (alpha @ averaged) * torch.as_tensor(scale).to(averaged)
        if self.mode == "params" and not here.is_main:
            scaled = torch.zeros_like(scaled)
        correction = scaled - local.sum(0).to(averaged.dtype)

        if self.mode == "features":
            torch.autograd.backward(
                [log_losses.sum(), features],
                [torch.ones((), dtype=log_losses.dtype, device=log_losses.device),
                 correction.view_as(features).to(features.dtype)],
            )  # fmt: skip
        else:
            log_losses.sum().backward()
            offset = 0
            with torch.no_grad():
                for p in inputs:
                    piece = correction[offset : offset + p.numel()].view_as(p).to(p.dtype)
                    offset += p.numel()
                    if p.grad is None:
                        p.grad = piece.clone()
                    else:
                        p.grad.add_(piece)
        return alpha

    def _restarts(self, grads: Tensor) -> bool:
        """Whether the running averages start over: none yet, or the gradients changed shape."""
        return self.buffer is None or self.buffer.shape != (len(self.task_names), grads.shape[1])

    def _average(self, rows: Tensor, grads: Tensor, restart: bool) -> Tensor:
        """Fold ``grads`` (one row per present task) into the running averages, started over
        with ``restart``; return theirs."""
        if restart or self.buffer is None:
            size = (len(self.task_names), grads.shape[1])
            self.buffer = torch.zeros(size, dtype=grads.dtype, device=grads.device)
            self.steps.zero_()
        self.buffer = self.buffer.to(grads.device)
        self.steps[rows] += 1
        t = self.steps[rows].to(grads.device, grads.dtype)
        beta_t = torch.where(t > 1, self.beta / t.pow(self.beta_sigma), torch.zeros_like(t))
        new = grads + beta_t.unsqueeze(1) * (self.buffer[rows.to(grads.device)] - grads)
        self.buffer[rows.to(grads.device)] = new
        return new

    def state_dict(self) -> dict[str, Any]:
        return {
            "task_names": list(self.task_names),
            "steps": self.steps.clone(),
            "buffer": None if self.buffer is None else self.buffer.cpu().clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = reorder(state, self.task_names, "steps").float()
        self.buffer = None if state["buffer"] is None else reorder(state, self.task_names, "buffer")
