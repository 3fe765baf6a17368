"""The run of ``legacy_run/`` (shared by its generator and the test that resumes it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import config_dict

#: 5 steps per epoch: the run dies inside its third and last epoch.
KILL_AT_STEP = 12
BALANCER = {"name": "imtl", "mode": "params", "update_every": 2}


def raw_config(table: Path, output: Path) -> dict[str, Any]:
    raw = config_dict(str(table), output_dir=str(output), name="run", balancer=BALANCER)
    raw["training"]["epochs"] = 3
    return raw


def outcome(run_dir: Path) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "test": metrics["multitask"]["test"],
        "best_epoch": metrics["multitask"]["best_epoch"],
        "scores": [log["score"] for log in metrics["multitask"]["history"]],
    }
