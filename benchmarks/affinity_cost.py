"""Cost of recording task affinity: seconds per training step with and without it.

A synthetic regression problem (64 inputs, trunk 256-128, heads 64-1, batch 256, T tasks) is
trained by :class:`polytask.training.Trainer`; each setting runs ``--steps`` steps, settings
alternate over ``--repeats`` rounds in one process, and the median time per step is compared
with that of the same balancer without an observer. ``tag`` is measured at every step (its
cost per measured step; with ``every: k`` it is spread over k steps).

Run: PYTHONPATH=src .venv/bin/python benchmarks/affinity_cost.py [--tasks 3] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from polytask.balancers import build_balancer
from polytask.config import AffinityConfig
from polytask.data.dataset import Batch
from polytask.models import HardSharing
from polytask.relationships.affinity import build_affinity
from polytask.tasks import RegressionTask
from polytask.training import Trainer

SETTINGS = [  # (label, balancer, balancer options, affinity or None)
    ("equal", "equal", {}, None),
    ("equal + cosine (features)", "equal", {}, AffinityConfig(method="cosine")),
    ("equal + cosine (params)", "equal", {}, AffinityConfig(method="cosine", mode="params")),
    ("equal + tag (every step)", "equal", {}, AffinityConfig(method="tag")),
    ("mgda", "mgda", {}, None),
    ("mgda + cosine (features, reused)", "mgda", {}, AffinityConfig(method="cosine")),
    ("upgrad params", "upgrad", {"mode": "params"}, None),
    (
        "upgrad params + cosine (params, reused)",
        "upgrad",
        {"mode": "params"},
        AffinityConfig(method="cosine", mode="params"),
    ),
]


def trainer_for(names, balancer, options, affinity):
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
    heads = {n: nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1)) for n in names}
    model = HardSharing(trunk, heads)
    tasks = [RegressionTask(name=n, mean=(0.0,), std=(1.0,)) for n in names]
    method = build_balancer(balancer, names, **options)
    observers = [build_affinity(affinity, names, method)] if affinity is not None else []
    model.train()
    return Trainer(model, tasks, balancer=method, observers=observers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = [f"t{i}" for i in range(args.tasks)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, generator=g)
    batch = Batch(
        x,
        {n: torch.randn(256, 1, generator=g) for n in names},
        {n: torch.ones(256, 1, dtype=torch.bool) for n in names},
    )
    trainers = {label: trainer_for(names, *rest) for label, *rest in SETTINGS}
    times: dict[str, list[float]] = {label: [] for label in trainers}
    for _ in range(args.repeats):
        for label, trainer in trainers.items():
            trainer.step(batch)  # warm-up
            started = time.perf_counter()
            for _ in range(args.steps):
                trainer.step(batch)
            times[label].append((time.perf_counter() - started) / args.steps)
    base = {"equal": "equal", "mgda": "mgda", "upgrad": "upgrad params"}
    print(f"T = {args.tasks}, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    for label, values in times.items():
        median = statistics.median(values)
        reference = statistics.median(times[base[label.split()[0]]])
        print(f"{label:42s} {1000 * median:8.3f} ms/step  ×{median / reference:.3f}")


if __name__ == "__main__":
    main()
