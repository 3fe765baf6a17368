"""Rich tables for the terminal: single-task vs multi-task metrics, Δm, size and time, and each
task's negative-transfer verdict over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.table import Table

from polytask.evaluation.verdict import ALPHA, TEST, TaskVerdict
from polytask.results import BalancerSummary, RunResult, mean_std
from polytask.tasks import Task


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def results_table(result: RunResult) -> Table:
    """Per task and metric: baseline, multi-task, sign-corrected relative change."""
    table = Table(title="Test metrics: single-task baselines vs multi-task model")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("better", justify="center")
    table.add_column("single-task", justify="right")
    table.add_column("multi-task", justify="right")
    table.add_column("change %", justify="right")
    for task in result.tasks:
        for metric in task.metrics:
            baseline = result.baselines.get(task.name)
            single = baseline.test[task.name][metric] if baseline else math.nan
            change = result.changes_test.get(task.name, {}).get(metric, math.nan)
            style = "green" if change > 0 else "red" if change < 0 else ""
            table.add_row(
                f"{task.name} (auxiliary)" if task.auxiliary else task.name,
                metric,
                "↑" if task.direction(metric) == "higher" else "↓",
                _fmt(single),
                _fmt(result.multitask.test[task.name][metric]),
                f"[{style}]{_fmt(change, 2)}[/]" if style else _fmt(change, 2),
            )
    return table


def summary_table(result: RunResult) -> Table:
    """Δm, parameter counts and wall time of the multi-task model against all baselines."""
    table = Table(title="Summary")
    table.add_column("")
    table.add_column("single-task (all)", justify="right")
    table.add_column("multi-task", justify="right")
    base = result.baselines.values()
    table.add_row(
        "parameters",
        f"{sum(b.parameters for b in base):,}" if base else "—",
        f"{result.multitask.parameters:,}",
    )
    table.add_row(
        "training wall time (s)",
        f"{sum(b.seconds for b in base):.1f}" if base else "—",
        f"{result.multitask.seconds:.1f}",
    )
    table.add_row("Δm% on test (validation)", "", _delta(result))
    return table


def _delta(result: RunResult) -> str:
    if not result.baselines:
        return "— (no baselines)"
    test, val = result.delta_m_test, result.delta_m_validation
    if test is None or not math.isfinite(test):
        return f"— (undefined) ({_signed(val)})"
    style = "green" if test > 0 else "red"
    return f"[{style}]{test:+.2f}[/] ({_signed(val)})"


def _signed(value: float | None) -> str:
    """A Δm-like value with its sign, "—" when undefined."""
    return "—" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def metrics_table(
    metrics: Mapping[str, Mapping[str, float]], tasks: list[Task], title: str
) -> Table:
    """A plain metrics table (for ``polytask evaluate``)."""
    table = Table(title=title)
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task in tasks:
        for metric in task.metrics:
            table.add_row(task.name, metric, _fmt(metrics[task.name][metric]))
    return table


def comparison_table(
    summaries: Sequence[BalancerSummary], baselines: Mapping[str, Mapping[str, list[float]]]
) -> Table:
    """Balancers as rows: per-task test metrics and Δm% as mean ± std over seeds."""
    first = summaries[0].runs[0]
    table = Table(
        title=f"Balancers compared (test, mean ± std over {len(summaries[0].runs)} seeds)"
    )
    table.add_column("method")
    columns = [(t.name, m, t.direction(m)) for t in first.tasks for m in t.metrics]
    for task, metric, direction in columns:
        table.add_column(
            f"{task}\n{metric} {'↑' if direction == 'higher' else '↓'}", justify="right"
        )
    table.add_column("Δm%", justify="right")
    table.add_column("time (s)", justify="right")

    def cell(values: list[float], digits: int = 4) -> str:
        mean, std = mean_std(values)
        return "—" if not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    table.add_row(
        "single-task",
        *[
            cell(baselines[task][metric]) if task in baselines else "—"
            for task, metric, _ in columns
        ],
        "0 (reference)",
        "",
    )
    for summary in summaries:
        table.add_row(
            summary.name,
            *[cell(summary.metric(task, metric)) for task, metric, _ in columns],
            cell(summary.delta_m(), 2),
            cell(summary.seconds(), 1),
        )
    return table


def comparison_markdown(
    summaries: Sequence[BalancerSummary], baselines: Mapping[str, Mapping[str, list[float]]]
) -> str:
    """The comparison as a Markdown table (``polytask compare --markdown``)."""
    first = summaries[0].runs[0]
    columns = [(t.name, m) for t in first.tasks for m in t.metrics]

    def cell(values: list[float], digits: int = 4) -> str:
        mean, std = mean_std(values)
        return "—" if not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    header = ["method", *(f"{t} {m}" for t, m in columns), "Δm%", "train time (s)", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    single = [cell(baselines[t][m]) if t in baselines else "—" for t, m in columns]
    lines.append("| single-task | " + " | ".join(single) + " | 0 (reference) | | |")
    for summary in summaries:
        row = [cell(summary.metric(t, m)) for t, m in columns]
        row += [cell(summary.delta_m(), 2), cell(summary.seconds(), 1)]
        row.append(_verdict_cell(summary.verdicts()))
        lines.append(f"| {summary.name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


VERDICT_STYLES = {"helps": "green", "hurts": "red"}


def _mean_std(verdict: TaskVerdict) -> str:
    if not math.isfinite(verdict.mean):
        return "—"
    return f"{verdict.mean:+.2f} ± {verdict.std:.2f}"


def _agreement(verdict: TaskVerdict) -> str:
    """The sign agreement: on how many of the usable seeds the multi-task model did better."""
    return f"{verdict.better}/{verdict.used} better" if verdict.used else "—"


def _outcome(verdict: TaskVerdict) -> str:
    style = VERDICT_STYLES.get(verdict.outcome)
    return f"[{style}]{verdict.outcome}[/]" if style else verdict.outcome


def verdict_table(verdicts: Mapping[str, TaskVerdict], seeds: Sequence[int]) -> Table:
    """Per task: its change (%) on each seed, mean ± std, sign agreement, p-value, verdict."""
    table = Table(
        title=f"Change per task, multi-task vs single-task paired by seed ({len(seeds)} seeds)"
    )
    table.add_column("task")
    for seed in seeds:
        table.add_column(f"seed {seed}\nchange %", justify="right")
    table.add_column("mean ± std %", justify="right")
    table.add_column("seeds", justify="right")
    table.add_column("left out", justify="right")
    table.add_column("p", justify="right")
    table.add_column("verdict")
    for task, verdict in verdicts.items():
        table.add_row(
            task,
            *[_signed(change) for change in verdict.changes],
            _mean_std(verdict),
            _agreement(verdict),
            str(verdict.excluded) if verdict.excluded else "",
            _fmt(verdict.p_value, 3),
            _outcome(verdict),
        )
    return table


def verdict_summary(verdicts: Mapping[str, TaskVerdict], seeds: int, config: str) -> list[str]:
    """The verdict in sentences: which test, which tasks sharing hurts or helps, what was left
    out, and where to look next (``polytask affinity``) when a task suffers."""
    if seeds < 2:
        return [
            "One seed: no verdict is possible (a paired test needs at least two seeds); "
            "train with e.g. --seeds 0,1,2 to test whether sharing helps or hurts each task."
        ]
    alpha = next(iter(verdicts.values())).alpha if verdicts else ALPHA
    lines = [
        f"Verdict per task: {TEST} (alpha = {alpha}) over {seeds} seeds; with few seeds only "
        "large, consistent effects count as helps or hurts."
    ]
    by_outcome: dict[str, list[str]] = {}
    for task, verdict in verdicts.items():
        by_outcome.setdefault(verdict.outcome, []).append(task)
    hurt = by_outcome.get("hurts", [])
    if hurt:
        lines.append(f"[red]Sharing hurts: {', '.join(hurt)}.[/]")
    if by_outcome.get("helps"):
        lines.append(f"[green]Sharing helps: {', '.join(by_outcome['helps'])}.[/]")
    if by_outcome.get("no clear difference"):
        lines.append(f"No clear difference: {', '.join(by_outcome['no clear difference'])}.")
    for task, verdict in verdicts.items():
        if verdict.excluded:
            lines.append(
                f"'{task}': {verdict.excluded} of {len(verdict.changes)} seeds left out "
                f"(change undefined: a reference of 0, missing or not finite)"
                + (f"; {verdict.used} left, no verdict" if verdict.used < 2 else "")
            )
    if hurt:
        lines.append(
            "To see which tasks belong together, measure their affinity: "
            f"polytask affinity {config}"
        )
    elif verdicts:
        lines.append("No task is clearly hurt by sharing.")
    return lines


def verdict_markdown(verdicts: Mapping[str, TaskVerdict], seeds: Sequence[int]) -> str:
    """The per-task verdict table as Markdown (``polytask train --seeds --markdown``)."""
    header = ["task", *(f"seed {s} change %" for s in seeds)]
    header += ["mean ± std %", "seeds", "left out", "p", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, verdict in verdicts.items():
        row = [task, *(_signed(change) for change in verdict.changes), _mean_std(verdict)]
        row += [_agreement(verdict), str(verdict.excluded), _fmt(verdict.p_value, 3)]
        lines.append("| " + " | ".join([*row, verdict.outcome]) + " |")
    return "\n".join(lines) + "\n"


def comparison_verdict_table(summaries: Sequence[BalancerSummary]) -> Table:
    """Balancers as rows, main tasks as columns: mean ± std change (%) over seeds, the sign
    agreement and the paired test's verdict."""
    verdicts = {summary.name: summary.verdicts() for summary in summaries}
    tasks = list(next(iter(verdicts.values()), {}))
    table = Table(
        title=f"Change per task vs single-task, paired by seed ({len(summaries[0].runs)} seeds)"
    )
    table.add_column("method")
    for task in tasks:
        table.add_column(f"{task}\nchange %", justify="right")
    for name, per_task in verdicts.items():
        table.add_row(
            name,
            *[
                f"{_mean_std(v)} ({_agreement(v)})\n{_outcome(v)}"
                + (f", {v.excluded} left out" if v.excluded else "")
                for v in per_task.values()
            ],
        )
    return table


def _verdict_cell(verdicts: Mapping[str, TaskVerdict]) -> str:
    """One balancer's verdicts in a few words, for the comparison's Markdown table."""
    if all(v.outcome == "no verdict" for v in verdicts.values()):
        return "no verdict"
    words = []
    for outcome in ("hurts", "helps"):
        tasks = [task for task, v in verdicts.items() if v.outcome == outcome]
        if tasks:
            words.append(f"{outcome}: {', '.join(tasks)}")
    return "; ".join(words) or "no clear difference"


def comparison_verdict_summary(summaries: Sequence[BalancerSummary], config: str) -> list[str]:
    """The comparison's verdicts in sentences: the test, and per balancer the tasks that sharing
    hurts, with the pointer to ``polytask affinity`` when any does."""
    seeds = len(summaries[0].runs) if summaries else 0
    if seeds < 2:
        return verdict_summary({}, seeds, config)
    lines = [verdict_summary({}, seeds, config)[0]]
    hurt = False
    for summary in summaries:
        tasks = [t for t, v in summary.verdicts().items() if v.outcome == "hurts"]
        if tasks:
            hurt = True
            lines.append(f"[red]{summary.name}: sharing hurts {', '.join(tasks)}.[/]")
    if hurt:
        lines.append(
            "To see which tasks belong together, measure their affinity: "
            f"polytask affinity {config}"
        )
    else:
        lines.append("No balancer clearly hurts any task.")
    return lines


def affinity_table(names: Sequence[str], matrix: Sequence[Sequence[float]], method: str) -> Table:
    """The T×T task affinity (for ``tag``: row i stepped on, column j helped)."""
    title = "TAG lookahead affinity Z(i→j)" if method == "tag" else "Gradient cosine"
    table = Table(title=title)
    table.add_column("i \\ j" if method == "tag" else "task")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, matrix, strict=True):
        table.add_row(name, *(f"{float(v):.3g}" if math.isfinite(v) else "—" for v in row))
    return table


def groupings_table(rows: Sequence[tuple[int, float, list[list[str]], str]]) -> Table:
    """One row per number of groups k: its score, its groups and the config written."""
    table = Table(title="Task groupings (score: mean affinity a task receives from its group)")
    for column in ("k", "score", "groups", "config"):
        table.add_column(column, justify="right" if column in ("k", "score") else "left")
    for k, score, groups, path in rows:
        text = " | ".join(", ".join(group) for group in groups)
        table.add_row(str(k), f"{score:.4g}" if math.isfinite(score) else "—", text, path)
    return table
