"""Compare balancers on one config: one run per balancer and seed, single-task baselines trained
once per seed (and reused), per-task metrics and Δm% as mean ± std over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from polytask.checks import check_config
from polytask.config import BalancerConfig, Config, parse_config
from polytask.errors import ConfigError
from polytask.experiment import Reporter, run_experiment
from polytask.results import BalancerSummary, mean_std
from polytask.rundir import comparison_path
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
    checked = [  # validate every balancer before the first run starts
        check_config(
            parse_config({**config.model_dump(), "balancer": spec.model_dump()}, "--balancers")
        )
        for spec in balancers
    ]
    summaries = [BalancerSummary(label(spec)) for spec in balancers]
    for seed in seeds:
        for summary, variant in zip(summaries, checked, strict=True):
            training = variant.training.model_copy(update={"seed": seed})
            name = f"{config.name or 'run'}-{summary.name.replace(':', '-')}-seed{seed}"
            run_config = variant.model_copy(update={"training": training, "name": name})
            report(f"balancer {summary.name}, seed {seed}")
            summary.runs.append(run_experiment(run_config, progress=progress, report=report))
    output = comparison_path(Path(config.output_dir), config.name or "run")
    atomic_write_json(output, to_dict(summaries))
    report(f"comparison written to {output}")
    return summaries


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
            "runs": [str(run.run_dir) for run in summary.runs],
        }
    return rows
