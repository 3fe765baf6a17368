"""A run killed with SIGKILL in the middle of an epoch and resumed with ``--resume`` ends with
the same weights selection and metrics as a run that was never interrupted.

The killed run and the resumed run are separate processes (the resume reads only what the killed
one left on disk); the uninterrupted reference runs in the test process, which saves one
interpreter start (~4 s). All three run torch on one thread (see conftest.py)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from polytask import cli

from .conftest import config_dict

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from polytask import cli
    from polytask.training.trainer import Trainer

    original, calls = Trainer.step, {"n": 0}

    def step(self, batch):
        if self.label == "multi-task":
            calls["n"] += 1
            if calls["n"] == int(os.environ["KILL_AT_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch)

    Trainer.step = step
    sys.argv = ["polytask", "train", sys.argv[1]]
    cli.main()
    """
)


def _outcome(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = metrics["multitask"]["history"]
    return (
        metrics["multitask"]["test"],
        metrics["multitask"]["best_epoch"],
        [log["score"] for log in history],
        metrics["delta_m_test"],
    )


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, table, capsys):
    configs = {}
    for name in ("straight", "killed"):
        raw = config_dict(str(table), output_dir=str(tmp_path / name), name="run")
        raw["training"]["epochs"] = 5
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        configs[name] = path
    env = {**os.environ, "KILL_AT_STEP": "20"}  # 5 steps per epoch: dies inside epoch 4
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["polytask", "train", str(configs["straight"])])
        try:
            cli.main()
        except SystemExit as exc:
            assert not exc.code
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, configs["killed"]], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = tmp_path / "killed" / "run"
    assert (run_dir / "checkpoint" / "latest.json").is_file()
    assert not (run_dir / "metrics.json").exists()
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:  # resumed in this process
        patch.setattr(sys, "argv", ["polytask", "train", str(configs["killed"]), "--resume"])
        try:
            cli.main()
        except SystemExit as exc:
            assert not exc.code
    assert "reused" in capsys.readouterr().out  # baselines finished before the kill
    assert _outcome(run_dir) == _outcome(tmp_path / "straight" / "run")
