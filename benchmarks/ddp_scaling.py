"""Data-parallel scaling: training samples per second of 1 and 2 processes (one thread each).

Problem: a shared MLP trunk (64 → 256 → 256, ReLU) with 3 linear regression heads (MSE on random
targets), global batches of ``--batch`` rows. Each process keeps its rows of every global batch
(``polytask.distributed``: the run equals one process on the same batches); a case is timed over
``--steps`` ``Trainer.step`` calls after ``--warmup`` untimed ones, and samples/s is the global
rows trained per second of the slowest process. Processes are started by
``torch.multiprocessing.spawn`` and talk over gloo on this machine, with one torch thread each.

    python benchmarks/ddp_scaling.py --markdown docs/benchmarks.md

The goal is ≥ 1.7× at 2 processes for equal weights and a ``features``-mode method.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _report
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from polytask.balancers import build_balancer
from polytask.data import MultiTaskData
from polytask.distributed import shutdown
from polytask.models import HardSharing
from polytask.tasks import RegressionTask
from polytask.training import Trainer

SECTION = _report.Section("ddp_scaling", "benchmarks/ddp_scaling.py")
#: (label, balancer name, options)
CASES = [
    ("equal", "equal", {}),
    ("mgda (features)", "mgda", {"mode": "features"}),
    ("upgrad (params)", "upgrad", {"mode": "params"}),
]
TASKS = [RegressionTask(name=f"t{k}", mean=(0.0,), std=(1.0,)) for k in range(3)]


def _batches(count: int, rows: int) -> list[MultiTaskData]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        x = torch.randn(rows, 64, generator=g)
        targets = {t.name: torch.randn(rows, 1, generator=g) for t in TASKS}
        masks = {t.name: torch.ones(rows, 1, dtype=torch.bool) for t in TASKS}
        out.append(MultiTaskData(x, targets, masks))
    return out


def _seconds(case: int, steps: int, warmup: int, rows: int) -> float:
    """Seconds of ``steps`` timed steps of ``CASES[case]`` in this process."""
    _, name, options = CASES[case]
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
    model = HardSharing(trunk, {t.name: nn.Linear(256, 1) for t in TASKS})
    balancer = build_balancer(name, [t.name for t in TASKS], **options)
    trainer = Trainer(model, TASKS, balancer=balancer)
    model.train()
    batches = [b.batch(slice(None)) for b in _batches(warmup + steps, rows)]
    for batch in batches[:warmup]:
        trainer.step(batch)
    if dist.is_initialized():
        dist.barrier()
    started = time.perf_counter()
    for batch in batches[warmup:]:
        trainer.step(batch)
    return time.perf_counter() - started


def _worker(rank: int, size: int, store: str, out: str, steps: int, warmup: int, rows: int):
    torch.set_num_threads(1)
    if size > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        seconds = [_seconds(case, steps, warmup, rows) for case in range(len(CASES))]
    finally:
        shutdown()
    Path(f"{out}.{rank}").write_text(" ".join(map(str, seconds)))


def run(sizes: list[int], *, steps: int, warmup: int, rows: int) -> dict[int, list[float]]:
    """Samples/s of every case (in ``CASES`` order) for each number of processes."""
    result = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            out = str(Path(folder) / "seconds")
            args = (size, str(Path(folder) / "store"), out, steps, warmup, rows)
            mp.spawn(_worker, args=args, nprocs=size, join=True)
            per_rank = [
                list(map(float, Path(f"{out}.{r}").read_text().split())) for r in range(size)
            ]
        result[size] = [steps * rows / max(times) for times in zip(*per_rank, strict=True)]
    return result


def markdown(result: dict[int, list[float]], rows: int, argv: list[str] | None = None) -> str:
    sizes = sorted(result)
    header = ["method", *(f"{n} process(es), samples/s" for n in sizes)]
    header += [f"speed-up at {n}" for n in sizes[1:]]
    body = []
    for k, (label, _, _) in enumerate(CASES):
        cells = [label, *(f"{result[n][k]:,.0f}" for n in sizes)]
        cells += [f"{result[n][k] / result[sizes[0]][k]:.2f}×" for n in sizes[1:]]
        body.append(cells)
    return SECTION.wrap(
        "## Data-parallel scaling\n\n"
        f"Regenerate: `{SECTION.command(argv)}`\n\n"
        "Training samples per second of `Trainer.step` in 1 and 2 processes (gloo, one torch "
        "thread each) on a shared MLP trunk (64 → 256 → 256) with 3 regression heads, global "
        f"batches of {rows} rows (each process trains its half), exact balancing "
        "(`polytask.distributed`). Machine: "
        f"{_report.machine()}.\n\n" + _report.table(header, body, right=len(header) - 1) + "\n\n"
        "Where the time goes: every step adds one all-reduce of the model's gradients, with "
        "the T loss values in it (the labelled counts are counted on the global batch every "
        "process holds), and a Gramian method one of its T×T Gramian (`features`) or T×P "
        "gradient blocks (`params`), with the loss values again: 1, 2 and 2 collectives a step "
        "for the three rows. "
        "`params` mode sums the T×P per-task gradient block (T times the gradient's volume), "
        "forms the Gramian of the whole block on every process (not split), and under "
        "`torchrun` cannot reuse the per-task gradients for the update (the update is an "
        "ordinary backward of the local losses, summed like any gradient), so one trunk "
        "backward more than in one process: those parts do not shrink with more processes."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    result = run([1, 2], steps=args.steps, warmup=args.warmup, rows=args.batch)
    text = markdown(result, args.batch, sys.argv[1:])
    print(text)
    if args.markdown is not None:
        SECTION.write(args.markdown, text)


if __name__ == "__main__":
    main()
