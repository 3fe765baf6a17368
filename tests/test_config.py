import json
from pathlib import Path

import pytest
import yaml

from polytask.config import Config, load_config, parse_config
from polytask.errors import ConfigError

from .conftest import config_dict


def write(tmp_path, data) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_misspelt_task_key_names_location_and_suggestion(tmp_path):
    raw = config_dict("t.csv")
    raw["tasks"][1]["tagret"] = "segment"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, raw))
    message = str(info.value)
    assert "c.yaml" in message
    assert "unknown key 'tasks[1] (segment).tagret'" in message
    assert "did you mean 'target'" in message


def test_misspelt_section_key(tmp_path):
    raw = config_dict("t.csv")
    raw["training"]["epocs"] = 3
    with pytest.raises(ConfigError, match=r"training\.epocs.*did you mean 'epochs'"):
        load_config(write(tmp_path, raw))


def test_top_level_typo(tmp_path):
    raw = config_dict("t.csv")
    raw["modle"] = raw.pop("model")
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("- a\n- b\n", "mapping"), ("a: [1,\n", "not valid YAML")],
)
def test_unreadable_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file():
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent/config.yaml")


def test_duplicate_task_names():
    raw = config_dict("t.csv")
    raw["tasks"][1]["name"] = "clicked"
    with pytest.raises(ConfigError, match="'clicked' is used twice"):
        parse_config(raw)


def test_wrong_task_type_is_reported():
    raw = config_dict("t.csv")
    raw["tasks"][0]["type"] = "binay"
    with pytest.raises(ConfigError, match=r"tasks\[0\] \(clicked\)\.type.*did you mean 'binary'"):
        parse_config(raw)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    config = load_config(write(tmp_path, config_dict("data/t.csv")))
    assert config.data.source == str(tmp_path / "data" / "t.csv")
    assert config.name == "synthetic"


def test_task_without_any_data_source():
    raw = config_dict("t.csv")
    raw["data"] = {}
    with pytest.raises(ConfigError, match="task 'clicked' has no data"):
        parse_config(raw)


OLD_RUN_CONFIG = Path(__file__).parent / "files" / "run_config_before_typed_options.json"
"""A run's config.json as written before typed options (flat encoder section repeating every
default of every encoder, ``positive: null`` on every task)."""


def test_a_config_saved_before_typed_options_still_loads():
    old = Config.model_validate(json.loads(OLD_RUN_CONFIG.read_text()))
    new = parse_config(config_dict("table.csv", output_dir="runs"))
    assert old == new
    assert old.model.encoder.type == "tabular" and old.model.options == {}
    assert old.tasks[0].options == {"positive": "yes"} and old.tasks[1].options == {}
    again = Config.model_validate(old.model_dump(mode="json"))
    assert again == old


def test_a_changed_option_of_another_entry_is_an_error():
    raw = config_dict("t.csv")
    raw["tasks"][1]["positive"] = "a"
    with pytest.raises(ConfigError, match=r"tasks\[1\] \(segment\)\.positive: 'positive' is an "):
        parse_config(raw)
    raw = config_dict("t.csv")
    raw["model"] = {"arch": "mmoe", "expert": 2}
    with pytest.raises(ConfigError, match=r"unknown key 'model\.expert' \(did you mean 'experts'"):
        parse_config(raw)
    raw["model"] = {"arch": "hard", "experts": 4}  # even at mmoe's default: not an old dump
    with pytest.raises(ConfigError, match=r"'experts' is an option of architecture 'mmoe'"):
        parse_config(raw)
    raw["model"] = {"arch": "mmeo"}
    with pytest.raises(ConfigError, match=r"model\.arch: unknown architecture 'mmeo'.*'mmoe'"):
        parse_config(raw)


def test_built_in_names_stay_bare_and_paths_resolve(tmp_path):
    config = load_config(write(tmp_path, config_dict("adult")))
    assert config.data.source == "adult"
    config = load_config(write(tmp_path, config_dict("sub/table")))
    assert config.data.source == str(tmp_path / "sub" / "table")


def test_the_config_layer_imports_no_registry():
    import ast

    import polytask.config as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    higher = ("polytask.models", "polytask.tasks", "polytask.balancers", "polytask.data")
    assert not [m for m in imported if m.startswith(higher)]


def test_importing_the_config_alone_registers_the_built_in_entries():
    """The registries are filled by importing polytask (its __init__ imports models and tasks);
    a fresh interpreter that imports only polytask.config must parse every built-in name."""
    import subprocess
    import sys

    code = (
        "from polytask.config import parse_config\n"
        "parse_config({'data': {'source': 'x.csv'}, 'model': {'arch': 'mmoe', 'encoder': 'cnn'},"
        " 'tasks': [{'name': 'a', 'type': 'multilabel', 'target': ['b']}]})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
