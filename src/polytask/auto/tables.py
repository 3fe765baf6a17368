"""Terminal tables of a study: the leaderboard and the final stage."""

from __future__ import annotations

import math

from rich.table import Table

from polytask.auto.final import FinalResult
from polytask.auto.space import shown, shown_value
from polytask.auto.study import LeaderboardRow, param_names
from polytask.results import mean_std


def leaderboard_table(rows: list[LeaderboardRow], limit: int = 15) -> Table:
    """The best ``limit`` trials (all of them are in ``leaderboard.csv``)."""
    names = param_names(rows)
    shown = rows[:limit]
    title = f"Trials by validation Δm ({len(shown)} of {len(rows)})"
    table = Table(title=title)
    for column in ("trial", "state", "val Δm %", "epochs", "s", *names, "note"):
        table.add_column(column, justify="right" if column in ("trial", "val Δm %") else "left")
    for row in shown:
        table.add_row(
            str(row.trial),
            row.state,
            _signed(row.delta_m),
            "" if row.epochs is None else str(row.epochs),
            "" if row.seconds is None else f"{row.seconds:.1f}",
            *[_cell(row.params.get(name)) for name in names],
            row.note[:60],
        )
    return table


def final_table(result: FinalResult) -> Table:
    """Each candidate's validation Δm over the seeds (the winner marked) and the winner's test
    Δm."""
    table = Table(title=f"Final stage: the best trials retrained on seeds {result.seeds}")
    table.add_column("trial", justify="right")
    table.add_column("parameters")
    table.add_column("val Δm % (mean ± std)", justify="right")
    table.add_column("test Δm % (winner only)", justify="right")
    for i, candidate in enumerate(result.candidates):
        params = shown(candidate.params)
        winner = i == result.winner
        table.add_row(
            f"{candidate.trial}{' ★' if winner else ''}",
            params,
            _mean_std(result.validation(i)),
            _mean_std(result.summaries[i].delta_m()) if winner else "",
        )
    return table


def _mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return "— (undefined)" if math.isnan(mean) else f"{mean:+.2f} ± {std:.2f}"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.2f}"


def _cell(value: object) -> str:
    return "" if value is None else shown_value(value)
