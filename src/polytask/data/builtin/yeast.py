"""Yeast multi-label gene functions (Elisseeff & Weston, 2002), from the river 0.26.1 sdist.

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
    cache_name="yeast",
    package="river",
    version="0.26.1",
    # river's wheels are built per platform; the sdist holds the same yeast.csv.gz (identical
    # bytes) and is one file for every platform, read as data (never built).
    filename="river-0.26.1.tar.gz",
    sha256="2326f87f396801cfd8672ac02d9f9731c10e936696e7a0a1f89a378b994fba3f",
    members=(MEMBER,),
    convert=convert,
)

TASKS = [
    {"name": f"class{i}", "type": "binary", "target": f"Class{i}", "positive": "1"}
    for i in range(1, 15)
]
