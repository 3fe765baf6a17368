"""Task affinity measured during training, as step observers of the trainer.

``cosine``
    The T×T Gramian of the per-task gradients (the balancers' :class:`GramianEngine`, over the
    shared ``features`` or ``params``) normalised to cosines, ``cos(gᵢ, gⱼ)``, averaged over
    the measured steps. Symmetric. When the run's balancer is itself a Gramian balancer in the
    same mode, its Gramian of the step is reused at no extra cost (cosines ignore the positive
    loss scales of ``losses_from``; with ``update_every`` only the steps that recompute it are
    measured); otherwise the engine runs once more per measured step (one backward through the
    heads in ``features`` mode; about T trunk backward passes in ``params`` mode).
``tag``
    The lookahead affinity of Fifty et al. (2021): ``Z_{i→j} = 1 − L_j(θ_s − η∇_{θ_s}L_i) /
    L_j(θ_s)``, on the step's batch, with η the current learning rate of the shared parameters
    and the task-specific parameters unchanged. Asymmetric: row i is the task stepped on, column
    j the task that gains (Z > 0) or loses. Both losses are evaluated in eval mode (no dropout,
    no batch-norm update) with the parameters passed functionally, so the model, the optimizer
    and the random state are untouched. Extra cost per measured step: T backward passes from
    each loss to the shared parameters and T + 1 forward passes of the model on the batch.

A task or pair whose value is undefined at a step (a task without labels in the batch, a zero
gradient, a non-positive loss) is left out of that step's average; a pair never measured is
NaN (``null`` in ``metrics.json``).

Under ``torchrun`` (:mod:`polytask.distributed`) each step's matrix is that of the global batch
on every process, so the affinity equals one process's: the Gramian engine sums the cosines'
Gramian over the processes (as for the balancers); ``tag`` sums the per-task gradients it steps
along (one collective of the T×P blocks) and the processes' loss sums and labelled counts
before and after each lookahead (one collective of (T + 2)×T numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.balancers import Balancer
from polytask.balancers.engine import GramianEngine
from polytask.balancers.weighting import GramianBalancer
from polytask.balancers.wrappers import Wrapper
from polytask.config import AffinityConfig
from polytask.distributed import all_reduce_blocks, all_reduce_sum
from polytask.errors import ConfigError
from polytask.tasks import Task
from polytask.training.observers import StepObserver, StepView

OBSERVATION = "affinity"
"""The key of the affinity in :attr:`EpochLog.observations` (and ``metrics.json``)."""


class AffinityMeter(StepObserver):
    """Sums and counts of a T×T affinity over the measured steps of each epoch.

    Every ``every``-th step (counted from the first) is measured. :meth:`epoch_end` returns the
    epoch's ``{"method", "tasks", "matrix", "steps"}`` (``matrix[i][j]``: the mean over the
    steps that measured pair (i, j), NaN if none; ``steps[i][j]``: how many) and starts over.
    """

    name = OBSERVATION
    method: str = "affinity"

    def __init__(self, task_names: Sequence[str], every: int = 1) -> None:
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ConfigError(
                f"evaluation.affinity.every: must be an integer ≥ 1 (measure every k-th step), "
                f"got {every!r}"
            )
        if len(task_names) < 2:
            raise ConfigError(
                f"evaluation.affinity: affinity relates tasks to each other; the config has "
                f"{len(task_names)} task ({', '.join(task_names)}), it needs at least 2"
            )
        self.task_names = list(task_names)
        self.every = int(every)
        self._index = {name: k for k, name in enumerate(self.task_names)}
        self._step = 0
        self._reset()

    def _reset(self) -> None:
        size = len(self.task_names)
        self._sums = torch.zeros(size, size, dtype=torch.float64)
        self._counts = torch.zeros(size, size, dtype=torch.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step}  # so that a resumed run measures the same steps

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._step = int(state.get("step", 0))

    def _due(self) -> bool:
        """Whether this step is measured (advances the step counter)."""
        due = self._step % self.every == 0
        self._step += 1
        return due

    def add(self, names: Sequence[str], matrix: Tensor) -> None:
        """Add one step's affinity among the tasks ``names``; non-finite entries are left out."""
        index = torch.tensor([self._index[n] for n in names])
        matrix = matrix.detach().to("cpu", torch.float64)
        finite = torch.isfinite(matrix)
        rows, cols = index[:, None].expand_as(matrix), index[None, :].expand_as(matrix)
        self._sums.index_put_((rows[finite], cols[finite]), matrix[finite], accumulate=True)
        self._counts.index_put_(
            (rows[finite], cols[finite]), torch.ones_like(matrix[finite], dtype=torch.int64),
            accumulate=True,
        )  # fmt: skip

    def epoch_end(self, epoch: int) -> dict[str, Any]:
        mean = self._sums / self._counts.clamp(min=1)
        mean[self._counts == 0] = math.nan
        record = {
            "method": self.method,
            "tasks": list(self.task_names),
            "matrix": mean.tolist(),
            "steps": self._counts.tolist(),
        }
        self._reset()
        return record


class GradientCosine(AffinityMeter):
    """Cosines of the per-task gradients in ``mode`` (module docstring); reuses the Gramian of
    ``balancer`` when it is a Gramian balancer in the same mode."""

    method = "cosine"

    def __init__(
        self,
        task_names: Sequence[str],
        every: int = 1,
        mode: str = "features",
        balancer: Balancer | None = None,
    ) -> None:
        super().__init__(task_names, every)
        self.engine = GramianEngine(mode, reuse_jacobian=False)
        self.mode = self.engine.mode
        self.source = _gramian_source(balancer, self.mode)
        self._measure_now = False

    @property
    def reuses_balancer(self) -> bool:
        """Whether the balancer's own Gramian is read (no extra gradient computation)."""
        return self.source is not None

    def before_backward(self, view: StepView) -> None:
        self._measure_now = self._due()
        if not self._measure_now or self.source is not None:
            return
        names = [n for n in self.task_names if n in view.losses]
        if len(names) < 2:
            return
        if self.mode == "features" and view.features is None:
            raise ConfigError(
                "evaluation.affinity.mode: 'features' needs a shared representation, which "
                f"{type(view.model).__name__} does not give; use mode: params"
            )
        if self.mode == "params" and not view.shared_params:
            raise ConfigError(
                f"evaluation.affinity.mode: 'params' needs shared parameters, which "
                f"{type(view.model).__name__} has none of; use mode: features"
            )
        losses = [view.losses[n] for n in names]
        gramian, _ = self.engine.gramian(losses, view.shared_params, view.features)
        self.add(names, cosines(gramian))

    def after_backward(self, view: StepView) -> None:
        if self.source is None:
            return
        found, self.source.last_gramian = self.source.last_gramian, None
        if self._measure_now and found is not None:
            self.add(found[0], cosines(found[1]))


def cosines(gramian: Tensor) -> Tensor:
    """``Gᵢⱼ / √(Gᵢᵢ Gⱼⱼ)``; NaN in the rows and columns of tasks with a zero gradient."""
    gramian = gramian.detach().to(torch.float64)
    norms = torch.sqrt(torch.diagonal(gramian).clamp(min=0))
    outer = norms[:, None] * norms[None, :]
    result = gramian / outer
    result[outer == 0] = math.nan
    return result.clamp(-1.0, 1.0)


def _gramian_source(balancer: Balancer | None, mode: str) -> GramianBalancer | None:
    """The :class:`GramianBalancer` inside ``balancer`` (through its wrappers) when its mode is
    ``mode``; its per-step Gramian then gives the cosines for free."""
    while isinstance(balancer, Wrapper):
        balancer = balancer.inner
    if isinstance(balancer, GramianBalancer) and balancer.mode == mode:
        return balancer
    return None


class TagLookahead(AffinityMeter):
    """Fifty et al. (2021)'s lookahead affinity ``Z_{i→j}`` (module docstring)."""

    method = "tag"

    def before_backward(self, view: StepView) -> None:
        if not self._due():
            return
        names = [n for n in self.task_names if n in view.losses]
        if len(names) < 2:
            return
        if not view.shared_params:
            raise ConfigError(
                "evaluation.affinity.method: 'tag' steps on the shared parameters, and "
                f"{type(view.model).__name__} has none"
            )
        self.add(names, lookahead(view, names))


def lookahead(view: StepView, names: Sequence[str]) -> Tensor:
    """The T×T matrix ``Z_{i→j}`` for the tasks ``names`` at this step (NaN where ``L_j(θ)`` is
    not positive or a value is not finite)."""
    shared = view.shared_params
    lr = shared_lr(view.optimizer, shared)
    engine = GramianEngine("params", reuse_jacobian=False)
    blocks, _ = engine.gradients([view.losses[n] for n in names], shared, None, hold=False)
    blocks = all_reduce_blocks(blocks)  # under torchrun, the global batch's gradients
    by_id = {id(p): name for name, p in view.model.named_parameters()}
    keys = [by_id[id(p)] for p in shared]
    tasks = {t.name: t for t in view.tasks}
    was_training = view.model.training
    view.model.eval()
    try:
        with torch.no_grad():
            sums = [task_sums(view, tasks, names, {})]
            for i in range(len(names)):
                moved = {
                    key: p.detach() - lr * block[i]
                    for key, p, block in zip(keys, shared, blocks, strict=True)
                }
                sums.append(task_sums(view, tasks, names, moved))
    finally:
        view.model.train(was_training)
    counts = torch.stack([view.batch.masks[n].sum() for n in names]).to(sums[0])
    # one read-back; under torchrun the sums and counts of every process in one collective
    table = all_reduce_sum(torch.stack([counts, *sums]).cpu())
    losses = table[1:] / table[0]  # NaN (0/0) for a task without labels in the batch
    before = losses[0]
    matrix = 1.0 - losses[1:] / before
    matrix[:, ~(before > 0)] = math.nan
    return matrix


def task_sums(
    view: StepView, tasks: Mapping[str, Task], names: Sequence[str], params: dict[str, Tensor]
) -> Tensor:
    """The losses of ``names`` (task weights applied) summed over the labelled rows of the
    step's batch, in float64, with ``params`` in place of the model's own (functionally: the
    model is not modified); divided by the labelled counts they are the losses."""
    batch = view.batch
    outputs = torch.func.functional_call(view.model, params, (batch.inputs,), strict=False)
    values = []
    for name in names:
        task = tasks[name]
        # labelled=1: the sum, not the mean (0 without labels)
        loss = task.loss_value(outputs[name], batch.targets[name], batch.masks[name], 1)
        assert loss is not None
        values.append(loss.double() * task.weight)
    return torch.stack(values)


def shared_lr(optimizer: torch.optim.Optimizer, shared: Sequence[Tensor]) -> float:
    """The current learning rate of the optimizer's group holding the shared parameters."""
    first = id(shared[0])
    for group in optimizer.param_groups:
        if any(id(p) == first for p in group["params"]):
            return float(group["lr"])
    raise ValueError("the shared parameters are not in the optimizer")


def build_affinity(
    config: AffinityConfig, task_names: Sequence[str], balancer: Balancer | None = None
) -> AffinityMeter:
    """The affinity observer ``config`` describes, for the tasks ``task_names``."""
    if config.method == "tag":
        return TagLookahead(task_names, config.every)
    return GradientCosine(task_names, config.every, config.mode, balancer)


def run_affinity(history: Sequence[Any]) -> tuple[list[str], Tensor] | None:
    """The run's affinity: the per-epoch matrices of ``history`` (:class:`EpochLog` objects or
    their dicts) averaged with their step counts as weights; ``None`` when none was recorded."""
    total: Tensor | None = None
    counts: Tensor | None = None
    names: list[str] = []
    for log in history:
        observations = log["observations"] if isinstance(log, dict) else log.observations
        record = (observations or {}).get(OBSERVATION)
        if not record:
            continue
        matrix = torch.tensor(
            [[math.nan if v is None else v for v in row] for row in record["matrix"]],
            dtype=torch.float64,
        )
        steps = torch.tensor(record["steps"], dtype=torch.float64)
        weighted = torch.where(steps > 0, matrix * steps, torch.zeros_like(matrix))
        names = list(record["tasks"])
        total = weighted if total is None else total + weighted
        counts = steps if counts is None else counts + steps
    if total is None or counts is None or not bool((counts > 0).any()):
        return None  # nothing measured (e.g. no step had two labelled tasks)
    mean = total / counts.clamp(min=1)
    mean[counts == 0] = math.nan
    return names, mean


def affinity_csv(names: Sequence[str], matrix: Tensor) -> str:
    """The matrix as CSV: a header ``task,<names>``, then one row per task (row i, column j:
    ``M[i, j]``; for ``tag``, how much a step on task i helps task j); empty where undefined."""
    lines = [",".join(["task", *names])]
    for name, row in zip(names, matrix.tolist(), strict=True):
        cells = ["" if not math.isfinite(v) else f"{v:.6g}" for v in row]
        lines.append(",".join([name, *cells]))
    return "\n".join(lines) + "\n"
