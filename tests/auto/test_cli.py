"""``polytask auto`` on the command line: a short study, and bad input as one line, exit 2."""

import sys

import pytest
import yaml

from ..conftest import config_dict, synthetic_frame
from ..test_cli import assert_clean_error, run_cli


@pytest.fixture
def config(tmp_path):
    table = tmp_path / "table.csv"
    synthetic_frame().to_csv(table, index=False)
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["training"]["epochs"] = 2
    raw["auto"] = {"arch": ["hard", "mmoe"], "balancer": ["equal", "uw"], "width": [8]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_short_study_prints_its_leaderboard(monkeypatch, capsys, config, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "auto", config, "--trials", "2", "--no-final")
    assert code == 0, err
    assert "Trials by validation Δm (2 of 2)" in out
    assert (tmp_path / "runs" / "synthetic-auto" / "leaderboard.csv").is_file()
    code, out, err = run_cli(monkeypatch, capsys, "report", tmp_path / "runs" / "synthetic-auto")
    assert code == 0, err
    assert (tmp_path / "runs" / "synthetic-auto" / "report.html").is_file()


def test_an_empty_search_space_names_the_file_and_key(monkeypatch, capsys, config):
    raw = yaml.safe_load(config.read_text())
    raw["auto"]["balancer"] = []
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "auto", config)
    assert_clean_error(code, err, str(config), "auto.balancer", "search space is empty")


def test_an_unknown_architecture_names_the_key(monkeypatch, capsys, config):
    raw = yaml.safe_load(config.read_text())
    raw["auto"]["arch"] = ["hard", "mmeo"]
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "auto", config)
    assert_clean_error(code, err, "auto.arch.1", "unknown architecture 'mmeo'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--timeout", "soon"], "--timeout 'soon': expected a duration"),
        (["--timeout", "0m"], "must be a positive duration"),
        (["--resume"], "no study to resume"),
        (["--storage", "nosuchdb://x"], "--storage nosuchdb://x: cannot be opened"),
        (["--jobs", "0"], "--jobs 0"),
    ],
)
def test_bad_options_are_one_line(monkeypatch, capsys, config, args, fragment):
    code, _, err = run_cli(monkeypatch, capsys, "auto", config, *args)
    assert_clean_error(code, err, fragment)


def test_without_optuna_the_error_names_the_extra(monkeypatch, capsys, config):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    code, _, err = run_cli(monkeypatch, capsys, "auto", config)
    assert_clean_error(code, err, "pip install 'polytask[auto]'")
