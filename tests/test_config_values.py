"""The run-level config keys: counts are strict integers, numbers are never booleans, the run
name is one plain folder name (issue 8)."""

import pytest
import yaml

from polytask.config import parse_config
from polytask.errors import ConfigError

from .conftest import config_dict


def with_section(section: str, **values) -> dict:
    raw = config_dict("t.csv")
    raw[section] = {**raw.get(section, {}), **values}
    return raw


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("training", "epochs", True),
        ("training", "epochs", 2.0),
        ("training", "batch_size", False),
        ("training", "seed", True),
        ("training", "lr", True),
        ("training", "weight_decay", False),
        ("training", "grad_clip", True),
        ("data", "temperature", True),
    ],
)
def test_a_boolean_or_a_float_is_not_a_count(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        parse_config(with_section(section, **{key: value}))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("training", "early_stopping", "patience"), True),
        (("training", "early_stopping", "min_delta"), True),
        (("data", "split", "seed"), True),
        (("data", "split", "seed"), 1.5),
        (("data", "split", "validation"), True),
    ],
)
def test_nested_counts_and_numbers_are_strict(path, value):
    raw = config_dict("t.csv")
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=r"\.".join(path)):
        parse_config(raw)


def test_numbers_stay_lenient_where_that_is_harmless():
    config = parse_config(with_section("training", lr=1, weight_decay="1e-4", epochs=3))
    assert config.training.lr == 1.0 and isinstance(config.training.lr, float)
    assert config.training.weight_decay == pytest.approx(1e-4)  # YAML reads 1e-4 as a string
    assert config.training.epochs == 3


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "", "a\\b", "x\x00y"])
def test_a_run_name_must_be_one_plain_folder_name(name):
    raw = config_dict("t.csv")
    raw["name"] = name
    with pytest.raises(ConfigError, match=r"name"):
        parse_config(raw)


@pytest.mark.parametrize("name", ["census", "run-2", "my run", "a.b"])
def test_plain_run_names_pass(name):
    raw = config_dict("t.csv")
    raw["name"] = name
    assert parse_config(raw).name == name


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("training", "lr"), ".inf"),
        (("training", "lr"), "inf"),
        (("training", "weight_decay"), ".nan"),
        (("tasks", 0, "weight"), "inf"),
        (("data", "temperature"), "inf"),
        (("model", "dropout"), "nan"),
    ],
)
def test_an_infinite_or_nan_number_is_refused(path, value):
    raw = yaml.safe_load(
        "data: {source: adult}\ntasks: [{name: income, type: binary}]\nmodel: {arch: hard}\n"
    )
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = yaml.safe_load(value)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    message = str(caught.value)  # "finite", or a bound that NaN fails first; the key is named
    assert str(path[-1]) in message and "\n" not in message


@pytest.mark.parametrize(("key", "widths"), [("trunk", [0]), ("trunk", [16, -1]), ("head", [0])])
def test_a_layer_width_below_one_is_refused(key, widths):
    raw = config_dict("t.csv")
    raw["model"] = {**raw["model"], key: widths}
    with pytest.raises(ConfigError, match=rf"model\.{key}\[\d\]: .*greater than or equal to 1"):
        parse_config(raw)
