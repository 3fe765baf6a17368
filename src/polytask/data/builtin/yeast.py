"""Yeast multi-label gene functions (Elisseeff & Weston, 2002), from the river 0.26.1 wheel.

2,417 genes × 103 numeric features (micro-array expression and phylogenetic profiles) and 14
binary functional classes ``Class1`` … ``Class14``. The file is 0.84 MB gzipped (random-looking
floats compress poorly), so it is fetched and cached rather than shipped.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Mapping

import pandas as pd

from polytask.data.fetch import PackageFiles

MEMBER = "river/datasets/yeast.csv.gz"
FEATURES = [f"Att{i}" for i in range(1, 104)]
LABELS = [f"Class{i}" for i in range(1, 15)]


def convert(files: Mapping[str, bytes]) -> pd.DataFrame:
    """The CSV as is (features as float, labels as 0/1 integers), columns checked."""
    frame = pd.read_csv(io.BytesIO(gzip.decompress(files[MEMBER])))
    missing = [c for c in [*FEATURES, *LABELS] if c not in frame.columns]
    if missing:
        raise ValueError(f"yeast.csv.gz lacks column {missing[0]!r}")
    frame[LABELS] = frame[LABELS].astype("int64")
    return frame[[*FEATURES, *LABELS]]


YEAST = PackageFiles(
    cache_name="yeast", package="river", version="0.26.1", members=(MEMBER,), convert=convert
)

TASKS = [
    {"name": f"class{i}", "type": "binary", "target": f"Class{i}", "positive": "1"}
    for i in range(1, 15)
]
