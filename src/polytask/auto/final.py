"""The final stage: the best configurations of the search, each trained again with every seed
against the single-task baselines of the user's config on the same seed; the best mean
validation Δm wins, and its test metrics, test Δm and per-task verdicts are reported. This is
the first time the test split is read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from polytask.auto.space import SearchSpace
from polytask.compare import with_seed
from polytask.config import Config
from polytask.evaluation.verdict import ALPHA, TEST
from polytask.experiment import run_experiment
from polytask.results import BalancerSummary, RunResult, load_run_result, mean_std
from polytask.rundir import RunDir
from polytask.training.checkpoint import atomic_write_json, atomic_write_text

Reporter = Callable[[str], None]
FINAL = "final"


@dataclass(frozen=True)
class Candidate:
    """A configuration of the search: its trial, parameters and config."""

    trial: int
    params: dict[str, Any]
    config: Config


@dataclass
class FinalResult:
    """Each candidate's runs over the seeds, and the winner (best mean validation Δm)."""

    seeds: list[int]
    candidates: list[Candidate]
    summaries: list[BalancerSummary]
    winner: int  # index into candidates

    def validation(self, index: int) -> list[float]:
        return [run.delta_m_validation for run in self.summaries[index].runs]

    @property
    def sharing_helps(self) -> bool:
        """Whether the winner's mean validation Δm is above 0 (above single-task)."""
        return mean_std(self.validation(self.winner))[0] > 0

    def to_dict(self) -> dict[str, Any]:
        best = self.summaries[self.winner]
        tasks = [t for t in best.runs[0].tasks if not t.auxiliary]
        return {
            "seeds": self.seeds,
            "candidates": [
                {
                    "trial": c.trial,
                    "params": c.params,
                    "delta_m_validation": self.validation(i),
                    "delta_m_validation_mean_std": mean_std(self.validation(i)),
                    "runs": [str(run.run_dir) for run in self.summaries[i].runs],
                }
                for i, c in enumerate(self.candidates)
            ],
            "winner": {
                "trial": self.candidates[self.winner].trial,
                "beats_single_task_on_validation": self.sharing_helps,
                "delta_m_test": best.delta_m(),
                "delta_m_test_mean_std": mean_std(best.delta_m()),
                "metrics_test_mean_std": {
                    f"{t.name}.{m}": mean_std(best.metric(t.name, m))
                    for t in tasks
                    for m in t.metrics
                },
                "test": TEST,
                "alpha": ALPHA,
                "tasks": {name: v.to_dict() for name, v in best.verdicts().items()},
            },
        }


def candidates(
    base: Config, space: SearchSpace, trials: Sequence[tuple[int, dict[str, Any]]], folder: Path
) -> list[Candidate]:
    """The configs of ``trials`` (number, parameters), named ``trial<n>``, written to ``folder``."""
    return [
        Candidate(
            number,
            params,
            space.candidate(base, params, source=f"trial {number}").model_copy(
                update={"name": f"trial{number}", "output_dir": str(folder)}
            ),
        )
        for number, params in trials
    ]


def run_final(
    base: Config,
    chosen: Sequence[Candidate],
    seeds: Sequence[int],
    folder: Path,
    *,
    report: Reporter = lambda message: None,
) -> FinalResult:
    """Train every candidate with every seed in ``folder`` (a finished run is read back, an
    unfinished one resumed: ``--resume`` repeats nothing)."""
    baseline = base.model_copy(update={"output_dir": str(folder)})
    summaries = []
    for candidate in chosen:
        runs = []
        for seed in seeds:
            config = with_seed(candidate.config, seed)
            runs.append(_run(config, with_seed(baseline, seed), folder, report))
        summaries.append(BalancerSummary(f"trial {candidate.trial}", runs))
    means = [mean_std([r.delta_m_validation for r in s.runs])[0] for s in summaries]
    ranked = sorted(range(len(chosen)), key=lambda i: (means[i] != means[i], -means[i]))
    return FinalResult(list(seeds), list(chosen), summaries, ranked[0])


def _run(config: Config, baseline: Config, folder: Path, report: Reporter) -> RunResult:
    name = config.name or "run"
    run = RunDir(folder / name)
    if run.finished:
        try:
            result = load_run_result(run.metrics)
            report(f"{name}: finished before, read back")
            return result
        except (ValueError, KeyError, TypeError):
            report(f"{name}: {run.metrics} is unreadable, training it again")
    report(f"{name}: training (with its single-task baselines on the same seed)")
    return run_experiment(
        config,
        baseline_config=baseline,
        resume=run.path.is_dir() and not run.finished,
        report=report,
    )


def write_best(result: FinalResult, base: Config, path: Path) -> Config:
    """``best.yaml``: the winner's config as ``polytask train`` runs it (the user's name, output
    folder and seed)."""
    winner = result.candidates[result.winner].config
    best = winner.model_copy(
        update={"name": f"{base.name or 'run'}-best", "output_dir": base.output_dir}
    )
    raw = best.model_dump(mode="json")
    header = (
        f"# polytask auto: the best configuration (trial {result.candidates[result.winner].trial})"
        f"\n# run it with: polytask train {path.name}\n"
    )
    atomic_write_text(path, header + yaml.safe_dump(raw, sort_keys=False))
    return best


def write_final(result: FinalResult, path: Path) -> None:
    atomic_write_json(path, result.to_dict())
