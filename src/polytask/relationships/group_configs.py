"""Ready configs for the groupings found: the input config with ``model.arch: groups`` and
``model.groups`` set, otherwise unchanged (data paths made absolute, and the model options of
another architecture, which ``groups`` does not take, left out). Each is parsed and checked
before it is written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from polytask.checks import check_config
from polytask.config import Config, ModelConfig, parse_config
from polytask.errors import ConfigError
from polytask.models.groups import check_groups
from polytask.training.checkpoint import atomic_write_text


def groups_config(raw: dict[str, Any], config: Config, groups: Sequence[Sequence[str]]) -> dict:
    """``raw`` (the config file's mapping) with the ``groups`` architecture over ``groups``;
    ``config`` (the loaded config) gives the resolved data paths."""
    result = dict(raw)
    keep = ModelConfig.valid_keys({"arch": "groups"})
    model = {k: v for k, v in (raw.get("model") or {}).items() if k in keep}
    result["model"] = {**model, "arch": "groups", "groups": [list(g) for g in groups]}
    if config.data.source is not None:
        result["data"] = {**(raw.get("data") or {}), "source": config.data.source}
    resolved = {t.name: t.data for t in config.tasks}
    result["tasks"] = [
        {**task, "data": resolved[task["name"]]} if task.get("data") is not None else task
        for task in raw["tasks"]
    ]
    return result


def write_groups_config(
    path: Path, raw: dict[str, Any], config: Config, groups: Sequence[Sequence[str]]
) -> Path:
    """Write :func:`groups_config` to ``path`` as YAML after checking that it validates."""
    data = groups_config(raw, config, groups)
    parsed = parse_config(data, source=str(path))
    try:
        check_groups(parsed.model.options["groups"], [t.name for t in parsed.tasks])
    except ValueError as exc:
        raise ConfigError(f"{path}: model.{exc}") from exc
    check_config(parsed)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path
