"""Compare balancers on one config: one run per balancer and seed, single-task baselines trained
once per seed (and reused), per-task metrics and Δm% as mean ± std over seeds, and each task's
negative-transfer verdict from the paired test across seeds (:mod:`polytask.evaluation.verdict`).
``train_seeds`` does the same for the configured model alone (``polytask train --seeds``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from polytask.checks import check_config
from polytask.config import BalancerConfig, Config, parse_config
from polytask.errors import ConfigError
from polytask.evaluation.verdict import ALPHA, TEST
from polytask.experiment import Reporter, run_experiment
from polytask.results import BalancerSummary, RunResult, mean_std
from polytask.rundir import comparison_path, seeds_path
from polytask.training.checkpoint import atomic_write_json


def parse_balancers(text: str) -> list[BalancerConfig]:
    """``"ew,mgda:params,nash_mtl"``: names, each optionally with ``:mode``."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, mode = item.partition(":")
        specs.append(BalancerConfig(name=name, **({"mode": mode} if mode else {})))
    if not specs:
        raise ConfigError("--balancers: give at least one balancer name")
    return specs


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"``: distinct integer seeds, in the order given."""
    items = [part.strip() for part in text.split(",")]
    if not any(items):
        raise ConfigError("--seeds: give at least one integer seed, e.g. --seeds 0,1,2")
    seeds = []
    for item in items:
        try:
            seeds.append(int(item))
        except ValueError:
            raise ConfigError(
                f"--seeds: {item!r} is not an integer; expected comma-separated integers, "
                f"got {text!r}"
            ) from None
    check_seeds(seeds)
    return seeds


def check_seeds(seeds: Sequence[int]) -> None:
    """Raise a ConfigError unless ``seeds`` holds at least one seed, each once."""
    if not seeds:
        raise ConfigError("--seeds: give at least one integer seed, e.g. --seeds 0,1,2")
    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise ConfigError(
            f"--seeds: {', '.join(map(str, repeated))} given more than once; "
            "the seeds pair the runs, so each must be distinct"
        )


def label(spec: BalancerConfig) -> str:
    mode = spec.options.get("mode")
    return f"{spec.name}:{mode}" if mode else spec.name


def compare_balancers(
    config: Config,
    balancers: Sequence[BalancerConfig],
    seeds: Sequence[int],
    *,
    progress: bool = False,
    report: Reporter = lambda message: None,
) -> list[BalancerSummary]:
    """Train every (balancer, seed) pair; write ``comparison.json`` into the output folder."""
    check_seeds(seeds)
    labels = [label(spec) for spec in balancers]
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise ConfigError(f"--balancers: {', '.join(repeated)} given more than once")
    variants = {  # validate every balancer before the first run starts
        name: check_config(
            parse_config(
                {
                    **config.model_dump(),
                    "balancer": spec.model_dump(),
                    "name": f"{config.name or 'run'}-{name.replace(':', '-')}",
                },
                source="--balancers",
            )
        )
        for name, spec in zip(labels, balancers, strict=True)
    }
    runs = run_grid(variants, seeds, progress=progress, report=report)
    summaries = [BalancerSummary(name, runs[name]) for name in labels]
    output = comparison_path(Path(config.output_dir), config.name or "run")
    atomic_write_json(output, to_dict(summaries))
    report(f"comparison written to {output}")
    return summaries


def train_seeds(
    config: Config,
    seeds: Sequence[int],
    *,
    progress: bool = False,
    report: Reporter = lambda message: None,
) -> BalancerSummary:
    """Train ``config`` and its single-task baselines with every seed; write each task's change
    and verdict to ``<output_dir>/<name>-seeds.json``."""
    check_seeds(seeds)
    name = config.name or "run"
    runs = run_grid({name: config}, seeds, progress=progress, report=report)[name]
    summary = BalancerSummary(name, runs)
    output = seeds_path(Path(config.output_dir), name)
    atomic_write_json(output, seeds_dict(summary, seeds))
    report(f"per-seed summary written to {output}")
    return summary


def seeds_dict(summary: BalancerSummary, seeds: Sequence[int], alpha: float = ALPHA) -> dict:
    """What ``<name>-seeds.json`` holds: the seeds, the test, Δm and each task's verdict."""
    return {
        "name": summary.name,
        "seeds": list(seeds),
        "test": TEST,
        "alpha": alpha,
        "delta_m_test": summary.delta_m(),
        "delta_m_mean_std": mean_std(summary.delta_m()),
        "tasks": {task: v.to_dict() for task, v in summary.verdicts(alpha).items()},
        "runs": [str(run.run_dir) for run in summary.runs],
    }


def with_seed(config: Config, seed: int) -> Config:
    """``config`` trained with ``seed`` and named ``<name>-seed<seed>``."""
    training = config.training.model_copy(update={"seed": seed})
    name = f"{config.name or 'run'}-seed{seed}"
    return config.model_copy(update={"training": training, "name": name})


def run_grid(
    variants: Mapping[str, Config],
    seeds: Sequence[int],
    *,
    baselines: bool = True,
    skip: Callable[[str, int], bool] = lambda label, seed: False,
    finished: Callable[[str, int, RunResult], None] = lambda label, seed, result: None,
    progress: bool = False,
    report: Reporter = lambda message: None,
) -> dict[str, list[RunResult]]:
    """Train every labelled config variant with every seed (:func:`with_seed`), seed by seed.
    With ``baselines``, each run trains its single-task baselines or reuses those of an earlier
    run with the same data, model and budget (variants that differ only in the balancer share
    them). ``skip(label, seed)`` leaves a pair out (done already); ``finished`` sees each run as
    soon as it ends. Returns each label's runs in seed order."""
    runs: dict[str, list[RunResult]] = {name: [] for name in variants}
    for seed in seeds:
        for name, variant in variants.items():
            if skip(name, seed):
                continue
            report(f"{name}, seed {seed}")
            result = run_experiment(
                with_seed(variant, seed), baselines=baselines, progress=progress, report=report
            )
            runs[name].append(result)
            finished(name, seed, result)
    return runs


def to_dict(summaries: Sequence[BalancerSummary]) -> dict:
    rows = {}
    for summary in summaries:
        first = summary.runs[0]
        metrics = {
            f"{t.name}.{m}": mean_std(summary.metric(t.name, m))
            for t in first.tasks
            for m in t.metrics
        }
        rows[summary.name] = {
            "metrics_mean_std": metrics,
            "delta_m_mean_std": mean_std(summary.delta_m()),
            "seconds_mean_std": mean_std(summary.seconds()),
            "verdict_test": f"{TEST}, alpha = {ALPHA}",
            "verdicts": {task: v.to_dict() for task, v in summary.verdicts().items()},
            "runs": [str(run.run_dir) for run in summary.runs],
        }
    return rows
