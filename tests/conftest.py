"""Shared fixtures: small synthetic multi-task tables written to temporary CSV files.

Every test process runs torch on one thread: the models here are tiny, and ``make test`` runs two
pytest-xdist workers on two cores, where each worker's default two OpenMP threads oversubscribe
the cores and spin-wait on each other (the suite took twice as long). The subprocesses some tests
start inherit ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``. Set after NumPy is imported, so the
worker's own OpenBLAS pool keeps its default (tests/balancers checks that it is limited and
restored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from . import fake_text

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
torch.set_num_threads(1)


def synthetic_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Two numeric and one categorical feature; binary, multiclass and regression targets that
    depend on them, with some labels missing."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    shift = pd.Series(colour).map({"red": 1.0, "green": 0.0, "blue": -1.0}).to_numpy()
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "clicked": np.where(x1 + 0.5 * shift + 0.3 * rng.normal(size=n) > 0, "yes", "no"),
            "segment": np.select([x2 < -0.5, x2 > 0.5], ["low", "high"], "mid"),
            "spend": 3.0 * x1 - 2.0 * x2 + shift + 0.1 * rng.normal(size=n),
        }
    )
    frame.loc[rng.choice(n, n // 10, replace=False), "clicked"] = np.nan
    frame.loc[rng.choice(n, n // 8, replace=False), "spend"] = np.nan
    return frame


def config_dict(source: str, **overrides) -> dict:
    """A small, fast config over :func:`synthetic_frame`."""
    config = {
        "name": "synthetic",
        "data": {"source": source, "split": {"validation": 0.2, "test": 0.2, "seed": 1}},
        "tasks": [
            {"name": "clicked", "type": "binary", "positive": "yes"},
            {"name": "segment", "type": "multiclass"},
            {"name": "spend", "type": "regression"},
        ],
        "model": {"trunk": [16], "head": [8], "dropout": 0.1},
        "training": {"epochs": 4, "batch_size": 32, "lr": 0.01, "seed": 3},
    }
    config.update(overrides)
    return config


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    synthetic_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def config_file(tmp_path: Path, table: Path) -> Path:
    path = tmp_path / "config.yaml"
    config = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def fake_text_encoder(monkeypatch, tmp_path):
    """The fake sentence transformer in place of the real one, a private cache, one thread."""
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    fake_text.install(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def reviews(tmp_path):
    """A small review table written to CSV."""
    path = tmp_path / "reviews.csv"
    fake_text.review_frame().to_csv(path, index=False)
    return path
