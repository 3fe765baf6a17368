"""Balancer states and a run directory saved before the issue-7 redesign still load and continue
as the old code did (``data/legacy_states.pt`` and ``data/legacy_run/``, written at e488650 by
``data/make_legacy_states.py`` and ``data/make_legacy_run.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from gb_toys import run_step, toy_model

from polytask.balancers import build_balancer
from polytask.config import parse_config
from polytask.experiment import run_experiment
from tests.balancers.data.legacy_run_config import outcome, raw_config
from tests.conftest import synthetic_frame

DATA = Path(__file__).parent / "data"
CASES = torch.load(DATA / "legacy_states.pt", weights_only=True)
TASKS = ("a", "b", "c")
#: Learned scales feeding a gradient method: the old code computed their factors e^{±s} in the
#: losses' float64 there but in the scales' float32 alone; now both use float32 (one rule), so
#: these agree to float32 round-off only.
LEARNED_SCALES_COMPOSED = {"imtl", "upgrad_uw"}


@pytest.mark.parametrize("key", sorted(CASES))
def test_legacy_state_resumes_with_the_old_next_steps(key: str) -> None:
    case = CASES[key]
    model = toy_model(TASKS)
    model.load_state_dict(case["model"])
    balancer = build_balancer(case["name"], list(TASKS), **case["options"])
    balancer.load_state_dict(case["state"])
    rel, tiny = (1e-5, 1e-9) if key in LEARNED_SCALES_COMPOSED else (1e-12, 1e-15)
    for k, weights, grad in zip((10, 11), case["next_weights"], case["next_grads"], strict=True):
        got, got_grad = run_step(balancer, model, k)
        assert got.keys() == weights.keys()
        for name in TASKS:
            assert got[name] == pytest.approx(weights[name], rel=rel, abs=tiny), (key, k, name)
        torch.testing.assert_close(got_grad, grad, rtol=rel, atol=tiny)


def test_legacy_run_resumes_to_the_uninterrupted_outcome(tmp_path: Path) -> None:
    """A run directory killed in its last epoch by the old code (``data/make_legacy_run.py``)
    resumes with ``--resume`` and ends where the old code's uninterrupted run did."""
    table = tmp_path / "table.csv"
    synthetic_frame().to_csv(table, index=False)
    shutil.copytree(DATA / "legacy_run", tmp_path / "runs" / "run")
    config = parse_config(raw_config(table, tmp_path / "runs"))
    result = run_experiment(config, baselines=False, resume=True)
    got, expected = outcome(result.run_dir), json.loads((DATA / "legacy_run.json").read_text())
    assert result.run_dir == tmp_path / "runs" / "run"
    saved = json.loads((DATA / "legacy_run/checkpoint/epoch-0002/state.json").read_text())
    history = json.loads((result.run_dir / "metrics.json").read_text())["multitask"]["history"]
    # epochs 1-2 come from the checkpoint, not retrained (fields added since default to zero)
    old = saved["history"]
    assert [{k: log[k] for k in old[0]} for log in history[:2]] == old
    assert all(log["nonfinite_steps"] == 0 for log in history[:2])
    assert got["best_epoch"] == expected["best_epoch"]
    # imtl's learned-scale factors now round to float32 (see LEARNED_SCALES_COMPOSED)
    assert got["scores"] == pytest.approx(expected["scores"], rel=1e-4)
    for task, metrics in expected["test"].items():
        assert got["test"][task] == pytest.approx(metrics, rel=1e-4), task
