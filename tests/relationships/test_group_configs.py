"""The ``groups`` configs written for a grouping parse, validate and change only the model."""

import pytest
import yaml

from polytask.config import load_config
from polytask.errors import ConfigError
from polytask.relationships.group_configs import write_groups_config

from ..conftest import config_dict


def test_a_written_groups_config_validates_and_keeps_the_rest(tmp_path, table):
    raw = config_dict("table.csv", model={"arch": "mmoe", "experts": 3, "trunk": [16]})
    source = tmp_path / "in" / "config.yaml"
    source.parent.mkdir()
    (source.parent / "table.csv").write_bytes(table.read_bytes())
    source.write_text(yaml.safe_dump(raw))
    config = load_config(source)
    out = tmp_path / "out" / "groups-k2.yaml"
    out.parent.mkdir()
    write_groups_config(out, raw, config, [["clicked", "spend"], ["segment"]])
    written = load_config(out)
    assert written.model.arch == "groups"
    assert written.model.options["groups"] == (("clicked", "spend"), ("segment",))
    assert written.model.trunk == [16]  # kept; 'experts' (an mmoe option) left out
    assert written.data.source == config.data.source  # the data path still resolves
    assert written.training == config.training and written.tasks == config.tasks


def test_a_grouping_that_misses_a_task_is_not_written(tmp_path, table):
    raw = config_dict(str(table))
    config = load_config_from(tmp_path, raw)
    out = tmp_path / "groups-k2.yaml"
    with pytest.raises(ConfigError, match="spend"):
        write_groups_config(out, raw, config, [["clicked"], ["segment"]])
    assert not out.exists()


def load_config_from(folder, raw):
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)
