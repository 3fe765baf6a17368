"""polytask.results: run results, their JSON form, and summaries across seeds."""

import json
import math
from pathlib import Path

import pytest

from polytask.results import (
    BalancerSummary,
    ModelResult,
    RunResult,
    load_model_result,
    mean_std,
    save_model_result,
    save_run_result,
)
from polytask.tasks import RegressionTask


def model_result(value: float, seconds: float = 1.5) -> ModelResult:
    return ModelResult(
        validation={"y": {"rmse": value + 1}},
        test={"y": {"rmse": value}},
        parameters=10,
        seconds=seconds,
        best_epoch=2,
        history=[{"epoch": 1}],
    )


def run_result(value: float, delta: float, tmp_path: Path) -> RunResult:
    task = RegressionTask(name="y", mean=(0.0,), std=(1.0,))
    return RunResult(
        tmp_path, [task], model_result(value), {"y": model_result(2.0)}, {}, delta_m_test=delta
    )


def test_a_model_result_round_trips(tmp_path):
    save_model_result(model_result(0.5), tmp_path / "m.json")
    assert load_model_result(tmp_path / "m.json") == model_result(0.5)


def test_a_file_that_is_not_a_model_result_fails_to_load(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"validation": {}}))
    with pytest.raises(TypeError):
        load_model_result(tmp_path / "m.json")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError):
        load_model_result(tmp_path / "m.json")


def test_a_run_result_is_written_as_its_dict(tmp_path):
    result = run_result(0.5, 3.0, tmp_path)
    save_run_result(result, tmp_path / "metrics.json")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["run_dir"] == str(tmp_path) and saved["delta_m_test"] == 3.0
    assert saved["multitask"]["test"] == {"y": {"rmse": 0.5}}
    assert saved["baselines"]["y"]["test"] == {"y": {"rmse": 2.0}}
    assert saved["tasks"][0]["name"] == "y" and saved["delta_m_validation"] is None


def test_a_summary_collects_each_runs_numbers(tmp_path):
    summary = BalancerSummary(
        "ew", [run_result(0.5, 1.0, tmp_path), run_result(0.7, -1.0, tmp_path)]
    )
    assert summary.metric("y", "rmse") == [0.5, 0.7]
    assert summary.delta_m() == [1.0, -1.0]
    assert summary.seconds() == [1.5, 1.5]


def test_mean_std_ignores_non_finite_values():
    assert mean_std([1.0, 3.0, math.nan, math.inf]) == (2.0, math.sqrt(2.0))
    assert mean_std([4.0]) == (4.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([math.nan]))
    assert all(math.isnan(v) for v in mean_std([]))
