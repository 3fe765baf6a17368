"""Writes ``legacy_run/``: a run directory interrupted in its third epoch by the code before the
issue-7 redesign (commit e488650), with ``legacy_run.json``, the outcome of the same run left
uninterrupted by that code. ``test_legacy_states.py`` resumes the directory with the current
code. Run from the repository root: ``python tests/balancers/data/make_legacy_run.py``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))

from polytask.config import parse_config  # noqa: E402
from polytask.experiment import run_experiment  # noqa: E402
from polytask.training.trainer import Trainer  # noqa: E402
from tests.balancers.data.legacy_run_config import KILL_AT_STEP, outcome, raw_config  # noqa: E402
from tests.conftest import synthetic_frame  # noqa: E402


class Killed(Exception):
    pass


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.csv"
        synthetic_frame().to_csv(table, index=False)
        straight = run_experiment(parse_config(raw_config(table, Path(tmp) / "straight")),
                                  baselines=False)  # fmt: skip
        original, calls = Trainer.step, {"n": 0}

        def step(self, batch):
            calls["n"] += 1
            if calls["n"] == KILL_AT_STEP:
                raise Killed
            return original(self, batch)

        Trainer.step = step
        with contextlib.suppress(Killed):
            run_experiment(parse_config(raw_config(table, Path(tmp) / "killed")), baselines=False)
        Trainer.step = original
        shutil.rmtree(HERE / "legacy_run", ignore_errors=True)
        shutil.copytree(Path(tmp) / "killed" / "run", HERE / "legacy_run")
        (HERE / "legacy_run.json").write_text(json.dumps(outcome(straight.run_dir), indent=1))


if __name__ == "__main__":
    main()
