"""VADER sentiment ground truth (Hutto & Gilbert, ICWSM 2014), from the vaderSentiment 3.3.2
sdist (``additional_resources/hutto_ICWSM_2014.tar.gz``).

23,703 sentences from four sources (tweets, movie-review snippets, Amazon review snippets, New
York Times editorial snippets), each rated by about 20 people on −4 … +4. The cached table holds
``id``, ``domain``, ``text``, ``sentiment`` (mean rating), ``n_ratings`` and the task labels:

* ``polarity``: negative (mean ≤ −0.5), neutral, positive (mean ≥ 0.5);
* ``intensity``: |mean rating| (how strong, whatever the sign);
* ``disagreement``: standard deviation of the raw ratings (recomputed from the anonymised
  ratings files);
* ``domain``: which of the four sources the sentence comes from.

On load, :func:`embed` turns ``text`` into frozen sentence-embedding columns ``emb_000`` …
(cached, see :mod:`polytask.data.text`), so the tabular pipeline trains on them; this needs
``pip install polytask[text]``.
"""

from __future__ import annotations

import ast
import io
import tarfile
from collections.abc import Mapping

import numpy as np
import pandas as pd

from polytask.data.fetch import PackageFiles

MEMBER = "additional_resources/hutto_ICWSM_2014.tar.gz"
DOMAINS = {
    "tweets": "tweets",
    "movieReviewSnippets": "movie_reviews",
    "amazonReviewSnippets": "amazon_reviews",
    "nytEditorialSnippets": "nyt_editorials",
}
NEUTRAL_BAND = 0.5


def _lines(raw: bytes) -> list[list[str]]:
    text = raw.decode("utf-8-sig", errors="replace")
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def parse_domain(domain: str, truth: bytes, ratings: bytes) -> pd.DataFrame:
    """One source's ground-truth file (id, mean, text) joined with its ratings file."""
    sentences = pd.DataFrame(
        [(f[0].strip(), float(f[1]), "\t".join(f[2:]).strip()) for f in _lines(truth)],
        columns=["id", "sentiment", "text"],
    )
    spread = {}
    for fields in _lines(ratings):
        values = np.asarray(ast.literal_eval(fields[3].strip()), dtype=float)
        spread[fields[0].strip()] = (float(values.std()), len(values))
    stats = pd.DataFrame.from_dict(spread, orient="index", columns=["disagreement", "n_ratings"])
    frame = sentences.join(stats, on="id", how="inner")
    frame.insert(0, "domain", domain)
    frame["id"] = domain + ":" + frame["id"]
    return frame


def convert(files: Mapping[str, bytes]) -> pd.DataFrame:
    with tarfile.open(
        fileobj=io.BytesIO(files[MEMBER])
    ) as inner:  # read in memory, never extracted
        contents = {
            info.name.rsplit("/", 1)[-1]: inner.extractfile(info).read()  # type: ignore[union-attr]
            for info in inner.getmembers()
            if info.isfile() and info.name.endswith(".txt")
        }
    parts = [
        parse_domain(
            domain,
            contents[f"{prefix}_GroundTruth.txt"],
            contents[f"{prefix}_anonDataRatings.txt"],
        )
        for prefix, domain in DOMAINS.items()
    ]
    return add_labels(pd.concat(parts, ignore_index=True))


def add_labels(frame: pd.DataFrame) -> pd.DataFrame:
    mean = frame["sentiment"]
    frame["polarity"] = np.select(
        [mean >= NEUTRAL_BAND, mean <= -NEUTRAL_BAND], ["positive", "negative"], "neutral"
    )
    frame["intensity"] = mean.abs()
    return frame


VADER = PackageFiles(
    cache_name="vader",
    package="vaderSentiment",
    version="3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    members=(MEMBER,),
    convert=convert,
)


def embed(frame: pd.DataFrame) -> pd.DataFrame:
    """Append the frozen sentence embeddings of ``text`` as numeric columns."""
    from polytask.data.text import embed_column

    return embed_column(frame, "text")


TASKS = [
    {"name": "polarity", "type": "multiclass", "target": "polarity"},
    {"name": "intensity", "type": "regression", "target": "intensity"},
    {"name": "disagreement", "type": "regression", "target": "disagreement"},
    {"name": "domain", "type": "multiclass", "target": "domain"},
]
# 'sentiment' is the mean rating that polarity and intensity are computed from.
DROP = ["id", "text", "sentiment", "n_ratings"]
