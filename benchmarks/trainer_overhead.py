"""Samples per second of polytask's Trainer against a hand-written PyTorch loop.

Both train the same model (the demo's network) on the same encoded Adult training rows with the
same batches, optimizer and loss; they alternate epoch by epoch in one process so machine noise
hits both alike. Prints the median ratio Trainer / hand loop (goal ≥ 0.95); ``--markdown FILE``
writes or replaces the "Trainer overhead" section of FILE.

Run: .venv/bin/python benchmarks/trainer_overhead.py [--epochs 7] [--batch-size 256]
    [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _report import Section, machine, table

from polytask.config import Config, parse_config
from polytask.data import prepare_data
from polytask.data.builtin import get_builtin
from polytask.data.sampling import ShuffledBatches
from polytask.models.build import build_network
from polytask.training import Trainer

SECTION = Section("trainer_overhead", "benchmarks/trainer_overhead.py")


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


def adult_config() -> Config:
    """The built-in Adult table with the demo's network."""
    return parse_config(
        get_builtin("adult").config(model={"trunk": [128, 64], "head": [32], "dropout": 0.1})
    )


def measure(config: Config, epochs: int, batch_size: int) -> dict[str, Any]:
    """``epochs`` timed epoch pairs (after one warm-up pair): per epoch, the Trainer's samples
    per second, the hand loop's, and their ratio."""
    data = prepare_data(config)
    train = data.train["shared"]
    torch.manual_seed(0)
    model_a = build_network(config.model, data.preprocessor, data.tasks)
    model_b = copy.deepcopy(model_a)
    trainer = Trainer(
        model_a,
        data.tasks,
        optimizer=torch.optim.Adam(model_a.parameters(), lr=1e-3),
        batch_size=batch_size,
        epochs=1,
    )
    optimizer_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    source = ShuffledBatches(train, batch_size)

    ratios, trainer_rates, hand_rates = [], [], []
    for epoch in range(epochs + 1):  # the first pair warms up
        start = time.perf_counter()
        trainer._train_epoch(source, epoch, None)  # the loop fit() runs, without validation
        t_trainer = time.perf_counter() - start
        start = time.perf_counter()
        hand_loop_epoch(
            model_b,
            data.tasks,
            train,
            batch_size,
            optimizer_b,
            torch.Generator().manual_seed(epoch),
        )
        t_hand = time.perf_counter() - start
        if epoch == 0:
            continue
        trainer_rates.append(len(train) / t_trainer)
        hand_rates.append(len(train) / t_hand)
        ratios.append(t_hand / t_trainer)
    return {
        "rows": len(train),
        "batch_size": batch_size,
        "epochs": epochs,
        "trainer": trainer_rates,
        "hand": hand_rates,
        "ratios": ratios,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def summary(result: dict[str, Any]) -> str:
    """The figures as plain lines, for the terminal."""
    ratios = result["ratios"]
    return "\n".join(
        [
            f"rows per epoch: {result['rows']}, batch size {result['batch_size']}, "
            f"{result['epochs']} epochs",
            f"hand-written loop: {statistics.median(result['hand']):,.0f} samples/s (median)",
            f"polytask Trainer:  {statistics.median(result['trainer']):,.0f} samples/s (median)",
            f"ratio Trainer / hand loop: {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f})",
        ]
    )


def markdown(result: dict[str, Any], command: str) -> str:
    """The section, markers included."""

    def rates(values: list[float]) -> list[str]:
        return [f"{statistics.median(values):,.0f}", f"{min(values):,.0f}–{max(values):,.0f}"]

    ratios = result["ratios"]
    rows = [
        ["hand-written PyTorch loop", *rates(result["hand"])],
        ["polytask `Trainer`", *rates(result["trainer"])],
    ]
    return SECTION.wrap(
        "\n".join(
            [
                "## Trainer overhead",
                "",
                f"Regenerate: `{command}`",
                "",
                "Training samples per second of the `Trainer`'s epoch loop and of a hand-written "
                "loop over the same model (the demo's network), rows, batches, optimizer and "
                f"loss, alternating epoch by epoch: {result['rows']:,} rows per epoch, batch "
                f"size {result['batch_size']}, {result['epochs']} timed epochs after one warm-up "
                f"epoch each. Machine: {result['machine']}. Run of {result['date']}.",
                "",
                table(["loop", "samples/s (median)", "min–max"], rows, right=2),
                "",
                f"Ratio Trainer / hand loop: **{statistics.median(ratios):.3f}** (median; "
                f"min {min(ratios):.3f}, max {max(ratios):.3f}; goal ≥ 0.95).",
            ]
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--markdown", type=Path, default=None, help="write/replace the section")
    args = parser.parse_args(argv)
    result = measure(adult_config(), args.epochs, args.batch_size)
    print(summary(result))
    if args.markdown is not None:
        SECTION.write(args.markdown, markdown(result, SECTION.command(argv)))
        print(f"wrote {args.markdown}")
    return result


if __name__ == "__main__":
    main()
