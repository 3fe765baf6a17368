"""The ``logging:`` section, the trackers it asks for (``polytask.tracking.build``) and their
bad input: a typo, a missing extra (one line naming the ``pip install`` command, exit 2,
nothing written). No tracking library is imported here."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import yaml

from polytask.config import LoggingConfig, MlflowConfig, parse_config
from polytask.errors import ConfigError
from polytask.tracking import Tracking, prepare_tracking, run_files
from polytask.tracking.mlflow import default_tracking_uri, mlflow_key

from ..conftest import config_dict
from ..test_cli import assert_clean_error, run_cli


def with_logging(logging) -> dict:
    return config_dict("table.csv", logging=logging)


def test_tracking_is_off_by_default_and_absent_from_saved_configs():
    config = parse_config(config_dict("table.csv"))
    assert config.logging == LoggingConfig() and not config.logging.enabled
    assert "logging" not in config.model_dump(mode="json")  # old configs keep their form
    assert prepare_tracking(config).start(Path("unused")).trackers == []


def test_the_section_takes_tensorboard_and_mlflow_with_defaults():
    config = parse_config(with_logging({"tensorboard": True, "mlflow": True}))
    assert config.logging.tensorboard and config.logging.mlflow == MlflowConfig()
    given = {"tracking_uri": "http://host:5000", "experiment": "churn"}
    config = parse_config(with_logging({"mlflow": given}))
    assert config.logging.mlflow == MlflowConfig(**given)
    assert config.model_dump(mode="json")["logging"]["mlflow"] == given
    assert parse_config(with_logging({"mlflow": False})).logging.mlflow is None


@pytest.mark.parametrize(
    ("logging", "message"),
    [
        ({"tensorbord": True}, "unknown key 'logging.tensorbord' (did you mean 'tensorboard'?)"),
        (
            {"mlflow": {"experiement": "x"}},
            "unknown key 'logging.mlflow.experiement' (did you mean 'experiment'?)",
        ),
        ({"mlflow": {"tracking_uri": ""}}, "logging.mlflow.tracking_uri"),
        ({"tensorboard": 3}, "logging.tensorboard"),
    ],
)
def test_a_bad_logging_section_is_one_error_naming_the_key(logging, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(with_logging(logging))
    assert message in str(caught.value)


def test_a_typo_in_the_logging_section_exits_2_from_the_command_line(
    monkeypatch, capsys, tmp_path, table
):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(str(table), logging={"tensorbaord": True})))
    code, _, err = run_cli(monkeypatch, capsys, "train", path)
    assert_clean_error(code, err, "logging.tensorbaord", "did you mean 'tensorboard'?")


@pytest.mark.parametrize(
    ("logging", "modules", "extra"),
    [
        ({"tensorboard": True}, ["tensorboard", "torch.utils.tensorboard"], "tensorboard"),
        ({"mlflow": {"tracking_uri": "http://127.0.0.1:9"}}, ["mlflow"], "mlflow"),
    ],
)
def test_a_missing_extra_names_its_pip_install_and_writes_nothing(
    monkeypatch, capsys, tmp_path, table, logging, modules, extra
):
    for module in modules:  # as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), logging=logging)
    kept = tmp_path / "runs" / "synthetic"
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text("{}")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "train", path)
    assert_clean_error(code, err, f"logging.{extra}", f"pip install 'polytask[{extra}]'")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["synthetic"]
    assert [p.name for p in kept.iterdir()] == ["metrics.json"]


def test_the_default_mlflow_store_is_sqlite_in_the_output_folder(tmp_path):
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_keys_mlflow_would_refuse_are_made_valid():
    assert mlflow_key("loss/train/a b-c.d_e") == "loss/train/a b-c.d_e"
    assert mlflow_key("validation/größe/r²+x") == "validation/größe/r²_x"


class Recorder:
    def __init__(self, name: str, fail_on: str = "") -> None:
        self.name, self.fail_on, self.calls = name, fail_on, []

    def _call(self, what: str, *args) -> None:
        if what == self.fail_on:
            raise OSError("the server went away")
        self.calls.append((what, *args))

    def log_params(self, params):
        self._call("params", dict(params))

    def log_epoch(self, epoch, scalars):
        self._call("epoch", epoch, dict(scalars))

    def log_image(self, tag, image, step):
        self._call("image", tag, step)

    def finish(self, summary, files, *, failed=False):
        self._call("finish", dict(summary), list(files), failed)


def test_a_tracker_that_fails_mid_run_is_dropped_with_a_warning_and_the_others_go_on():
    broken, working = Recorder("mlflow", fail_on="epoch"), Recorder("tensorboard")
    tracking = Tracking([broken, working])
    tracking.log_params({"lr": 0.1})
    with pytest.warns(RuntimeWarning, match=r"tracking: mlflow failed \(OSError: the server"):
        tracking.log_epoch(1, {"loss/train/a": 0.5}, {"affinity": "image"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: not again at every epoch
        tracking.log_epoch(2, {"loss/train/a": 0.4}, {})
        tracking.finish({"final/best_epoch": 2.0}, [Path("metrics.json")])
    assert broken.calls == [("params", {"lr": 0.1})]
    assert working.calls == [
        ("params", {"lr": 0.1}),
        ("epoch", 1, {"loss/train/a": 0.5}),
        ("image", "affinity", 1),
        ("epoch", 2, {"loss/train/a": 0.4}),
        ("finish", {"final/best_epoch": 2.0}, [Path("metrics.json")], False),
    ]


def test_the_artifacts_are_the_run_folders_top_level_files(tmp_path):
    for name in ("metrics.json", "model.safetensors", ".lock", ".owner"):
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "latest.json").write_text("x")
    assert [p.name for p in run_files(tmp_path)] == ["metrics.json", "model.safetensors"]
