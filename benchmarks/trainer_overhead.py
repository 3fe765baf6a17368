"""Samples per second of polytask's Trainer against a hand-written PyTorch loop.

Both train the same model (the demo's network) on the same encoded Adult training rows with the
same batches, optimizer and loss; they alternate epoch by epoch in one process so machine noise
hits both alike. Prints the median ratio Trainer / hand loop (goal ≥ 0.95).

Run: .venv/bin/python benchmarks/trainer_overhead.py [--epochs 7] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from polytask.config import parse_config
from polytask.data import prepare_data
from polytask.data.builtin import get_builtin
from polytask.data.sampling import ShuffledBatches
from polytask.models.build import build_network
from polytask.training import Trainer


def hand_loop_epoch(model, tasks, data, batch_size, optimizer, generator) -> None:
    """What a user would write: shuffle, slice, forward, masked losses, sum, backward, step."""
    model.train()
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(data), batch_size):
        batch = data.batch(order[start : start + batch_size])
        outputs = model(batch.inputs)
        total = 0.0
        for task in tasks:
            mask = batch.masks[task.name]
            if mask.any():
                loss = task.losses[task.loss](outputs[task.name], batch.targets[task.name])
                total = total + loss[mask].mean()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    config = parse_config(
        get_builtin("adult").config(model={"trunk": [128, 64], "head": [32], "dropout": 0.1})
    )
    data = prepare_data(config)
    train = data.train["shared"]
    torch.manual_seed(0)
    model_a = build_network(config.model, data.encoder, data.tasks)
    model_b = copy.deepcopy(model_a)
    trainer = Trainer(
        model_a,
        data.tasks,
        optimizer=torch.optim.Adam(model_a.parameters(), lr=1e-3),
        batch_size=args.batch_size,
        epochs=1,
    )
    optimizer_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    source = ShuffledBatches(train, args.batch_size)

    ratios, trainer_rates, hand_rates = [], [], []
    for epoch in range(args.epochs + 1):  # the first pair warms up
        start = time.perf_counter()
        trainer._train_epoch(source, epoch, None)  # the loop fit() runs, without validation
        t_trainer = time.perf_counter() - start
        start = time.perf_counter()
        hand_loop_epoch(
            model_b,
            data.tasks,
            train,
            args.batch_size,
            optimizer_b,
            torch.Generator().manual_seed(epoch),
        )
        t_hand = time.perf_counter() - start
        if epoch == 0:
            continue
        trainer_rates.append(len(train) / t_trainer)
        hand_rates.append(len(train) / t_hand)
        ratios.append(t_hand / t_trainer)
    print(f"rows per epoch: {len(train)}, batch size {args.batch_size}, {args.epochs} epochs")
    print(f"hand-written loop: {statistics.median(hand_rates):,.0f} samples/s (median)")
    print(f"polytask Trainer:  {statistics.median(trainer_rates):,.0f} samples/s (median)")
    print(
        f"ratio Trainer / hand loop: {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
