"""``polytask auto`` against hard sharing with equal weights and the zoo's best row.

For each dataset the example config (epochs capped) gets an ``auto:`` section and goes through
:func:`polytask.auto.run.run_auto`: search baselines, search, final stage on the seeds. Then the
same config with ``model.arch: hard`` and ``balancer: equal`` is trained on the same seeds with
:func:`polytask.compare.train_seeds`, in the study's ``final/`` folder, so it is scored against
the very single-task baselines the final stage trained (same settings, same cache keys; the
script records whether every one was reused). Where the zoo (docs/benchmarks.md) has the
dataset, its best architecture and balancer are trained the same way, as a control under the
same protocol. Each finished dataset is written to ``OUTPUT/results/<label>.json``; a rerun
reads it back instead of training, and ``--report-only`` only rebuilds the tables. An entry of
``--datasets`` is a dataset, optionally with its trials and a named search space
(``qm9_small:48``, ``qm9_small:16@experts``). ``--markdown FILE`` writes or replaces the
generated section of FILE, leaving the rest of it as it is.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/auto.py \\
        --datasets planted,yeast,qm9_small,qm9_small:48,qm9_small:16@experts \\
        --timeout qm9_small:48=1800 --output runs/auto-bench --markdown docs/auto.md
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one thread unless told otherwise, before torch loads
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from _report import Section, machine, pm, table

from polytask.auto.run import AutoOptions, run_auto
from polytask.compare import train_seeds, with_seed
from polytask.config import Config, load_config, parse_config
from polytask.experiment import run_experiment
from polytask.results import BalancerSummary, load_run_result, mean_std
from polytask.training.checkpoint import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "configs"
DATASETS = ("planted", "yeast", "qm9_small")
SECTION = Section("auto", "benchmarks/auto.py")
HEADING = "## Benchmark: auto against hard sharing and the zoo"
VERDICTS = ("helps", "hurts", "no clear difference", "no verdict")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """A dataset's budget: the epoch cap, the study's trials, the search's time limit (seconds,
    or None), and the ``auto:`` section (the search space; ``trials`` and ``seeds`` are set
    from this budget and the command line)."""

    epochs: int
    trials: int
    timeout: float | None = None
    auto: dict[str, Any] | None = None


BUDGETS: dict[str, Budget] = {
    "planted": Budget(epochs=15, trials=20),
    "yeast": Budget(epochs=6, trials=20),
    "qm9_small": Budget(epochs=30, trials=16, timeout=1200),
}


SPACES: dict[str, dict[str, Any]] = {
    # the expert architectures with the balancers that only reweight the losses (no per-task
    # gradients): the part of the space where the zoo's best qm9_small row lies
    "experts": {
        "arch": ["mmoe", "cgc", "ple"],
        "balancer": ["equal", "uw", "dwa", "famo"],
    },
}


@dataclass(frozen=True)
class ZooRow:
    """The best row of the zoo's table for a dataset, and its hard / equal-weights row, quoted
    from docs/benchmarks.md (test Δm %, mean ± std over seeds 0, 1, 2)."""

    best: str
    best_delta_m: tuple[float, float]
    hard_delta_m: tuple[float, float]
    epochs: int
    arch: str
    options: dict[str, Any]
    balancer: str


ZOO: dict[str, ZooRow] = {
    "yeast": ZooRow("ple / ew", (-0.86, 0.55), (-2.55, 0.34), 6, "ple", {"levels": 2}, "equal"),
    "qm9_small": ZooRow(
        "ple / famo", (5.30, 3.18), (-48.35, 5.75), 30, "ple", {"levels": 2}, "famo"
    ),
}


# -- configs -----------------------------------------------------------------------------------
def bench_config(
    dataset: str, budget: Budget, seeds: Sequence[int], output: Path, base: Config | None = None
) -> Config:
    """The example config of ``dataset`` (or ``base``) with the epoch cap, the ``auto:`` section
    of ``budget`` with ``seeds`` for the final stage, and its runs under ``output/runs``."""
    config = base or load_config(EXAMPLES / f"{dataset}.yaml")
    raw = config.model_dump(mode="json")
    raw["training"]["epochs"] = min(budget.epochs, config.training.epochs)
    raw["auto"] = {**(budget.auto or {}), "trials": budget.trials, "seeds": list(seeds)}
    raw["output_dir"] = str(output / "runs")
    return parse_config(raw, source=f"auto benchmark {dataset}")


def hard_equal(config: Config, folder: Path) -> Config:
    """``config`` with hard sharing and equal weights, in ``folder`` (the study's final stage),
    named ``<name>-hard-equal``; its other settings (trunk, head, budget) are the user's."""
    return variant(config, folder, "hard", {}, "equal")


def variant(
    config: Config, folder: Path, arch: str, options: dict[str, Any], balancer: str
) -> Config:
    """``config`` with this architecture (and options) and balancer, in ``folder``, named
    ``<name>-<arch>-<balancer>``; its trunk, head and budget are the user's."""
    raw = config.model_dump(mode="json")
    raw.pop("auto", None)
    for key in config.model.options:  # the config's own options belong to its architecture
        raw["model"].pop(key)
    raw["model"].update(arch=arch, **options)
    raw["balancer"] = {"name": balancer}
    raw["name"] = f"{config.name or 'run'}-{arch}-{balancer}"
    raw["output_dir"] = str(folder)
    return parse_config(raw, source=f"auto benchmark {arch}/{balancer}")


# -- running -----------------------------------------------------------------------------------
def run_dataset(
    dataset: str,
    config: Config,
    budget: Budget,
    output: Path,
    *,
    label: str | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Auto, then hard/equal on the same seeds and baselines; the record is cached as
    ``output/results/<label>.json`` (read back when it exists: nothing is trained). ``label``
    (default: the dataset) tells two budgets of one dataset apart."""
    label = label or dataset
    cached = results_path(output, label)
    if cached.is_file():
        log(f"[{label}] read back {cached}")
        record = {"label": label, **json.loads(cached.read_text())}
    else:
        record = _auto_and_hard(dataset, config, budget, label, log)
        atomic_write_json(cached, record)
        log(f"[{label}] written to {cached}")
    zoo = ZOO.get(dataset)
    if zoo is not None and label == dataset and "zoo_config" not in record:
        record["zoo_config"] = _zoo_config(config, zoo, record, log)
        atomic_write_json(cached, record)
        log(f"[{label}] the zoo's best config added to {cached}")
    return record


def _zoo_config(config: Config, zoo: ZooRow, record: dict[str, Any], log: Log) -> dict[str, Any]:
    """The zoo's best architecture and balancer on the example config, trained on the record's
    seeds in its study's final stage against the baselines of the example config (those the
    final stage trained: the baselines follow the config, not the architecture under test), so
    with the same reference and epoch selection as auto's winner."""
    messages: list[str] = []

    def report(message: str) -> None:
        messages.append(message)
        log(f"[{record['label']}] {message}")

    started = time.perf_counter()
    folder = Path(record["study"]) / "final"
    chosen = variant(config, folder, zoo.arch, zoo.options, zoo.balancer)
    baseline = config.model_copy(update={"output_dir": str(folder)})  # as the final stage has it
    runs = []
    for seed in record["seeds"]:
        report(f"{chosen.name}, seed {seed}")
        runs.append(
            run_experiment(
                with_seed(chosen, seed), baseline_config=with_seed(baseline, seed), report=report
            )
        )
    summary = BalancerSummary(chosen.name or "zoo", runs)
    winner = [load_run_result(Path(run) / "metrics.json") for run in record["winner"]["runs"]]
    return {
        **_summary(summary),
        "name": f"{zoo.arch} / {zoo.balancer}",
        "options": zoo.options,
        "seconds": time.perf_counter() - started,
        "baselines": _reuse(
            messages, BalancerSummary("winner", winner), summary, record["baselines"]["expected"]
        ),
    }


def _auto_and_hard(
    dataset: str, config: Config, budget: Budget, label: str, log: Log
) -> dict[str, Any]:
    seeds = list(config.auto.seeds if config.auto else [])
    stamps: dict[str, float] = {}

    def report(message: str) -> None:
        if message.startswith("final stage:"):
            stamps.setdefault("final stage:", time.perf_counter())
        log(f"[{label}] {message}")

    started = time.perf_counter()
    result = run_auto(config, AutoOptions(timeout=budget.timeout), report=report)
    finished = time.perf_counter()
    final = result.final
    assert final is not None  # run_auto runs the final stage unless told not to
    messages: list[str] = []

    def report_hard(message: str) -> None:
        messages.append(message)
        log(f"[{label}] {message}")

    hard_config = hard_equal(config, result.folder / "final")
    hard = train_seeds(hard_config, seeds, report=report_hard)
    hard_seconds = time.perf_counter() - finished

    winner = final.summaries[final.winner]
    states = Counter(row.state for row in result.rows)
    tasks = [t.name for t in winner.runs[0].tasks if not t.auxiliary]
    record = {
        "dataset": dataset,
        "label": label,
        "budget": asdict(budget),
        "seeds": seeds,
        "tasks": len(tasks),
        "auto": config.auto.model_dump(mode="json") if config.auto else None,
        "study": str(result.folder),
        "search": {
            "seconds": stamps.get("final stage:", finished) - started,
            "trials": len(result.rows),
            "states": dict(states),
        },
        "final_seconds": finished - stamps.get("final stage:", finished),
        "total_seconds": finished - started,
        "candidates": [
            {
                "trial": c.trial,
                "params": c.params,
                "delta_m_validation": final.validation(i),
                "delta_m_test": final.summaries[i].delta_m(),
            }
            for i, c in enumerate(final.candidates)
        ],
        "winner": {**_summary(winner), "trial": final.candidates[final.winner].trial},
        "winner_params": final.candidates[final.winner].params,
        "hard_equal": {**_summary(hard), "seconds": hard_seconds},
        "baselines": _reuse(messages, final.summaries[final.winner], hard, len(tasks) * len(seeds)),
    }
    return record


def results_path(output: Path, label: str) -> Path:
    return Path(output) / "results" / f"{label}.json"


def _summary(summary: BalancerSummary) -> dict[str, Any]:
    verdicts = summary.verdicts()
    return {
        "delta_m_validation": [run.delta_m_validation for run in summary.runs],
        "delta_m_test": summary.delta_m(),
        "verdicts": {name: v.outcome for name, v in verdicts.items()},
        "verdict_counts": dict(Counter(v.outcome for v in verdicts.values())),
        "runs": [str(run.run_dir) for run in summary.runs],
    }


def _reuse(
    messages: Sequence[str], winner: BalancerSummary, hard: BalancerSummary, expected: int
) -> dict[str, Any]:
    """Whether hard/equal reused the final stage's baselines: every baseline line of its runs
    says "reused", and its baselines' validation scores are those of the winner's runs."""
    lines = [m for m in messages if m.startswith("baseline '")]
    reused = sum(": reused " in m for m in lines)
    same = all(
        {k: b.validation for k, b in ours.baselines.items()}
        == {k: b.validation for k, b in theirs.baselines.items()}
        for ours, theirs in zip(hard.runs, winner.runs, strict=True)
    )
    return {
        "reused": reused,
        "trained": len(lines) - reused,
        "expected": expected,
        "same_scores": same,
    }


# -- tables ------------------------------------------------------------------------------------
def _all_reused(reuse: dict[str, Any]) -> bool:
    return reuse["reused"] == reuse["expected"] and reuse["same_scores"]


def _ms(values: Sequence[float]) -> tuple[float, float]:
    return mean_std([v for v in values if v is not None])


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items()
    )


def _counts(counts: dict[str, int]) -> str:
    return " / ".join(str(counts.get(name, 0)) for name in VERDICTS[:3]) + (
        f" (+{counts['no verdict']} no verdict)" if counts.get("no verdict") else ""
    )


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """One row per dataset and model: auto's winner, hard / equal weights, the zoo's rows."""
    header = [
        "dataset",
        "model",
        "validation Δm% ↑",
        "test Δm% ↑",
        "tasks helps / hurts / no clear difference",
    ]
    rows = []
    for r in records:
        for name, block in (("auto (winner)", r["winner"]), ("hard / equal", r["hard_equal"])):
            rows.append(
                [
                    r["label"],
                    name,
                    pm(_ms(block["delta_m_validation"]), 2, sign=True),
                    pm(_ms(block["delta_m_test"]), 2, sign=True),
                    _counts(block["verdict_counts"]),
                ]
            )
        if "zoo_config" in r:
            block = r["zoo_config"]
            rows.append(
                [
                    r["label"],
                    f"zoo's best config, {block['name']}, here"
                    + ("" if _all_reused(block["baselines"]) else " (other baselines!)"),
                    pm(_ms(block["delta_m_validation"]), 2, sign=True),
                    pm(_ms(block["delta_m_test"]), 2, sign=True),
                    _counts(block["verdict_counts"]),
                ]
            )
        zoo = ZOO.get(r["dataset"])
        if zoo and r["label"] == r["dataset"]:
            for name, value in (
                (f"zoo best: {zoo.best}", zoo.best_delta_m),
                ("zoo hard / ew", zoo.hard_delta_m),
            ):
                rows.append([r["label"], name, "–", pm(value, 2, sign=True), "–"])
    return table(header, rows, right=3)


def search_table(records: Sequence[dict[str, Any]]) -> str:
    header = [
        "dataset",
        "tasks",
        "epochs",
        "trials (limit)",
        "complete / pruned / failed",
        "search s",
        "final s",
        "hard / equal s",
        "baselines reused",
    ]
    rows = []
    for r in records:
        b, s, states = r["budget"], r["search"], r["search"]["states"]
        limit = f"{b['trials']}" + (f", {b['timeout']:g} s" if b["timeout"] else "")
        reuse = r["baselines"]
        rows.append(
            [
                r["label"],
                str(r["tasks"]),
                str(b["epochs"]),
                f"{s['trials']} ({limit})",
                f"{states.get('complete', 0)} / {states.get('pruned', 0)} / "
                f"{states.get('fail', 0)}",
                f"{s['seconds']:.0f}",
                f"{r['final_seconds']:.0f}",
                f"{r['hard_equal']['seconds']:.0f}",
                f"{reuse['reused']} of {reuse['expected']}"
                + ("" if _all_reused(reuse) else " (other baselines!)"),
            ]
        )
    return table(header, rows, right=7)


def candidates_table(record: dict[str, Any]) -> str:
    """The final stage's candidates; the winner is chosen on validation Δm alone (the other
    candidates' test Δm is shown, it decided nothing)."""
    header = ["trial", "parameters", "validation Δm% ↑", "test Δm% ↑", "chosen"]
    rows = []
    for c in record["candidates"]:
        won = c["trial"] == record["winner"]["trial"]
        rows.append(
            [
                str(c["trial"]),
                _params(c["params"]),
                pm(_ms(c["delta_m_validation"]), 2, sign=True),
                pm(_ms(c["delta_m_test"]), 2, sign=True),
                "winner" if won else "",
            ]
        )
    return table(header, rows, right=3)


def verdict_line(record: dict[str, Any]) -> str:
    """The plain-words reading of a dataset's numbers."""
    auto_val, auto_test = (
        _ms(record["winner"]["delta_m_validation"]),
        _ms(record["winner"]["delta_m_test"]),
    )
    hard_val, hard_test = (
        _ms(record["hard_equal"]["delta_m_validation"]),
        _ms(record["hard_equal"]["delta_m_test"]),
    )
    beats = auto_test[0] > hard_test[0]
    parts = [
        f"auto {'beats' if beats else 'does not beat'} hard / equal weights on test "
        f"(Δm {auto_test[0]:+.2f} % against {hard_test[0]:+.2f} %; validation "
        f"{auto_val[0]:+.2f} % against {hard_val[0]:+.2f} %)",
        f"the winner ends {'at or above' if auto_val[0] >= 0 else 'below'} single-task on "
        f"validation (mean Δm {auto_val[0]:+.2f} %)",
    ]
    verdicts = record["winner"]["verdicts"]
    for outcome in ("helps", "hurts"):
        named = [task for task, v in verdicts.items() if v == outcome]
        if named:
            parts.append(f"the winner {outcome} {', '.join(named)} (paired test over the seeds)")
    if "zoo_config" in record:
        block = record["zoo_config"]
        mean = _ms(block["delta_m_test"])[0]
        parts.append(
            f"the zoo's best config ({block['name']}) trained here against the same baselines "
            f"reaches {mean:+.2f} % on test, so auto "
            + ("matches or beats" if auto_test[0] >= mean else "falls short of")
            + " it under the same protocol"
        )
    zoo = ZOO.get(record["dataset"])
    if zoo:
        relation = "matches or beats" if auto_test[0] >= zoo.best_delta_m[0] else "falls short of"
        parts.append(
            f"it {relation} the zoo's best row ({zoo.best}, {zoo.best_delta_m[0]:+.2f} %"
            + (
                f"; the zoo ran {zoo.epochs} epochs"
                if zoo.epochs != record["budget"]["epochs"]
                else ", same epoch cap"
            )
            + ")"
        )
    return "; ".join(parts) + "."


def budget_line(record: dict[str, Any]) -> str:
    """The dataset's budget and search space in words."""
    budget, auto = record["budget"], record["auto"] or {}
    limit = f", search limited to {budget['timeout']:g} s" if budget["timeout"] else ""
    space = {k: auto[k] for k in ("arch", "balancer") if auto.get(k) is not None}
    named = "; ".join(f"{k} {', '.join(v)}" for k, v in space.items()) or "the default"
    seeds = ", ".join(map(str, record["seeds"]))
    return (
        f"Budget: epochs capped at {budget['epochs']}, {budget['trials']} trials{limit}, final "
        f"stage top {auto.get('top')} on seeds {seeds}; search space: {named}."
    )


def markdown(records: Sequence[dict[str, Any]], command: str, meta: str = "") -> str:
    parts = [
        HEADING,
        "",
        f"Regenerate: `{command}`",
        "",
        meta,
        "",
        "Δm% is mean ± std over the seeds, each seed against the single-task baselines of the "
        "example config (its trunk, head, learning rate and epoch cap) trained on that seed; "
        "positive = multi-task better. *auto (winner)*: the final stage's best mean validation "
        "Δm; *hard / equal*: the example config with `arch: hard`, `balancer: equal`, trained "
        "in the study's `final/` folder against the same baselines; *zoo's best config, here*: the "
        "zoo's best architecture and balancer for that dataset (ple with 2 levels) on the "
        "example config, trained the same way (same baselines, same epoch selection), once per "
        "dataset. Task verdicts: the paired "
        "test over the seeds (`polytask compare`'s). The zoo rows are quoted from "
        "docs/benchmarks.md (test Δm only; the zoo picks each run's epoch by its own first "
        "epoch, not by the baselines, and uses ple 2 levels / mmoe 4 experts).",
        "",
        summary_table(records),
        "",
        "Search and cost (seconds of wall time on this machine; *search* includes the search "
        "baselines and the grouping measurement; *baselines reused*: hard / equal's single-task "
        "baselines found in the final stage's cache):",
        "",
        search_table(records),
    ]
    for r in records:
        parts += ["", f"### {r['label']}", "", budget_line(r), ""]
        parts += [
            f"Winner (trial {r['winner']['trial']}): {_params(r['winner_params'])}.",
            "",
            candidates_table(r),
            "",
            verdict_line(r),
        ]
    return SECTION.wrap("\n".join(parts))


# -- command line ------------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _per_dataset(text: str | None, cast: Callable[[str], Any]) -> dict[str, Any]:
    """``"planted=10,qm9_small=12"`` → ``{"planted": 10, "qm9_small": 12}``."""
    values = {}
    for item in _csv(text or ""):
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected dataset=value, got {item!r}")
        values[name.strip()] = cast(value)
    return values


def parse_entry(entry: str) -> tuple[str, int | None, str | None]:
    """``"qm9_small"``, ``"qm9_small:48"`` (48 trials) or ``"qm9_small:16@experts"`` (and a
    named search space of :data:`SPACES`): the dataset, the trials, the space."""
    head, _, space = entry.partition("@")
    dataset, _, more = head.partition(":")
    if dataset not in BUDGETS:
        raise SystemExit(f"--datasets: unknown dataset {dataset!r}; known: {', '.join(BUDGETS)}")
    if space and space not in SPACES:
        raise SystemExit(f"--datasets: unknown space {space!r}; known: {', '.join(SPACES)}")
    return dataset, int(more) if more else None, space or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="names; 'name:N' runs that dataset with N trials (labelled name-Ntrials), "
        "'name:N@space' also with a named search space of SPACES",
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default=None, help="per dataset: 'planted=15,yeast=6'")
    parser.add_argument("--trials", default=None, help="per dataset: 'qm9_small=12'")
    parser.add_argument(
        "--timeout",
        default=None,
        help="search limit in seconds, per dataset or entry: 'qm9_small=900,qm9_small:48=1800'",
    )
    parser.add_argument("--output", type=Path, default=Path("runs/auto-bench"))
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true", help="tables from existing JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    datasets, seeds = _csv(args.datasets), [int(s) for s in _csv(args.seeds)]
    epochs, trials = _per_dataset(args.epochs, int), _per_dataset(args.trials, int)
    timeout = _per_dataset(args.timeout, float)
    records = []
    for entry in datasets:
        dataset, more, space = parse_entry(entry)
        label = dataset + (f"-{more}trials" if more else "") + (f"@{space}" if space else "")
        if args.report_only:
            cached = results_path(args.output, label)
            if cached.is_file():
                records.append({"label": label, **json.loads(cached.read_text())})
            continue
        default = BUDGETS[dataset]
        budget = Budget(
            epochs=epochs.get(entry, epochs.get(dataset, default.epochs)),
            trials=more or trials.get(dataset, default.trials),
            timeout=timeout.get(entry, timeout.get(dataset, default.timeout)),
            auto=SPACES[space] if space else default.auto,
        )
        config = bench_config(dataset, budget, seeds, args.output)
        records.append(run_dataset(dataset, config, budget, args.output, label=label))

    print(f"\n{summary_table(records)}\n\n{search_table(records)}")
    for r in records:
        print(f"\n{r['label']}\n{candidates_table(r)}\n{verdict_line(r)}")
    if args.markdown:
        command = SECTION.command(
            argv, prefix="OMP_NUM_THREADS=1 .venv/bin/python", drop=["--report-only"]
        )
        meta = f"Seeds {args.seeds}. Machine: {machine()}."
        SECTION.write(args.markdown, markdown(records, command, meta))
        print(f"section written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
