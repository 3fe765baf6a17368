"""Processes: ``kill -9`` during a study then ``--resume``; two ``--jobs`` workers sharing one
study and one baseline cache."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from polytask.auto import AutoOptions, run_auto
from polytask.auto.study import budget_used
from polytask.config import load_config
from polytask.results import load_model_result

from ..conftest import config_dict, synthetic_frame

POLYTASK = Path(sys.executable).parent / "polytask"


def write_config(tmp_path: Path, rows: int, epochs: int, **auto) -> Path:
    table = tmp_path / "table.csv"
    synthetic_frame(n=rows).to_csv(table, index=False)
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["training"]["epochs"] = epochs
    raw["auto"] = {"arch": ["hard", "mmoe"], "balancer": ["equal", "uw"], "depth": [1], **auto}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def finished_and_running(database: Path) -> bool:
    """Whether the study holds a finished trial and a running one that has reported an epoch,
    and both workers have taken a trial.

    Read with ``sqlite3`` (milliseconds, unlike ``optuna.load_study``) so that the moment is seen
    even on a busy machine; a locked or missing database reads as "not yet"."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.5)) as db:
            complete = db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
            running = db.execute(
                "SELECT count(*) FROM trials WHERE state = 'RUNNING' AND trial_id IN "
                "(SELECT trial_id FROM trial_intermediate_values)"
            ).fetchone()
            workers = db.execute(
                "SELECT count(DISTINCT value_json) FROM trial_user_attributes WHERE key = 'worker'"
            ).fetchone()
    except sqlite3.Error:
        return False
    return complete[0] > 0 and running[0] > 0 and workers[0] >= 2


def study_of(tmp_path: Path) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'runs' / 'synthetic-auto' / 'study.db'}"
    return optuna.load_study(study_name="synthetic", storage=url)


@pytest.mark.skipif(not POLYTASK.exists(), reason="the polytask script is not installed")
@pytest.mark.slow
def test_two_workers_then_kill_9_then_resume_keeps_the_study_whole(tmp_path):
    """``--jobs 2`` share one study and one baseline cache; ``kill -9`` of the whole job (both
    workers) while trials run, then ``--resume``: finished trials are kept, each interrupted one
    is failed and run again with its parameters, and the budget is exact."""
    config = write_config(tmp_path, rows=600, epochs=12, trials=6)
    process = subprocess.Popen(
        [str(POLYTASK), "auto", str(config), "--no-final", "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # its own process group: the workers die with it
    )
    database = tmp_path / "runs" / "synthetic-auto" / "study.db"
    killed = False
    deadline = time.monotonic() + 120
    try:
        while not killed and time.monotonic() < deadline:
            time.sleep(0.02)
            if process.poll() is not None:
                pytest.fail(f"the study ended before it could be killed: {process.stderr.read()}")
            if not finished_and_running(database):
                continue
            # Freeze the job, and kill it only if the moment is still there once it is frozen.
            os.killpg(process.pid, signal.SIGSTOP)
            if finished_and_running(database):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                killed = True
            else:
                os.killpg(process.pid, signal.SIGCONT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert killed, "no moment with a finished and a running trial"
    time.sleep(0.2)  # the workers are gone too
    trials = study_of(tmp_path).get_trials()
    finished = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    interrupted = [t for t in trials if t.state == TrialState.RUNNING]
    assert interrupted  # the trial seen running when the job was frozen

    result = run_auto(load_config(config), AutoOptions(resume=True, final=False))
    study = study_of(tmp_path)
    trials = {t.number: t for t in study.get_trials()}
    assert {n: trials[n].value for n in finished} == finished  # kept as they were
    for lost in interrupted:
        assert trials[lost.number].state == TrialState.FAIL
        retries = [
            t for t in trials.values() if lost.number in t.system_attrs.get("retry_history", [])
        ]
        assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        if lost.params:  # run again with the same parameters (a trial killed before it drew
            assert retries[0].params == lost.params  # them has none: its retry draws them)
    assert any(lost.params for lost in interrupted)  # the trial seen reporting an epoch
    assert budget_used(study) in (6, 7)  # two workers may start their last trials together
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    killed_job = [trials[n] for n in finished] + interrupted
    # (a trial killed as it was created may not have recorded its worker yet)
    workers = {t.user_attrs["worker"]["pid"] for t in killed_job if "worker" in t.user_attrs}
    assert len(workers) >= 2  # both workers of the killed job took trials
    baselines = sorted(p.name.split("-")[0] for p in (result.folder / "baselines").iterdir())
    assert baselines == ["clicked", "segment", "spend"]
    for folder in (result.folder / "baselines").iterdir():
        assert load_model_result(folder / "metrics.json").validation
