"""``evaluation.affinity`` in a run and ``polytask affinity`` end to end, and its bad input."""

import json

import pytest
import yaml

from polytask.config import load_config

from ..conftest import config_dict
from ..test_cli import assert_clean_error, run_cli


def write_config(tmp_path, table, **overrides):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), **overrides)
    raw["training"] = {**raw["training"], "epochs": 2}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_polytask_affinity_writes_the_matrix_the_heatmap_metrics_and_groups_configs(
    monkeypatch, capsys, tmp_path, table
):
    config = write_config(tmp_path, table)
    code, out, err = run_cli(
        monkeypatch, capsys, "affinity", config, "--method", "tag", "--every", "2",
        "--max-k", "2", "--validate", "--validate-epochs", "1",
    )  # fmt: skip
    assert code == 0, err
    run = tmp_path / "runs" / "synthetic"
    assert (run / "affinity.png").stat().st_size > 0
    lines = (run / "affinity.csv").read_text().splitlines()
    assert lines[0] == "task,clicked,segment,spend" and len(lines) == 4
    history = json.loads((run / "metrics.json").read_text())["multitask"]["history"]
    assert len(history) == 2
    # 5 steps per epoch, every 2nd step counted from the first: steps 1, 3, 5, then 7, 9
    for log, measured in zip(history, (3, 2), strict=True):
        record = log["observations"]["affinity"]
        assert record["method"] == "tag" and record["tasks"] == ["clicked", "segment", "spend"]
        assert record["steps"][0][1] == measured
    for k in (1, 2):
        written = load_config(run / f"groups-k{k}.yaml")
        assert written.model.arch == "groups" and len(written.model.options["groups"]) == k
    assert not (run / "groups-k3.yaml").exists()
    assert "TAG lookahead" in out and "groups-k2.yaml" in out
    # --validate trained each written config with its baselines (a groups config trains
    # end to end) and picked k by validation Δm
    for k in (1, 2):
        metrics = tmp_path / f"runs/synthetic-groups-k{k}-seed3/metrics.json"
        assert json.loads(metrics.read_text())["delta_m_validation"] is not None
    assert "best by validation Δm: k=" in out


def test_a_training_run_with_evaluation_affinity_records_it(monkeypatch, capsys, tmp_path, table):
    config = write_config(tmp_path, table, evaluation={"affinity": {"method": "cosine"}})
    code, _, err = run_cli(monkeypatch, capsys, "train", config)
    assert code == 0, err
    run = tmp_path / "runs" / "synthetic"
    history = json.loads((run / "metrics.json").read_text())["multitask"]["history"]
    matrix = history[-1]["observations"]["affinity"]["matrix"]
    assert [matrix[i][i] for i in range(3)] == pytest.approx([1.0, 1.0, 1.0])
    assert (run / "affinity.csv").is_file() and (run / "affinity.png").is_file()
    assert not (run / "groups-k2.yaml").exists()


@pytest.mark.parametrize(
    ("args", "overrides", "fragments"),
    [
        ((), {"tasks": [{"name": "spend", "type": "regression"}]}, ("one task", "at least 2")),
        (("--max-k", "4"), {}, ("--max-k 4", "number of tasks (3)")),
        (("--every", "0"), {}, ("--every 0", "≥ 1")),
        ((), {"evaluation": {"affinity": {"every": 0}}}, ("evaluation.affinity.every",)),
        ((), {"evaluation": {"affinity": {"every": 1.5}}}, ("evaluation.affinity.every",)),
        (("--method", "pca"), {}, ("evaluation.affinity.method",)),
        (("--validate", "--validate-epochs", "0"), {}, ("--validate-epochs 0",)),
        (
            ("--method", "tag"),
            {"model": {"arch": "groups", "groups": [["clicked"], ["segment"], ["spend"]]}},
            ("evaluation.affinity: tag", "shares none"),
        ),
        (
            (),
            {"model": {"arch": "cross_stitch", "trunk": [8, 8], "head": [4]}},
            ("model.arch 'cross_stitch'", "own slice", "mode: params"),
        ),
        ((), {"model": {"arch": "mtrl", "trunk": [8], "head": [4]}}, ("model.arch 'mtrl'",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, table, args, overrides,
                                          fragments):  # fmt: skip
    config = write_config(tmp_path, table, **overrides)
    code, _, err = run_cli(monkeypatch, capsys, "affinity", config, *args)
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "runs").exists()
