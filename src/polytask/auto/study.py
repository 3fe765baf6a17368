"""The optuna study behind ``polytask auto``: its storage, its trial budget, the recovery of
trials whose process died, and the leaderboard read from it.

The study lives in an optuna RDB storage: SQLite in the study folder by default, or any URL
(``--storage``, e.g. PostgreSQL) that several processes on several machines share. A trial is
owned by the process that runs it (``worker`` attribute: host and pid) and kept alive by optuna's
heartbeat. A trial whose process died is failed and queued again with the same parameters
(optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`): when a job starts, at
once if the study is its own SQLite file or the trial's process ran on this machine and is gone;
else when the trial's heartbeat is older than :data:`GRACE_PERIOD`.
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from polytask.errors import ConfigError

HEARTBEAT_INTERVAL = 10
"""Seconds between a running trial's heartbeats."""
GRACE_PERIOD = 60
"""A running trial without a heartbeat for this long is failed (its process is gone)."""
MAX_RETRIES = 3
"""How often a trial interrupted by its process's death is run again."""

DIRECTION = "maximize"  # validation Δm
with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)


def masked(url: str) -> str:
    """``url`` with its password hidden (for files and messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str) -> RDBStorage:
    """The RDB storage at ``url``, with heartbeats; a ConfigError when it cannot be opened."""
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # several processes wait for the file lock
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                heartbeat_stale_trial_callback=RETRY,
            )
    except Exception as exc:  # sqlalchemy: bad URL, missing driver, unreachable server…
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(f"--storage {masked(url)}: cannot be opened ({reason})") from exc


def study_exists(storage: RDBStorage, name: str) -> bool:
    return name in {s.study_name for s in storage.get_all_studies()}


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def recover_interrupted(study: optuna.Study, *, every_running: bool) -> list[int]:
    """Fail the running trials whose process is gone and queue each again (with its
    parameters); returns their numbers. Called before the workers start. ``every_running``:
    no other job uses this study (its SQLite file in the study folder, whose lock this process
    holds), so every running trial is interrupted; else only those whose process on this
    machine is gone (a trial of another machine is failed by its heartbeat)."""
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker") or {}
        mine_and_gone = owner.get("host") == host and not _alive(owner.get("pid"))
        if not (every_running or mine_and_gone):
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except RuntimeError:  # another process recovered it first
            continue
        RETRY(study, study._storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown owner: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def retried(trials: list[FrozenTrial]) -> dict[int, int]:
    """For each interrupted trial that was queued again, the number of its latest retry."""
    return {
        earlier: t.number for t in trials for earlier in t.system_attrs.get("retry_history", ())
    }


def budget_used(study: optuna.Study) -> int:
    """Trials that count against ``--trials``: finished ones (a failed trial that was queued
    again does not count: its retry does) and the ones running now."""
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(
        1
        for t in trials
        if t.state in counted or (t.state == TrialState.FAIL and t.number not in again)
    )


@dataclass(frozen=True)
class LeaderboardRow:
    """One trial as the leaderboard shows it; ``delta_m`` is the selected epoch's validation Δm
    (a pruned trial: its last reported one)."""

    trial: int
    state: str
    delta_m: float
    epochs: int | None
    seconds: float | None
    params: dict[str, Any]
    note: str

    def to_csv(self, names: list[str]) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "state": self.state,
            "delta_m_validation": self.delta_m,
            "epochs": self.epochs,
            "seconds": self.seconds,
            **{f"param.{name}": self.params.get(name) for name in names},
            "note": self.note,
        }


def leaderboard(study: optuna.Study) -> list[LeaderboardRow]:
    """Every trial, best validation Δm first (trials without one last, by number)."""
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    rows = []
    for t in trials:
        value = t.value if t.state == TrialState.COMPLETE else _last_reported(t)
        note = t.user_attrs.get("note", "")
        if t.number in again:
            note = f"interrupted; run again as trial {again[t.number]}"
        elif t.state == TrialState.PRUNED:
            note = note or f"pruned after epoch {max(t.intermediate_values, default=0)}"
        rows.append(
            LeaderboardRow(
                trial=t.number,
                state=t.state.name.lower(),
                delta_m=math.nan if value is None else float(value),
                epochs=t.user_attrs.get("epochs"),
                seconds=t.user_attrs.get("seconds"),
                params=dict(t.params),
                note=note,
            )
        )
    return sorted(rows, key=lambda r: (math.isnan(r.delta_m), -_or_zero(r.delta_m), r.trial))


def _last_reported(trial: FrozenTrial) -> float | None:
    if not trial.intermediate_values:
        return None
    return trial.intermediate_values[max(trial.intermediate_values)]


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def param_names(rows: list[LeaderboardRow]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row.params))


def best_trials(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The ``count`` best finished trials with distinct parameters, best first."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    chosen: dict[str, FrozenTrial] = {}
    for t in sorted(complete, key=lambda t: (-float(t.value or 0.0), t.number)):
        chosen.setdefault(repr(sorted(t.params.items())), t)
    return list(chosen.values())[:count]
