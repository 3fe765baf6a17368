"""Figures written into run directories (matplotlib, no display needed)."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

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
            if all(math.isnan(v) for v in train):
                continue  # a single-task baseline of another task
            (line,) = ax.plot(epochs, train, label=f"{label} train")
            ax.plot(epochs, val, linestyle="--", color=line.get_color(), label=f"{label} val")
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    return save_figure(fig, path)


def plot_weights(history: Sequence[EpochLog], path: Path) -> Path | None:
    """Balancer weights over training: sampled per-step values (thin) and epoch means (bold).

    Returns None (and writes nothing) when every weight stayed constant, as with equal weights.
    """
    tasks = sorted({n for log in history for n in log.weights})
    values = {v for log in history for w in log.step_weights.values() for v in w}
    if not tasks or len(values) <= 1:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for task in tasks:
        xs, ys = [], []
        for log in history:
            steps = log.step_weights.get(task, [])
            xs += [log.epoch - 1 + (i + 0.5) / len(steps) for i in range(len(steps))]
            ys += steps
        (line,) = ax.plot(xs, ys, alpha=0.35, linewidth=0.8)
        means = [log.weights.get(task, math.nan) for log in history]
        ax.plot(
            [log.epoch - 0.5 for log in history],
            means,
            marker="o",
            linewidth=2,
            color=line.get_color(),
            label=task,
        )
    magnitudes = [abs(v) for v in values if v != 0 and math.isfinite(v)]
    if magnitudes and max(magnitudes) / min(magnitudes) > 100:
        ax.set_yscale("symlog", linthresh=min(magnitudes))  # weights spanning decades
    ax.set_xlabel("epoch")
    ax.set_ylabel("task weight")
    ax.set_title("Balancer weights (thin: sampled steps, bold: epoch mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_learning_rates(history: Sequence[EpochLog], path: Path) -> Path | None:
    """Each parameter group's learning rate per epoch (``EpochLog.lr``), on a log scale.

    Returns None (and writes nothing) when no learning rate changed during training."""
    groups = list(dict.fromkeys(name for log in history for name in log.lr))
    values = {name: [log.lr.get(name, math.nan) for log in history] for name in groups}
    if not any(len(set(v)) > 1 for v in values.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    epochs = [log.epoch for log in history]
    styles = ("-", "--", ":", "-.")  # groups on the same schedule overlap: keep each visible
    for i, name in enumerate(groups):
        ax.plot(
            epochs,
            values[name],
            marker="o",
            markersize=max(2.0, 7.0 - 1.5 * (i % 4)),
            linestyle=styles[i % len(styles)],
            drawstyle="steps-post",
            label=name,
        )
    if all(v > 0 for vs in values.values() for v in vs if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate per parameter group")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def write_relationships(
    names: Sequence[str], matrix: Sequence[Sequence[float]], csv_path: Path, png_path: Path
) -> None:
    """A task-by-task matrix (e.g. learned task correlations) as a CSV table (a header row of
    task names, then one row per task led by its name) and a heatmap."""
    size = len(names)
    values = [[float(v) for v in row] for row in matrix]
    if len(values) != size or any(len(row) != size for row in values):
        raise ValueError(f"relationships: expected a {size} x {size} matrix")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_suffix(".tmp.csv")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", *names])
        for name, row in zip(names, values, strict=True):
            writer.writerow([name, *(f"{v:.6g}" for v in row)])
    tmp.replace(csv_path)
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * size, 1.8 + 0.55 * size))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(size), names, rotation=45, ha="right")
    ax.set_yticks(range(size), names)
    if size <= 15:
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                colour = "white" if abs(v) > 0.6 else "black"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize="small", color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("Task relationships")
    save_figure(fig, png_path)


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_affinity(
    names: Sequence[str], matrix: Any, order: Sequence[int], method: str, path: Path
) -> Path:
    """Heatmap of a T×T task affinity, tasks in ``order`` (by cluster); the colour scale spans
    the off-diagonal entries."""
    return save_figure(affinity_figure(names, matrix, order, method), path)


def affinity_figure(names: Sequence[str], matrix: Any, order: Sequence[int], method: str):
    """The figure of :func:`plot_affinity` (the caller closes it)."""
    values = np.asarray(matrix, dtype=float)[np.ix_(order, order)]
    labels = [names[i] for i in order]
    size = max(3.5, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    off = values[~np.eye(len(values), dtype=bool)]  # the colour scale: the pairs, not the
    off = off[np.isfinite(off)]  # diagonal (1 for cosines), which saturates
    limit = float(np.abs(off).max()) if off.size else 0.0
    limit = limit or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    if method == "tag":
        ax.set_xlabel("task j (helped)")
        ax.set_ylabel("task i (stepped on)")
        ax.set_title("TAG lookahead affinity Z(i→j)")
    else:
        ax.set_title("Gradient cosine")
    fig.colorbar(image, ax=ax)
    return fig
