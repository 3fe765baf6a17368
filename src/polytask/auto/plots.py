"""The study's pictures: optimisation history and parameter importances (optuna's matplotlib
backend), and, for two or three main tasks, the Pareto front of the trials' validation changes
per task."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from polytask.reporting.plots import plt, save_figure

HISTORY = "history.png"
IMPORTANCES = "importances.png"
PARETO = "pareto.png"


def write_plots(study: optuna.Study, tasks: Sequence[str], folder: Path) -> list[str]:
    """Write the pictures that the study can show into ``folder``; returns one line for each
    one it could not draw, saying why."""
    notes = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings(), plt.rc_context():  # optuna sets a style; keep it here
        warnings.simplefilter("ignore")  # optuna's experimental-API and few-trials notices
        if complete:
            axes = optuna.visualization.matplotlib.plot_optimization_history(
                study, target_name="validation Δm (%)"
            )
            save_figure(axes.figure, folder / HISTORY)
        else:
            notes.append(f"{HISTORY}: no trial finished")
        varied = {name for t in complete for name in t.params}
        if len(complete) >= 2 and varied:
            try:
                axes = optuna.visualization.matplotlib.plot_param_importances(
                    study, target_name="validation Δm"
                )
                save_figure(axes.figure, folder / IMPORTANCES)
            except (RuntimeError, ValueError) as exc:  # e.g. every trial sampled the same point
                plt.close("all")
                notes.append(f"{IMPORTANCES}: not drawn ({exc})")
        else:
            notes.append(f"{IMPORTANCES}: needs two finished trials and a searched parameter")
    if 2 <= len(tasks) <= 3:
        points = [
            (t.number, [_value(t.user_attrs.get("changes", {}).get(task)) for task in tasks])
            for t in complete
        ]
        points = [(n, p) for n, p in points if all(math.isfinite(v) for v in p)]
        if points:
            plot_pareto(points, tasks, folder / PARETO)
        else:
            notes.append(f"{PARETO}: no finished trial has every task's change")
    return notes


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (every coordinate higher is better)."""
    front = []
    for i, p in enumerate(points):
        dominated = any(
            all(b >= a for a, b in pairs) and any(b > a for a, b in pairs)
            for j, q in enumerate(points)
            if j != i and (pairs := list(zip(p, q, strict=True)))
        )
        if not dominated:
            front.append(i)
    return front


def plot_pareto(
    points: Sequence[tuple[int, list[float]]], tasks: Sequence[str], path: Path
) -> Path:
    """Each finished trial's validation change per task (%, sign-corrected: higher is better)
    against the single-task baselines, the non-dominated trials highlighted."""
    values = [p for _, p in points]
    front = set(pareto_front(values))
    labels = [f"{task}: validation change vs single-task (%)" for task in tasks]
    fig = plt.figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot(projection="3d" if len(tasks) == 3 else None)
    for on_front, colour, name in ((False, "#9aa5b1", "trials"), (True, "#d1495b", "Pareto front")):
        chosen = [v for i, v in enumerate(values) if (i in front) == on_front]
        if chosen:
            ax.scatter(*zip(*chosen, strict=True), c=colour, label=name, s=30)
    if len(tasks) == 2:
        ordered = sorted(values[i] for i in front)
        ax.plot(*zip(*ordered, strict=True), c="#d1495b", lw=1)
        ax.axhline(0, c="k", lw=0.5)
        ax.axvline(0, c="k", lw=0.5)
        for i in front:
            ax.annotate(str(points[i][0]), values[i], fontsize=7)
    ax.set_xlabel(labels[0], fontsize=8)
    ax.set_ylabel(labels[1], fontsize=8)
    if len(tasks) == 3:
        ax.set_zlabel(labels[2], fontsize=8)  # type: ignore[attr-defined]
    ax.set_title("Trials on the validation split (labels: trial numbers)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _value(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan
