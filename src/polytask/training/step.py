"""The pieces of one training step that every loop shares: the :class:`~polytask.training.Trainer`
and the Lightning module (:mod:`polytask.lightning`) call them, so both compute the same masked
losses and hand the balancer the same values, in one process or data-parallel.

Under data-parallel training (:mod:`polytask.distributed`) a step works on this process's rows
``rank::world_size`` of the global batch (:func:`shard`); a task's loss is its local sum over
the *global* labelled count (:func:`labelled_counts`), carrying the global value
(:func:`global_losses`); after the balancer's backward the model's gradients are summed over
the processes (:func:`finish_gradients`). A balancer that does not read the global loss values
(equal weights) gets each process's own, and those are summed with the gradients instead
(:func:`sums_losses_late`, :func:`skip_unless_finite`): one collective a step. In one process
every collective is a no-op.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask.balancers.base import Balancer
from polytask.data.dataset import Batch, take
from polytask.distributed import all_reduce_sum, global_value, shard_rows, sum_gradients, world
from polytask.models.base import MultiTaskModel
from polytask.tasks import Task


def shard(batch: Batch, rank: int, size: int) -> Batch:
    """This process's rows ``rank::size`` of the global ``batch`` (a clear error when it has
    fewer rows than processes)."""
    first = next(iter(batch.masks.values()))
    index = shard_rows(first.shape[0], rank, size)
    return Batch(
        take(batch.inputs, index),
        {k: v[index] for k, v in batch.targets.items()},
        {k: v[index] for k, v in batch.masks.items()},
    )


def labelled_counts(batch: Batch, names: Sequence[str], *, whole: bool = False) -> dict[str, int]:
    """The global labelled entries of each task of ``names``, counted where the masks are (on
    the host before the batch moves: no device synchronisation). ``whole``: ``batch`` is the
    global batch every process holds, so its counts are the global ones; otherwise it is this
    process's part and, under data-parallel training, the counts are summed over the processes
    (one small collective)."""
    labelled = {name: int(batch.masks[name].sum()) for name in names}
    if world().size > 1 and not whole:
        counts = all_reduce_sum(torch.tensor(list(labelled.values()), dtype=torch.int64))
        labelled = dict(zip(labelled, counts.tolist(), strict=True))
    return labelled


def masked_losses(
    outputs: Mapping[str, Tensor], batch: Batch, tasks: Sequence[Task], labelled: Mapping[str, int]
) -> dict[str, Tensor]:
    """Each task's masked mean loss (:meth:`Task.loss_value` over ``labelled`` entries) times
    its static weight, in float32 (what a balancer reads, never half precision); a task
    without a label anywhere in the batch is left out."""
    losses: dict[str, Tensor] = {}
    for task in tasks:
        loss = task.loss_value(
            outputs[task.name], batch.targets[task.name], batch.masks[task.name],
            labelled[task.name],
        )  # fmt: skip
        if loss is not None:
            loss = loss.float()
            losses[task.name] = loss * task.weight if task.weight != 1.0 else loss
    return losses


def global_losses(losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Under data-parallel training, each loss with the global value (the sum of the
    processes' parts: one collective) and the gradient of this process's part; ``losses``
    unchanged in one process."""
    if world().size <= 1 or not losses:
        return dict(losses)
    totals = all_reduce_sum(torch.stack([v.detach() for v in losses.values()]))
    return {
        name: global_value(local, total)
        for (name, local), total in zip(losses.items(), totals, strict=True)
    }


def sums_losses_late(balancer: Balancer, observed: bool) -> bool:
    """Whether a data-parallel step hands ``balancer`` each process's own loss values and sums
    them with the model's gradients after its backward (:func:`finish_gradients`: one
    collective a step instead of two) rather than before it (:func:`global_losses`): when the
    balancer does not read the global values (:attr:`Balancer.needs_global_losses`) and no
    observer looks at the step (``observed``)."""
    return world().size > 1 and not balancer.needs_global_losses and not observed


def finish_gradients(
    model: MultiTaskModel, scale: Tensor | None = None, late: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor] | None:
    """After the balancer's backward: add the gradient of the model's regularisation penalty
    (times the loss ``scale`` when there is one; by the main process alone, as the gradients
    are summed next), then sum the model's gradients over the processes. A balancer's own
    parameters are left alone: their objective reads the global loss values, so every
    process already holds their full gradient. ``late``: this process's loss values, not
    summed before the backward (:func:`sums_losses_late`); summed in the same collective and
    returned (detached), for :func:`skip_unless_finite`."""
    penalty = model.regularization()
    if penalty is not None and world().is_main:
        (penalty if scale is None else penalty * scale).backward()
    if late is None:
        sum_gradients(model.parameters())
        return None
    values = [v.detach().reshape(()).float() for v in late.values()]
    totals = sum_gradients(model.parameters(), torch.stack(values) if values else None)
    return {} if totals is None else dict(zip(late, totals, strict=True))


def skip_unless_finite(
    totals: Mapping[str, Tensor],
    weights: Mapping[str, float],
    model: MultiTaskModel,
    balancer: Balancer,
) -> dict[str, float]:
    """The step's weights, after losses summed late (:func:`finish_gradients`); when a global
    loss is not finite, the step is skipped on every process, as one process skips it
    (:meth:`Balancer.backward`): every gradient cleared, the weights 0, a warning naming the
    tasks (unless this process's balancer skipped already, having seen its own part). One
    host synchronisation."""
    names = list(totals)
    if not names or bool(torch.isfinite(torch.stack(list(totals.values()))).all()):
        return dict(weights)
    for parameter in [*model.parameters(), *balancer.parameters()]:
        parameter.grad = None
    if any(weights.values()):
        bad = [n for n, v in totals.items() if not bool(torch.isfinite(v))]
        warnings.warn(
            f"{balancer.name}: non-finite loss for task(s) {', '.join(map(repr, bad))}; "
            "skipping this step (gradients cleared, no update)",
            RuntimeWarning,
            stacklevel=3,
        )
    return dict.fromkeys(weights, 0.0)
