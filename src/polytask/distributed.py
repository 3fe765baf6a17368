"""Data-parallel training under ``torchrun``: the process group and the few collectives that
make a run of N processes equal to one process on the same global batch.

Every helper is a no-op in a single process (no process group initialised), so the trainer and
the balancers call them unconditionally. How exactness is kept (README, "Distributed
training"):

- every rank builds the same global batch and keeps the rows ``rank::world_size``
  (:func:`shard_batch`);
- a task's loss on a rank is its local sum divided by the *global* labelled count
  (:func:`all_reduce_sum` of the counts), so the local losses sum to the global loss, and
  :func:`global_value` gives every rank the global value with the gradient of its local part;
- the balancers' per-task gradients are summed over ranks where they are formed (the Gramian
  engine, GradNorm), so every rank takes the same decision;
- the model's gradients are summed over ranks after the backward (:func:`sum_gradients`); a
  balancer's own parameters already have the full gradient on every rank and are left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.rendezvous import rendezvous

from polytask.errors import RunError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes; ``is_main`` for rank 0."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank (:func:`all_gather_object`)."""
        return all_gather_object(value)


def world() -> World:
    """The current process group's rank and size; ``World(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_size() -> int:
    """``WORLD_SIZE`` set by ``torchrun`` (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise RunError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def restarted() -> bool:
    """Whether ``torchrun`` restarted this job after a failed process (``--max-restarts``):
    then the run resumes from its last checkpoint instead of starting a new one."""
    return os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0")


def init_from_environment(device: torch.device) -> torch.device:
    """Initialise the process group from ``torchrun``'s environment when ``WORLD_SIZE`` > 1
    (gloo on the CPU, NCCL on CUDA, where each process takes ``cuda:LOCAL_RANK``); returns the
    device this process trains on. Nothing happens in a single process or when a group exists."""
    if launched_size() <= 1 or dist.is_initialized():
        return device
    # the store under a prefix of its own for each attempt: after an elastic restart the
    # launcher's store may still hold the failed attempt's addresses, which a process could
    # read before the new ones are written (measured: 2 restarts in 5 failed to connect)
    store, rank, size = next(rendezvous("env://"))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"polytask/attempt-{attempt}", store)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", store=store, rank=rank, world_size=size, device_id=device)
    else:
        dist.init_process_group("gloo", store=store, rank=rank, world_size=size)
    return device


def shutdown(wait: bool = True) -> None:
    """Destroy the process group if one was initialised; with ``wait``, once every process is
    done with it (a process leaving first could close a connection another still reads). On
    an error, leave without waiting: the launcher stops the others."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """``tensor`` summed over ranks, in place (returned); unchanged in one process."""
    return _all_reduce(tensor, dist.ReduceOp.SUM)


def _all_reduce(tensor: Tensor, op: Any) -> Tensor:
    if world().size <= 1:
        return tensor
    if tensor.device.type == "cpu" and dist.get_backend() == "nccl":  # NCCL: device tensors
        on_device = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_device, op=op)
        return tensor.copy_(on_device)
    dist.all_reduce(tensor, op=op)
    return tensor


def agreed(value: int, what: str) -> int:
    """``value``, checked to be the same on every rank with one collective (the maximum of
    ``value`` and of ``-value``); a RunError naming ``what`` on every rank when it differs.
    Returned as is in one process."""
    if world().size <= 1:
        return value
    high, low = _all_reduce(torch.tensor([value, -value]), dist.ReduceOp.MAX).tolist()
    if high != -low:
        raise RunError(
            f"the processes disagree on the {what} ({-low} to {high}); every process must "
            "take the same number of steps"
        )
    return value


def all_reduce_blocks(blocks: Sequence[Tensor]) -> list[Tensor]:
    """Every tensor of ``blocks`` summed over ranks with one collective (they are flattened
    into one buffer of the first block's dtype); the same tensors in one process."""
    if world().size <= 1 or not blocks:
        return list(blocks)
    dtype = blocks[0].dtype
    flat = torch.cat([b.reshape(-1).to(dtype) for b in blocks])
    all_reduce_sum(flat)
    out, start = [], 0
    for b in blocks:
        out.append(flat[start : start + b.numel()].reshape(b.shape).to(b.dtype))
        start += b.numel()
    return out


def finite_flags(rows: Tensor) -> Tensor:
    """One float per row of ``rows`` (the first dimension): 0 where every entry of the row is
    finite, NaN where one is not. Summed over ranks (:func:`all_reduce_sum`), a row that is not
    finite on some rank is NaN on every rank, so a finiteness check of local values is taken
    alike everywhere (a check one rank failed alone would leave the others waiting)."""
    finite = torch.isfinite(rows.detach()).reshape(rows.shape[0], -1).all(dim=1)
    return torch.where(finite, 0.0, math.nan).to(torch.float32)


def global_value(local: Tensor, total: Tensor) -> Tensor:
    """A tensor whose value is ``total`` (the sum of ``local`` over ranks) and whose gradient
    is that of ``local``: what a method reading loss values sees on every rank."""
    return local + (total - local.detach())


def sum_gradients(parameters: Iterable[Tensor], extra: Tensor | None = None) -> Tensor | None:
    """Sum ``.grad`` over ranks for ``parameters`` with one collective. A parameter with no
    gradient on any rank keeps ``None`` (so an optimizer leaves it, as in one process); one
    with a gradient on some rank gets the sum, counting the others' as zeros. ``extra`` (a
    1-d tensor, such as loss values) is summed in the same collective and returned (as is in
    one process; ``None`` without one)."""
    if world().size <= 1:
        return extra
    params = [p for p in parameters if p.requires_grad]
    tail = [] if extra is None else [extra.detach().reshape(-1)]
    if not params:
        return None if extra is None else all_reduce_sum(tail[0].clone())
    like = next((p.grad for p in params if p.grad is not None), params[0])
    parts = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(like.dtype)
        for p in params
    ]
    parts += [t.to(device=like.device, dtype=like.dtype) for t in tail]
    flags = torch.tensor(
        [float(p.grad is not None) for p in params], dtype=like.dtype, device=like.device
    )
    flat = all_reduce_sum(torch.cat([*parts, flags]))
    present = flat[-len(params) :].tolist()
    start = 0
    for p, seen in zip(params, present, strict=True):
        size = p.numel()
        if seen > 0:
            grad = flat[start : start + size].reshape(p.shape).to(p.dtype)
            if p.grad is None:
                p.grad = grad.clone()
            else:
                p.grad.copy_(grad)
        start += size
    if extra is None:
        return None
    return flat[start : start + extra.numel()].to(extra.dtype)


def shard_rows(rows: int, rank: int, size: int) -> Tensor:
    """The row indices ``rank::size`` of a global batch of ``rows`` rows; a clear error when a
    rank would get none."""
    if rows < size:
        raise RunError(
            f"a global batch of {rows} row(s) cannot be split over {size} processes (every "
            "process needs at least one row): use fewer processes (--nproc, or torchrun's "
            "--nproc-per-node) or a larger training.batch_size (the last batch of an epoch "
            "holds the remainder rows)"
        )
    return torch.arange(rank, rows, size)


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank (returned as is in one process)."""
    if world().size <= 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(value: T) -> list[T]:
    """Every rank's ``value`` (pickled: for objects of these processes only), in rank order,
    on every rank; ``[value]`` in one process."""
    size = world().size
    if size <= 1:
        return [value]
    found: list[Any] = [None] * size
    dist.all_gather_object(found, value)
    return found


def barrier() -> None:
    """Wait for every rank (nothing in one process)."""
    if world().size > 1:
        dist.barrier()
