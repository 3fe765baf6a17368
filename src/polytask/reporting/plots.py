"""Figures written into run directories (matplotlib, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from polytask.training.trainer import EpochLog


def plot_loss_curves(
    histories: Mapping[str, Sequence[EpochLog]], tasks: Sequence[str], path: Path
) -> Path:
    """One panel per task: training (solid) and validation (dashed) loss per epoch."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for label, history in histories.items():
            epochs = [log.epoch for log in history]
            train = [log.train_loss.get(task, math.nan) for log in history]
            val = [log.val_loss.get(task, math.nan) for log in history]
            (line,) = ax.plot(epochs, train, label=f"{label} train")
            ax.plot(epochs, val, linestyle="--", color=line.get_color(), label=f"{label} val")
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
