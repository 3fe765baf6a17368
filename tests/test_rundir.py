"""polytask.rundir: the run folder layout, new-run naming and which folder --resume takes."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from polytask.errors import ConfigError, RunError
from polytask.rundir import (
    RunDir,
    baseline_dir,
    baselines_folder,
    comparison_path,
    is_run_of,
    new_run_dir,
    run_dir_for,
    unfinished_run_dir,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_the_layout(tmp_path):
    run = RunDir(tmp_path / "r")
    paths = [run.config, run.data, run.checkpoint, run.model, run.metrics]
    names = [p.name for p in [*paths, run.loss_curves, run.balancer_weights]]
    assert names == [
        "config.json",
        "data.json",
        "checkpoint",
        "model.safetensors",
        "metrics.json",
        "loss_curves.png",
        "balancer_weights.png",
    ]
    assert all(p.parent == tmp_path / "r" for p in (run.config, run.metrics))
    base = baseline_dir(baselines_folder(tmp_path), "spend", "abc123")
    assert base.path == tmp_path / "baselines" / "spend-abc123"
    assert comparison_path(tmp_path, "adult") == tmp_path / "adult-comparison.json"


def test_missing_names_the_absent_files_in_order(tmp_path):
    run = RunDir(tmp_path)
    assert run.missing() == ["config.json", "data.json", "model.safetensors", "metrics.json"]
    run.data.write_text("{}")
    run.metrics.write_text("{}")
    assert run.missing() == ["config.json", "model.safetensors"]
    assert run.finished


def test_new_runs_never_reuse_a_folder(tmp_path):
    paths = [new_run_dir(tmp_path / "out", "exp").path for _ in range(3)]
    assert [p.name for p in paths] == ["exp", "exp-2", "exp-3"]
    assert all(p.is_dir() for p in paths)
    assert run_dir_for(tmp_path / "out", "exp", resume=False).path.name == "exp-4"


def test_resume_takes_the_latest_unfinished_run_of_that_name(tmp_path):
    old, finished, latest = (new_run_dir(tmp_path, "exp") for _ in range(3))
    finished.metrics.write_text("{}")
    other = new_run_dir(tmp_path, "exp-b")  # another config's run, not a run of "exp"
    for age, run in enumerate((latest, finished, old, other)):  # latest is the newest
        os.utime(run.path, (1e9 - 1000 * age, 1e9 - 1000 * age))
    assert unfinished_run_dir(tmp_path, "exp") == latest
    assert run_dir_for(tmp_path, "exp", resume=True) == latest
    os.utime(old.path, (2e9, 2e9))
    assert unfinished_run_dir(tmp_path, "exp") == old


def test_resume_without_an_unfinished_run_is_a_run_error(tmp_path):
    new_run_dir(tmp_path, "exp").metrics.write_text("{}")
    with pytest.raises(RunError, match="no unfinished run named 'exp' to resume"):
        unfinished_run_dir(tmp_path, "exp")


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("exp", True),
        ("exp-2", True),
        ("exp-12", True),
        ("exp-b", False),
        ("exp2", False),
        ("exp-", False),
        ("ex", False),
        ("other-2", False),
    ],
)
def test_is_run_of(folder, expected):
    assert is_run_of(folder, "exp") is expected


# -- bad output folders and run names (issue 8) -------------------------------------------------


@pytest.mark.parametrize("below", ["", "sub"])
def test_an_output_dir_that_is_a_file_is_named(tmp_path, below):
    file = tmp_path / "runs"
    file.write_text("not a folder")
    output = file / below if below else file
    with pytest.raises(ConfigError, match=rf"output_dir '{output}': '{file}' is a file"):
        new_run_dir(output, "exp")
    with pytest.raises(ConfigError, match="is a file"):
        run_dir_for(output, "exp", resume=True)
    assert file.read_text() == "not a folder"


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "", "."])
def test_a_run_name_must_stay_inside_the_output_folder(tmp_path, name):
    with pytest.raises(RunError, match="one plain folder name"):
        new_run_dir(tmp_path / "out", name)
    assert not (tmp_path / "escape").exists()


def test_a_folder_made_by_a_concurrent_run_is_skipped(tmp_path, monkeypatch):
    """Another run may create ``exp`` between the look and the mkdir: take the next name."""
    (tmp_path / "exp").mkdir()
    real_exists = type(tmp_path).exists
    monkeypatch.setattr(
        type(tmp_path), "exists", lambda self, **kw: self.name != "exp" and real_exists(self)
    )
    assert new_run_dir(tmp_path, "exp").path.name == "exp-2"


# -- one process per run (issue 8) ----------------------------------------------------------------

HOLD = """
import sys
from pathlib import Path
from polytask.rundir import RunDir
with RunDir(Path(sys.argv[1])).hold():
    print("ready", flush=True)
    sys.stdin.read()
"""


def start_holder(path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_a_run_held_by_another_process_names_it_and_a_dead_holder_is_taken_over(tmp_path):
    run = new_run_dir(tmp_path, "exp")
    holder = start_holder(run.path)
    try:
        expected = rf"{run.path} is in use by process {holder.pid} on {socket.gethostname()}"
        with pytest.raises(RunError, match=expected), run.hold():
            pass
    finally:
        holder.kill()  # SIGKILL: its owner note stays behind, the lock itself does not
        holder.wait()
    assert json.loads(run.owner.read_text())["pid"] == holder.pid
    with run.hold():
        assert json.loads(run.owner.read_text())["pid"] == os.getpid()
    assert not run.owner.exists()


def test_waiting_for_a_held_folder(tmp_path):
    run = RunDir(tmp_path / "baseline")
    held, order, waits = threading.Event(), [], []

    def first():
        with run.hold():
            held.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(timeout=30)
    with run.hold(wait=True, on_wait=waits.append):
        order.append("second")
    thread.join()
    assert order == ["first done", "second"]
    assert len(waits) == 1 and f"process {os.getpid()}" in waits[0]
