"""Architecture zoo: single-task baselines vs hard / soft / cross-stitch / MMoE / PLE sharing on
the built-in task families, with equal weights and a second balancer, over several seeds.

For every dataset × seed the single-task baselines are the ``hard`` network with one head (same
trunk, budget and seed), trained once; every architecture × balancer run of that seed is scored
against them, so Δm% of all architectures shares one reference. Every multi-task run selects its
epoch by the library's no-baseline rule (validation Δm against its own first epoch), the same for
all architectures.

The multi-task runs are the grid ``polytask compare`` trains (:func:`polytask.compare.run_grid`),
over architecture × balancer variants of the dataset's config. Each finished run is written at
once as JSON under ``OUTPUT/results/<dataset>/``; a run whose JSON exists is skipped, so an
interrupted zoo continues where it stopped, and ``--report-only`` rebuilds the tables from what is
there. ``--markdown FILE`` writes or replaces the "## Architecture zoo"
section of FILE, leaving every other section as it is.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo.py --epochs 6 --subsample 30000 \\
        --output runs/zoo --markdown docs/benchmarks.md
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one thread unless told otherwise, before torch loads
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from _report import Section, machine, pm, table

from polytask.compare import parse_balancers, run_grid, with_seed
from polytask.config import Config, load_config, parse_config
from polytask.data.builtin import BUILTIN_DATASETS, get_builtin
from polytask.data.prepare import prepare_data
from polytask.evaluation.delta_m import delta_m, metric_directions
from polytask.experiment import train_baseline
from polytask.results import mean_std
from polytask.tasks import Task
from polytask.training.checkpoint import atomic_write_json

if TYPE_CHECKING:
    from polytask.experiment import RunResult

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "configs"
DATASETS = ("adult", "bikeshare", "yeast", "multimnist", "qm9_small", "census_kdd", "penguins")
ARCHS = ("hard", "soft", "cross_stitch", "mmoe", "ple")
ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "hard": {},
    "soft": {"strength": 1e-3},
    "cross_stitch": {},
    "mmoe": {"experts": 4},
    "cgc": {},
    "ple": {"levels": 2},
}
# soft and cross_stitch keep one full tower per task: on 11-14 tasks they cost 11-14 networks,
# so they only run where a dataset has at most this many tasks.
PER_TASK_ARCHS = ("soft", "cross_stitch")
MAX_TASKS_PER_TASK_ARCHS = 4
# Built-in datasets without an example config: the model and budget the demo uses for adult.
BUILTIN_OVERRIDES: dict[str, dict[str, Any]] = {
    "adult": {
        "model": {"trunk": [128, 64], "head": [32], "dropout": 0.1},
        "training": {
            "epochs": 12,
            "batch_size": 256,
            "lr": 0.002,
            "early_stopping": {"patience": 4},
        },
    },
    "penguins": {
        "model": {"trunk": [64, 32], "head": [16], "dropout": 0.1},
        "training": {"epochs": 60, "batch_size": 32, "lr": 0.003},
    },
}
SECTION = Section("zoo", "benchmarks/zoo.py")
HEADING = "## Architecture zoo"
WIDE = 4  # more tasks than this: summarise the per-task columns

Log = Callable[[str], None]


# -- configs -----------------------------------------------------------------------------------
def base_config(dataset: str) -> Config:
    """The dataset's example config, or the built-in dataset's config with the demo's model."""
    path = EXAMPLES / f"{dataset}.yaml"
    if dataset not in BUILTIN_OVERRIDES and path.is_file():
        return load_config(path)
    raw = get_builtin(dataset).config(**BUILTIN_OVERRIDES.get(dataset, {}))
    return parse_config(raw, source=f"built-in {dataset}")


def with_budget(config: Config, epochs: int | None, source: str | None) -> Config:
    training = config.training
    if epochs is not None:  # a cap: a config asking for fewer epochs keeps its own
        training = training.model_copy(update={"epochs": min(epochs, training.epochs)})
    data = config.data
    if source is not None:
        data = data.model_copy(update={"source": source})
    return config.model_copy(update={"training": training, "data": data})


def variant(config: Config, arch: str, balancer: str, output: Path) -> Config:
    """``config`` with this architecture (and its zoo options), balancer and output; named
    ``<dataset>-<arch>-<balancer>`` (the grid adds the seed)."""
    model = config.model.model_dump()
    for key in config.model.options:  # the example's own arch options belong to its arch
        model.pop(key)
    model.update(arch=arch, **ARCH_OPTIONS.get(arch, {}))
    spec = parse_balancers(balancer)[0]
    raw = {
        **config.model_dump(),
        "model": model,
        "balancer": spec.model_dump(),
        "output_dir": str(output),
        "name": f"{config.name}-{label(arch, balancer)}",
    }
    return parse_config(raw, source=f"zoo {config.name} {arch} {balancer}")


def subsampled_source(config: Config, rows: int, folder: Path, log: Log) -> str | None:
    """A Parquet copy of the table with at most ``rows`` training rows (the other splits whole,
    the split column kept), or None when the table is small enough. Seeded: always the same rows."""
    import pandas as pd

    source = config.data.source
    if source is None:
        return None
    frame = get_builtin(source).load() if source in BUILTIN_DATASETS else _read(Path(source))
    column = config.data.split.column
    if column is not None and column in frame.columns:
        train = frame[column].astype(str) == "train"
        if int(train.sum()) <= rows:
            return None
        kept = frame[train].sample(n=rows, random_state=0)
        frame = pd.concat([kept, frame[~train]]).sort_index()
    else:
        if len(frame) <= rows:
            return None
        frame = frame.sample(n=rows, random_state=0).sort_index()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config.name}-subsample{rows}.parquet"
    frame.reset_index(drop=True).to_parquet(path, index=False)
    log(f"{config.name}: training rows subsampled to {rows:,} -> {path}")
    return str(path)


def _read(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def label(arch: str, balancer: str) -> str:
    """A variant's label: its results file is ``<label>-seed<seed>.json``."""
    return f"{arch}-{balancer.replace(':', '-')}"


def archs_for(config: Config, archs: Sequence[str]) -> list[str]:
    if len(config.tasks) <= MAX_TASKS_PER_TASK_ARCHS:
        return list(archs)
    return [a for a in archs if a not in PER_TASK_ARCHS]


# -- running -----------------------------------------------------------------------------------
def zoo(
    datasets: Sequence[str],
    archs: Sequence[str],
    balancers: Sequence[str],
    seeds: Sequence[int],
    output: Path,
    *,
    epochs: dict[str, int] | int | None = None,
    subsample: dict[str, int] | int | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Run every missing (dataset, seed, arch, balancer) and return the collected results.
    ``epochs`` caps the configs' epochs and ``subsample`` the tables' training rows: an int for
    every dataset, or ``{dataset: n}`` for the named ones (``"*"``: the others)."""
    output = Path(output)
    for dataset in datasets:
        config = base_config(dataset)
        rows = _for(subsample, dataset)
        source = subsampled_source(config, rows, output / "data", log) if rows else None
        config = with_budget(config, _for(epochs, dataset), source)
        _run_dataset(config, dataset, archs_for(config, archs), balancers, seeds, output, log)
    return collect(output, datasets)


def _run_dataset(
    config: Config,
    dataset: str,
    archs: Sequence[str],
    balancers: Sequence[str],
    seeds: Sequence[int],
    output: Path,
    log: Log,
) -> None:
    """Each seed's single-task networks (the reference), then the grid of every architecture ×
    balancer variant over the seeds, each run saved as it ends; what is saved already is skipped."""
    folder, runs = output / "results" / dataset, output / "runs"
    references = {}
    for seed in seeds:
        single = folder / f"single-seed{seed}.json"
        if not single.is_file():
            log(f"[{dataset}] single-task baselines, seed {seed}")
            hard = with_seed(variant(config, "hard", "ew", runs), seed)
            atomic_write_json(single, _baselines(hard, runs))
        references[seed] = json.loads(single.read_text())
    cells = {label(a, b): (a, b) for a in archs for b in balancers}
    variants = {name: variant(config, *cell, runs) for name, cell in cells.items()}

    def done(name: str, seed: int) -> bool:
        return (folder / f"{name}-seed{seed}.json").is_file()

    def save(name: str, seed: int, result: RunResult) -> None:
        record = _multitask(with_seed(variants[name], seed), result, references[seed])
        arch, balancer = cells[name]
        record.update(arch=arch, balancer=balancer)
        atomic_write_json(folder / f"{name}-seed{seed}.json", record)
        log(
            f"  Δm {record['delta_m']:+.2f}%  {record['seconds_per_epoch']:.2f} s/epoch  "
            f"{record['epochs']} epochs"
        )

    run_grid(
        variants,
        seeds,
        baselines=False,
        skip=done,
        finished=save,
        report=lambda message: log(f"[{dataset}] {message}"),
    )


def _baselines(config: Config, runs: Path) -> dict[str, Any]:
    data = prepare_data(config)
    tasks = [t for t in data.tasks if not t.auxiliary]
    results = {t.name: train_baseline(config, data, t, runs / "baselines") for t in tasks}
    per_epoch = [
        statistics.fmean(log["seconds"] for log in r.history) for r in results.values() if r.history
    ]
    return {
        "dataset": config.data.source,
        "seed": config.training.seed,
        "test": {name: r.test[name] for name, r in results.items()},
        "validation": {name: r.validation[name] for name, r in results.items()},
        "parameters": sum(r.parameters for r in results.values()),
        "epochs": max((len(r.history) for r in results.values()), default=0),
        # training every single-task network once costs the sum of their epochs
        "seconds_per_epoch": sum(per_epoch),
        "tasks": _task_info(tasks),
        "config": config.model_dump(mode="json"),
    }


def _multitask(config: Config, result: RunResult, reference: dict[str, Any]) -> dict[str, Any]:
    """One run's record: its test metrics and Δm% against its seed's single-task networks."""
    tasks = [t for t in result.tasks if not t.auxiliary]
    directions = metric_directions(tasks)
    test = result.multitask.test
    history = result.multitask.history
    return {
        "seed": config.training.seed,
        "test": {t.name: test[t.name] for t in tasks},
        "delta_m": delta_m(test, reference["test"], directions, config.evaluation.delta_m),
        "delta_m_validation": delta_m(
            result.multitask.validation,
            reference["validation"],
            directions,
            config.evaluation.delta_m,
        ),
        "parameters": result.multitask.parameters,
        "epochs": len(history),
        "best_epoch": result.multitask.best_epoch,
        "seconds_per_epoch": statistics.fmean(h["seconds"] for h in history)
        if history
        else math.nan,
        "run_dir": str(result.run_dir),
        "tasks": _task_info(tasks),
    }


def _task_info(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "metric": t.metrics[0], "direction": t.direction(t.metrics[0])}
        for t in tasks
    ]


# -- collecting and tables ---------------------------------------------------------------------
def collect(output: Path, datasets: Sequence[str] | None = None) -> dict[str, Any]:
    """``{dataset: {"tasks": [...], "rows": [row, ...]}}`` from the JSON files in ``output``;
    a row is one (arch, balancer) with mean ± std over the seeds found."""
    results = Path(output) / "results"
    names = datasets or sorted(p.name for p in results.iterdir() if p.is_dir())
    collected: dict[str, Any] = {}
    for dataset in names:
        folder = results / dataset
        singles = {r["seed"]: r for r in _load(folder.glob("single-seed*.json"))}
        if not singles:
            continue
        tasks = next(iter(singles.values()))["tasks"]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in _load(folder.glob("*.json")):
            if "arch" in record and record["seed"] in singles:
                groups.setdefault((record["arch"], record["balancer"]), []).append(record)
        rows = [_row("single-task", "—", list(singles.values()), tasks, singles)]
        order = {a: i for i, a in enumerate((*ARCHS, "cgc", "tied", "groups"))}
        for (arch, balancer), records in sorted(
            groups.items(), key=lambda item: (order.get(item[0][0], 99), item[0])
        ):
            rows.append(_row(arch, balancer, records, tasks, singles))
        collected[dataset] = {"tasks": tasks, "rows": rows}
    return collected


def _load(paths: Any) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(paths)]


def _row(
    arch: str,
    balancer: str,
    records: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    singles: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    metrics = {
        t["name"]: mean_std([r["test"][t["name"]][t["metric"]] for r in records]) for t in tasks
    }
    better = []  # per seed: tasks whose main metric beats the same seed's single-task network
    for r in records:
        base = singles[r["seed"]]["test"]
        count = 0
        for t in tasks:
            new, old = r["test"][t["name"]][t["metric"]], base[t["name"]][t["metric"]]
            count += (new > old) if t["direction"] == "higher" else (new < old)
        better.append(float(count))
    single = arch == "single-task"
    return {
        "arch": arch,
        "balancer": balancer,
        "seeds": sorted(r["seed"] for r in records),
        "metrics": metrics,
        "delta_m": (0.0, 0.0) if single else mean_std([r["delta_m"] for r in records]),
        "better": None if single else mean_std(better),
        "seconds_per_epoch": mean_std([r["seconds_per_epoch"] for r in records]),
        "epochs": mean_std([float(r["epochs"]) for r in records]),
        "parameters": records[0]["parameters"],
    }


def dataset_table(dataset: str, block: dict[str, Any]) -> str:
    tasks = block["tasks"]
    wide = len(tasks) > WIDE
    if wide:
        metric_names = sorted({t["metric"] for t in tasks})
        task_cols = [f"mean {'/'.join(metric_names)} over {len(tasks)} tasks", "tasks better"]
    else:
        task_cols = [
            f"{t['name']} {t['metric']} {'↑' if t['direction'] == 'higher' else '↓'}" for t in tasks
        ]
    header = ["model", "balancer", *task_cols, "Δm% ↑", "s / epoch", "epochs", "params"]
    rows = []
    for row in block["rows"]:
        if wide:
            seeds_means = statistics.fmean(row["metrics"][t["name"]][0] for t in tasks)
            cells = [f"{seeds_means:.3f}", "—" if row["better"] is None else pm(row["better"], 1)]
        else:
            cells = [pm(row["metrics"][t["name"]]) for t in tasks]
        delta = (
            "0 (reference)" if row["arch"] == "single-task" else pm(row["delta_m"], 2, sign=True)
        )
        rows.append(
            [
                row["arch"],
                row["balancer"],
                *cells,
                delta,
                pm(row["seconds_per_epoch"], 2),
                f"{row['epochs'][0]:.1f}",
                f"{row['parameters']:,}",
            ]
        )
    return table(header, rows, right=len(header) - 2)


def markdown(collected: dict[str, Any], command: str, meta: str = "") -> str:
    """The section, markers included; a hand-written reading placed after the end marker
    survives regeneration (:meth:`_report.Section.write`)."""
    parts = [
        HEADING,
        "",
        f"Regenerate: `{command}`",
        "",
        meta,
        "",
        "Rows: the single-task networks (`hard` with one head: same trunk, budget and seed; the "
        "reference of every Δm in the table), then each architecture × balancer (`ew`: equal "
        "weights). Architecture options: mmoe 4 experts, ple 2 levels (1 shared + 1 task "
        "expert), soft L2 strength 1e-3, cross_stitch defaults; soft and cross_stitch keep one "
        "tower per task and are run only up to four tasks. Cells are test-set mean ± std over "
        "the seeds of each task's main (first) metric; Δm% (the config's convention: every "
        "metric of a task, averaged per task) is computed per seed against that seed's "
        "single-task networks, positive = multi-task better. Every multi-task run picks its "
        "epoch by validation Δm against its own first epoch (the same rule for every "
        "architecture). *s / epoch*: mean training wall time per epoch as the runs report it; "
        "for the single-task row, the sum over the task's networks (training all of them). "
        "*epochs*: mean epochs run (early stopping where the config has it). With more than "
        "four tasks the per-task columns are summarised: the mean of the main metric over "
        "tasks, and in how many tasks the multi-task model beats its seed's single-task "
        "network (mean ± std over seeds).",
    ]
    for dataset, block in collected.items():
        parts += ["", f"### {dataset}", "", dataset_table(dataset, block)]
    return SECTION.wrap("\n".join(parts))


# -- command line ------------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def per_dataset(text: str | None) -> dict[str, int] | int | None:
    """``"6"`` (every dataset), ``"census_kdd=30000"`` (named ones) or ``"6,penguins=60"``
    (a default and exceptions; the default is stored under ``"*"``)."""
    if not text:
        return None
    if "=" not in text:
        return int(text)
    values: dict[str, int] = {}
    for item in _csv(text):
        name, sep, value = item.partition("=")
        values[name.strip() if sep else "*"] = int(value if sep else name)
    return values


def _for(value: dict[str, int] | int | None, dataset: str) -> int | None:
    return value.get(dataset, value.get("*")) if isinstance(value, dict) else value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--balancers", default="ew,famo")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--epochs",
        default=None,
        help="cap the configs' epochs: N, or N with exceptions: '6,penguins=60'",
    )
    parser.add_argument(
        "--subsample",
        default=None,
        help="at most N training rows per table, or per named table: 'census_kdd=30000,...' "
        "(a seeded Parquet copy of the table; the other splits are kept whole)",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/zoo"))
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true", help="tables from existing JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    datasets = _csv(args.datasets)
    started = time.perf_counter()
    if args.report_only:
        collected = collect(args.output, datasets)
    else:
        collected = zoo(
            datasets,
            _csv(args.archs),
            _csv(args.balancers),
            [int(s) for s in _csv(args.seeds)],
            args.output,
            epochs=per_dataset(args.epochs),
            subsample=per_dataset(args.subsample),
        )
        print(f"zoo finished in {time.perf_counter() - started:.0f} s ({machine()})")
    for dataset, block in collected.items():
        print(f"\n{dataset}\n{dataset_table(dataset, block)}")
    if args.markdown:
        command = SECTION.command(
            argv, prefix="OMP_NUM_THREADS=1 .venv/bin/python", drop=["--report-only"]
        )
        meta = (
            f"Budget: epochs capped at {args.epochs or 'the config value'}, training rows "
            f"subsampled: {args.subsample or 'none'}; seeds {args.seeds}. Machine: {machine()}."
        )
        SECTION.write(args.markdown, markdown(collected, command, meta))
        print(f"section written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
