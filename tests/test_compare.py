import json

import pytest

from polytask.compare import compare_balancers, parse_balancers
from polytask.config import parse_config
from polytask.errors import ConfigError

from .conftest import config_dict


def test_parse_balancers_with_modes():
    specs = parse_balancers("ew, mgda:params ,famo")
    assert [s.name for s in specs] == ["ew", "mgda", "famo"]
    assert specs[1].options == {"mode": "params"}


def test_unknown_balancer_fails_before_any_training(tmp_path, table):
    config = parse_config(config_dict(str(table), output_dir=str(tmp_path / "out")))
    with pytest.raises(ConfigError, match="did you mean 'famo'"):
        compare_balancers(config, parse_balancers("ew,fam"), [0])
    assert not (tmp_path / "out").exists()


def test_one_run_per_balancer_and_seed_with_baselines_once_per_seed(tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path))
    raw["training"]["epochs"] = 2
    config = parse_config(raw)
    summaries = compare_balancers(config, parse_balancers("ew,mgda"), [0, 1])
    assert [s.name for s in summaries] == ["ew", "mgda"]
    assert all(len(s.runs) == 2 for s in summaries)
    assert len(list((tmp_path / "baselines").iterdir())) == 3 * 2  # tasks × seeds
    saved = json.loads((tmp_path / "synthetic-comparison.json").read_text())
    mean, std = saved["mgda"]["delta_m_mean_std"]
    assert std >= 0 and mean == pytest.approx(sum(summaries[1].delta_m()) / 2)
    # seeds differ, so the two ew runs do not coincide
    assert summaries[0].runs[0].multitask.test != summaries[0].runs[1].multitask.test


def test_compare_command_prints_and_writes_markdown(tmp_path, table, monkeypatch, capsys):
    import yaml

    from .test_cli import run_cli

    raw = config_dict(str(table), output_dir=str(tmp_path / "out"))
    raw["training"]["epochs"] = 1
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    md = tmp_path / "table.md"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "compare",
        config,
        "--balancers",
        "ew,famo",
        "--seeds",
        "0",
        "--markdown",
        md,
    )
    assert code == 0, err
    assert "Δm%" in out and "famo" in out
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| method | clicked auc")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["single-task", "ew", "famo"]
