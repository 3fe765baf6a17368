"""The search stage: worker processes that take trials from the shared study until the budget
or the deadline is reached. A trial samples a candidate (:mod:`polytask.auto.space`), trains it
on the sealed data (:mod:`polytask.auto.trial`), reports its validation Δm after every epoch, and
is pruned by the median rule when it trails the earlier trials at the same epoch."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch

from polytask.auto.space import SearchSpace, shown
from polytask.auto.study import budget_used, open_storage, worker_id
from polytask.auto.trial import train_candidate
from polytask.config import Config
from polytask.data.prepare import PreparedData, prepare_data
from polytask.errors import ConfigError, RunError
from polytask.evaluation.delta_m import Scores
from polytask.training.trainer import EpochLog

Reporter = Callable[[str], None]

STARTUP_TRIALS = 5
"""Trials sampled at random (TPE) and never pruned before the median rule starts."""
WARMUP_FRACTION = 1 / 3
"""A trial trains this share of its epochs (at least one) before it can be pruned: slow starters
(a small learning rate, many experts) are not judged on their first epochs."""


@dataclass(frozen=True)
class SearchSettings:
    """What every worker needs: the user's config, the space, the study's storage URL and name,
    the validation scores of the search baselines, the trial budget, the deadline (``time.time()``
    seconds, or None) and the sampler's seed."""

    base: Config
    space: SearchSpace
    storage: str
    study: str
    reference: Scores
    trials: int
    deadline: float | None
    seed: int


def search(
    settings: SearchSettings,
    worker: int = 0,
    *,
    data: PreparedData | None = None,
    threads: int | None = None,
    report: Reporter = print,
) -> None:
    """Run trials of the study until it holds ``settings.trials`` (or the deadline passes).
    ``data``: the sealed data (read from the config when not given, in a worker process)."""
    if threads is not None:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial has our own line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sealed = (data or prepare_data(settings.base)).without_test()
    storage = open_storage(settings.storage)
    done = len(storage.get_all_trials(storage.get_study_id_from_name(settings.study)))
    study = optuna.load_study(
        study_name=settings.study,
        storage=storage,
        sampler=optuna.samplers.TPESampler(
            seed=settings.seed + 7919 * worker + done, multivariate=True, group=True
        ),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=STARTUP_TRIALS,
            n_warmup_steps=max(1, round(settings.base.training.epochs * WARMUP_FRACTION)),
        ),
    )

    def objective(trial: optuna.Trial) -> float:
        return _run_trial(trial, settings, sealed, report)

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if budget_used(study) >= settings.trials:
            study.stop()

    remaining = None if settings.deadline is None else settings.deadline - time.time()
    if budget_used(study) >= settings.trials or (remaining is not None and remaining <= 0):
        return
    study.optimize(
        objective,
        timeout=remaining,
        catch=(Exception,),  # a failed trial is recorded; the study goes on
        callbacks=[stop_at_budget],
    )


def _run_trial(
    trial: optuna.Trial, settings: SearchSettings, data: PreparedData, report: Reporter
) -> float:
    trial.set_user_attr("worker", worker_id())
    params = settings.space.suggest(trial)
    described = shown(params) or "the fixed point"
    started = time.perf_counter()

    def on_epoch(log: EpochLog) -> None:
        trial.set_user_attr("epochs", log.epoch)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        if math.isfinite(log.score):
            trial.report(log.score, log.epoch)
            if trial.should_prune():
                report(f"trial {trial.number}: pruned after epoch {log.epoch} ({described})")
                raise optuna.TrialPruned()

    try:
        candidate = settings.space.candidate(settings.base, params, source=f"trial {trial.number}")
        outcome = train_candidate(
            candidate, data, settings.reference, label=f"trial {trial.number}", on_epoch=on_epoch
        )
    except optuna.TrialPruned:
        raise
    except Exception as exc:  # an invalid combination, a diverged training, a solver failure…
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, ConfigError | RunError):
            reason = f"{type(exc).__name__}: {reason}"
        trial.set_user_attr("note", reason[:500])
        report(f"trial {trial.number}: failed ({described}): {reason}")
        raise
    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("best_epoch", outcome.best_epoch)
    trial.set_user_attr("seconds", round(outcome.seconds, 3))
    trial.set_user_attr("changes", _json(outcome.changes))
    trial.set_user_attr("validation", _json(outcome.validation))
    report(
        f"trial {trial.number}: validation Δm {outcome.delta_m:+.2f} % ({described}; "
        f"epoch {outcome.best_epoch} of {outcome.epochs}, {outcome.seconds:.1f} s)"
    )
    return outcome.delta_m


def _json(value: object) -> object:
    """NaN → None, for the study's JSON attributes."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
