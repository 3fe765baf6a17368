"""polytask.rundir: the run folder layout, new-run naming and which folder --resume takes."""

import os

import pytest

from polytask.errors import RunError
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
