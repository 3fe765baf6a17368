import pytest
import yaml

from polytask.config import load_config, parse_config
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
    with pytest.raises(ConfigError, match=r"tasks\[0\] \(clicked\)\.type"):
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
