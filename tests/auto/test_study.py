"""The study's bookkeeping: which running trials are recovered, what counts against the budget,
and passwords kept out of files."""

import os
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from polytask.auto.study import budget_used, leaderboard, masked, recover_interrupted


@pytest.fixture
def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def running(study, worker):
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    if worker is not None:
        trial.set_user_attr("worker", worker)
    return trial.number


def test_a_shared_study_recovers_only_this_machine_s_dead_trials(dead_pid):
    study = optuna.create_study()
    host = socket.gethostname()
    dead = running(study, {"host": host, "pid": dead_pid})
    alive = running(study, {"host": host, "pid": os.getpid()})
    remote = running(study, {"host": "another-machine", "pid": dead_pid})
    unowned = running(study, None)
    assert recover_interrupted(study, every_running=False) == [dead]
    states = {t.number: t.state for t in study.trials}
    assert states[dead] == TrialState.FAIL
    assert [states[n] for n in (alive, remote, unowned)] == [TrialState.RUNNING] * 3
    retry = study.trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == study.trials[dead].params
    assert budget_used(study) == 3  # the failed one is replaced by its retry, not counted
    rows = {row.trial: row for row in leaderboard(study)}
    assert rows[dead].note == f"interrupted; run again as trial {retry.number}"


def test_its_own_sqlite_study_recovers_every_running_trial():
    study = optuna.create_study()
    numbers = [running(study, None), running(study, {"host": "x", "pid": 1})]
    assert recover_interrupted(study, every_running=True) == numbers


def test_a_failed_trial_that_was_not_retried_counts():
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    study.tell(study.ask(), 1.0)
    assert budget_used(study) == 2


def test_passwords_are_masked():
    assert masked("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert masked("sqlite:///runs/study.db") == "sqlite:///runs/study.db"
