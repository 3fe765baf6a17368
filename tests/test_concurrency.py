"""Runs that share an output folder (issue 8): two trainings share one baseline cache (the second
waits for a baseline the first is training, then reuses it), and a run is written by one process
at a time (a second ``--resume`` exits 2 naming the process that holds it)."""

from __future__ import annotations

import multiprocessing
import socket
import time

import pytest
import yaml

from .conftest import config_dict, synthetic_frame
from .test_cli import assert_clean_error, run_cli
from .test_rundir import start_holder


def train_in_child(config_path: str, barrier, results) -> None:
    """One training with baselines; every ``fit`` starts late so that the two runs overlap."""
    from polytask.config import load_config
    from polytask.experiment import run_experiment
    from polytask.training.trainer import Trainer

    fit = Trainer.fit

    def slow_fit(self, *args, **kwargs):
        time.sleep(0.5)
        return fit(self, *args, **kwargs)

    Trainer.fit = slow_fit
    config = load_config(config_path)
    messages: list[str] = []
    barrier.wait()
    try:
        result = run_experiment(config, report=messages.append)
        results.put(("ok", str(result.run_dir), messages))
    except Exception as exc:  # reported to the test, which fails with it
        results.put(("error", repr(exc), messages))


def two_at_once(target, config) -> list[tuple]:
    """Run ``target(config, barrier, results)`` in two spawned processes that start together;
    what each put in ``results``, checked to start with ``"ok"``."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=target, args=(str(config), barrier, results)) for _ in range(2)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=240) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    return outcomes


@pytest.mark.slow
def test_two_trainings_share_the_baseline_cache(tmp_path):
    table = tmp_path / "table.csv"
    synthetic_frame(120).to_csv(table, index=False)
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["tasks"] = raw["tasks"][:2]
    raw["features"] = {"drop": ["spend"]}
    raw["training"] = {"epochs": 2, "batch_size": 32, "lr": 0.01, "seed": 0}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))

    outcomes = two_at_once(train_in_child, config)
    assert len({o[1] for o in outcomes}) == 2  # two run folders
    messages = [m for o in outcomes for m in o[2]]
    assert sum("reused" in m for m in messages) == 2, messages  # each baseline trained once
    assert sum("waiting" in m for m in messages) >= 1, messages


def written(run) -> dict[str, int]:
    """The run's files (not its lock) and when each was last written."""
    return {p.name: p.stat().st_mtime_ns for p in run.iterdir() if not p.name.startswith(".")}


def test_a_second_resume_of_a_run_in_use_exits_2_naming_the_holder(
    monkeypatch, capsys, tmp_path, table
):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["training"] = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "train", config, "--no-baselines")
    assert code == 0, err
    run = tmp_path / "runs" / "synthetic"
    (run / "metrics.json").unlink()  # as if it had been killed before its last file
    before = written(run)

    holder = start_holder(run)  # holds the run as a training of it does
    try:
        code, _, err = run_cli(monkeypatch, capsys, "train", config, "--resume", "--no-baselines")
        assert_clean_error(
            code, err, f"{run} is in use by process {holder.pid} on {socket.gethostname()}"
        )
        assert written(run) == before  # nothing rewritten
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run_cli(monkeypatch, capsys, "train", config, "--resume", "--no-baselines")
    assert code == 0, err  # the dead holder's lock is taken over
    assert (run / "metrics.json").is_file()
