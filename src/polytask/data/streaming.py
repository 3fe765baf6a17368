"""Streamed Parquet data (``data.streaming: true``): tables larger than memory.

The source is a Parquet file or a folder of them (``*.parquet`` / ``*.pq``, searched
recursively, read in sorted path order as one table). It is read in record batches of at most
:data:`READ_ROWS` rows with ``pyarrow.dataset``, never whole:

* **Splits** are assigned by a hash of each row: of its ``data.split.key`` column or, without a
  key, of its whole content (every column, by name). A row with hash fraction ``u`` in [0, 1)
  goes to test when ``u < test``, to validation when ``u < test + validation``, else to
  training: reproducible, independent of file order and of how the table is cut into files,
  and the fractions hold in expectation. Without a key, identical rows share a split (no
  duplicate leaks from training into test). ``data.split.seed`` salts the hash;
  ``data.split.column`` works as in memory (validation carved by the hash when it names none).
* **One pass** checks every row's feature values and gathers, over the training rows, what
  :meth:`FeaturePreprocessor.fit_summary` fits: per numeric column count, mean and sum of
  squared deviations (merged batch by batch in float64, in file order), whether values are
  missing, the distinct categories; the medians that impute missing values come from a
  sample of at most :data:`MEDIAN_SAMPLE_ROWS` present values per column (those of the rows
  of smallest hash, ties broken by value: a uniform sample; exact below that size). The
  label columns of every row are kept (Arrow arrays) so that tasks are fitted exactly as in
  memory, then encoded once: each row's targets and masks stay in memory (a few bytes per
  row and task), as does its split code (a byte); epochs read and encode the feature columns
  only.
* **A second pass** encodes the validation and test rows, which are held in memory (they are
  usually small; lower ``data.split`` fractions for a big table).
* **Training** re-reads the table each epoch: row groups in a seeded order, training rows
  encoded batch by batch and shuffled through a :class:`ShuffleBuffer` of
  ``data.shuffle_buffer`` rows (default :data:`DEFAULT_SHUFFLE_BUFFER`). An epoch is
  ``ceil(training rows / batch size)`` steps, every training row once, reproducible given
  ``(seed, epoch)``; row groups without a training row are not read.
* **Under torchrun** both passes are shared (:func:`shared_pass`): each process reads its
  share of the row groups, the parts are gathered, and every process raises the same error,
  that of the earliest row group. The first pass's parts (:func:`read_first_pass`, shares
  :func:`first_pass_shares`) are combined in file order (the moments folded chunk by chunk by
  position), so every process fits the statistics one process would, bit for bit; the second
  pass's (:func:`read_second_pass`, shares :func:`second_pass_shares`: the encoded inputs of
  each process's validation and test rows) are put back in file order, so every process holds
  the validation and test rows of one process, bit for bit. While training, each process
  reads only its own row groups (:func:`deal_row_groups`) and yields its part of each global
  batch (:func:`step_rows`: the same number of steps on every process).

Not streamed: built-in datasets, CSV files, ``features.text`` and per-task ``data`` tables
(each a clear error).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch
from torch import Tensor

from polytask.config import Config, SplitConfig
from polytask.data.dataset import Batch, MultiTaskData
from polytask.data.features import FeaturePreprocessor, FeatureSummary
from polytask.data.sampling import ShuffleBuffer, epoch_generator
from polytask.data.splits import SPLITS
from polytask.data.tables import check_unique_columns
from polytask.errors import ConfigError, DataError, PolytaskError, RunError

READ_ROWS = 65_536
"""Rows per record batch read from Parquet."""
DEFAULT_SHUFFLE_BUFFER = 100_000
"""Rows held by the training shuffle buffer when ``data.shuffle_buffer`` is not set."""
MEDIAN_SAMPLE_ROWS = 100_000
"""Training rows sampled for the medians that impute missing numeric values."""
PARQUET_SUFFIXES = (".parquet", ".pq")

TRAIN, VALIDATION, TEST, CARVABLE = 0, 1, 2, 3
"""Split codes; ``CARVABLE``: a ``train`` row of a split column, moved to validation when the
column names no validation row and the row's hash says so."""
HELD_OUT = (VALIDATION, TEST)
"""The split codes of the rows held in memory (encoded by the second pass)."""


@dataclass(frozen=True)
class Chunk:
    """A record batch of one file: its rows ``start …`` of that file."""

    path: str
    start: int
    table: pa.Table

    def frame(self, columns: list[str], dtypes: Mapping[str, str]) -> pd.DataFrame:
        """The ``columns`` as pandas, indexed by row of the file (so errors name file rows),
        the columns in ``dtypes`` cast to theirs: each batch then has the dtypes pandas gives
        the whole table (an integer column with missing values anywhere is float)."""
        frame = self.table.select(columns).to_pandas()
        casts = {c: t for c, t in dtypes.items() if c in frame.columns and frame[c].dtype != t}
        if casts:
            frame = frame.astype(casts)
        frame.index = pd.RangeIndex(self.start, self.start + len(frame))
        return frame


class ParquetStream:
    """A Parquet file or folder, read in :class:`Chunk` s, row group by row group."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.files = parquet_files(source)
        try:
            self.dataset = ds.dataset(self.files, format="parquet")
            self.groups: list[ds.ParquetFileFragment] = []
            self.starts: list[int] = []  # index of each row group's first row in its file
            self.sizes: list[int] = []  # rows of each row group
            for fragment in self.dataset.get_fragments():
                start = 0
                for group in fragment.split_by_row_group():
                    self.groups.append(group)
                    self.starts.append(start)
                    self.sizes.append(group.row_groups[0].num_rows)
                    start += self.sizes[-1]
        except (pa.ArrowException, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise DataError(f"{source}: cannot be read as Parquet ({reason})") from exc
        self.schema = self.dataset.schema
        index = _pandas_index_columns(self.schema)  # pandas reads them as the index
        names = [n for n in self.schema.names if n not in index]
        check_unique_columns(names, source)
        for fragment in self.dataset.get_fragments():  # a scan fills absent columns with nulls
            found = set(fragment.physical_schema.names) - index
            if found != set(names):
                absent = sorted(set(names) - found) or sorted(found - set(names))
                which = "lacks" if set(names) - found else "has an extra"
                raise DataError(
                    f"{fragment.path}: {which} column '{absent[0]}' (against "
                    f"{self.files[0]}); every file of {source} needs the same columns"
                )
        for f in self.schema:
            if pa.types.is_nested(f.type):
                raise DataError(
                    f"{source}: column '{f.name}' holds nested values; every cell must be a "
                    "single number or string: flatten the column or drop it"
                )
        self.columns = names
        metadata = self.schema.pandas_metadata or {}
        self.nullable = {  # integer columns that pandas wrote with a nullable dtype ("Int64")
            c["name"]: c["numpy_type"]
            for c in metadata.get("columns", [])
            if str(c.get("numpy_type")).startswith(("Int", "UInt")) and c["name"] in names
        }

    def empty_frame(self) -> pd.DataFrame:
        """No rows, every column with the dtype pandas gives it (for inference and checks)."""
        return self.schema.empty_table().select(self.columns).to_pandas()

    def chunks(
        self, columns: list[str], order: list[int] | None = None
    ) -> Iterator[tuple[int, Chunk]]:
        """``(row group number, chunk)`` over the row groups (in ``order``, else in file
        order); a row group's chunks come in file order."""
        for number in order if order is not None else range(len(self.groups)):
            group, start = self.groups[number], self.starts[number]
            try:
                batches = group.to_batches(
                    schema=self.schema, columns=columns, batch_size=READ_ROWS
                )
                for batch in batches:
                    table = pa.Table.from_batches([batch], schema=batch.schema)
                    yield number, Chunk(group.path, start, table)
                    start += len(table)
            except (pa.ArrowException, OSError) as exc:
                reason = " ".join(str(exc).split())
                raise DataError(f"{group.path}: cannot be read as Parquet ({reason})") from exc


def integer_columns_with_nulls(stream: ParquetStream, columns: list[str]) -> set[str]:
    """The integer ``columns`` with a missing value anywhere in ``stream``: pandas reads the
    whole table's as floats, so each batch must too (:meth:`Chunk.frame`). Counted by a scan
    of those columns alone (Parquet statistics let it skip row groups without one)."""
    integers = [
        c
        for c in columns
        if c not in stream.nullable and pa.types.is_integer(stream.schema.field(c).type)
    ]
    try:
        return {c for c in integers if stream.dataset.count_rows(filter=ds.field(c).is_null())}
    except (pa.ArrowException, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{stream.source}: cannot be read as Parquet ({reason})") from exc


def _pandas_index_columns(schema: pa.Schema) -> set[str]:
    """The columns that hold a pandas index (as pandas writes one), not data."""
    found = {n for n in schema.names if n.startswith("__index_level_")}
    metadata = schema.pandas_metadata or {}
    return found | {c for c in metadata.get("index_columns", []) if isinstance(c, str)}


def parquet_files(source: str) -> list[str]:
    """The Parquet files of ``source`` (a file, or a folder searched recursively), sorted."""
    path = Path(source)
    hint = (
        "data.streaming: true reads Parquet only (a .parquet/.pq file or a folder of them); "
        "convert the table (pandas: read it, then DataFrame.to_parquet) or set "
        "data.streaming: false"
    )
    if path.is_dir():
        files = []
        for found in sorted(path.rglob("*")):
            if not found.is_file() or any(
                part.startswith((".", "_")) for part in found.relative_to(path).parts
            ):
                continue  # hidden and marker files (.crc, _SUCCESS), as pyarrow skips them
            if not found.name.lower().endswith(PARQUET_SUFFIXES):
                raise DataError(
                    f"{found}: not a Parquet file, in the folder {source}, which must hold "
                    "Parquet files only (*.parquet, *.pq; names starting with '.' or '_' are "
                    "skipped): move it out or convert it"
                )
            files.append(str(found))
        if not files:
            raise DataError(f"{source}: the folder holds no Parquet file (*.parquet, *.pq)")
        return files
    parquet = path.name.lower().endswith(PARQUET_SUFFIXES)
    if not path.exists() and (parquet or not path.suffix):
        raise DataError(f"{source}: no such file or folder")
    if not parquet:
        raise ConfigError(f"data.source: {source!r} is not Parquet; {hint}")
    return [str(path)]


def hash_fractions(chunk: Chunk, key: str | None, columns: list[str], seed: int) -> np.ndarray:
    """Each row's hash as a fraction in [0, 1): of its ``key`` value, or of its ``columns``
    (all of them, sorted by name) when there is no key. Values are hashed as Arrow writes
    them as text, so the split does not depend on which file or batch a row is in."""
    table = chunk.table
    if key is not None:
        column = _decoded(table.column(key))
        if column.null_count:
            row = chunk.start + int(np.flatnonzero(column.is_null().to_numpy(False))[0])
            raise DataError(
                f"{chunk.path}: split key column '{key}' row {row + 1} is missing; every row "
                "needs a key (data.split.key)"
            )
        text = pc.cast(column, pa.string())
    else:
        parts = [pc.cast(_decoded(table.column(c)), pa.string()) for c in sorted(columns)]
        text = pc.binary_join_element_wise(
            *parts, "\x1f", null_handling="replace", null_replacement="\x00"
        )
    salt = hashlib.sha256(f"polytask split {seed}".encode()).hexdigest()[:16]
    hashes = pd.util.hash_array(
        text.to_numpy(zero_copy_only=False), hash_key=salt, categorize=False
    )
    return (hashes >> np.uint64(11)).astype(np.float64) / float(2**53)


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def split_codes(
    chunk: Chunk, split: SplitConfig, columns: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, fractions)`` of a chunk's rows: split codes and hash fractions."""
    u = hash_fractions(chunk, split.key, columns, split.seed)
    if split.column is None:
        codes = np.full(len(u), TRAIN, dtype=np.int8)
        codes[u < split.test + split.validation] = VALIDATION
        codes[u < split.test] = TEST
        return codes, u
    raw = chunk.table.column(split.column).to_pandas()
    values = raw.astype(str).str.strip().str.lower().to_numpy()
    unknown = sorted(set(values) - set(SPLITS))
    if unknown:
        row = chunk.start + int(np.flatnonzero(values == unknown[0])[0])
        raise DataError(
            f"{chunk.path}: split column '{split.column}' row {row + 1} holds {unknown[0]!r}; "
            f"expected one of {list(SPLITS)}"
        )
    codes = np.full(len(values), TRAIN, dtype=np.int8)
    codes[values == "validation"] = VALIDATION
    codes[values == "test"] = TEST
    codes[(values == "train") & (u < split.validation)] = CARVABLE
    return codes, u


class SummaryBuilder:
    """Gathers a :class:`FeatureSummary` chunk by chunk.

    Each chunk's count, mean and squared deviations are kept by its ``position`` (row group,
    chunk) and folded in position order by :meth:`moments` (Chan et al.'s pairwise update), so
    builders of disjoint chunks of one pass (read by different processes) :meth:`combine` into
    the builder one process reading every chunk would have, bit for bit. The median sample
    and the distinct categories do not depend on the order the rows come in (ties of sample
    priority are broken by value). :meth:`merge` adds the rows of another builder as a
    whole (its moments folded on their own, then merged)."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        p = len(numeric)
        self.width = p
        self.chunks: list[tuple[tuple[int, int], np.ndarray]] = []  # position, (3, p) moments
        self.merged: list[np.ndarray] = []  # the moments of builders merged, in merge order
        self.missing = np.zeros(p, dtype=bool)
        self.samples = [np.empty(0) for _ in range(p)]  # present values, for the medians
        self.priorities = [np.empty(0) for _ in range(p)]
        self.categories: dict[str, list[pa.Array]] = {c: [] for c in categorical}

    def add(
        self,
        position: tuple[int, int],
        values: np.ndarray,
        priority: np.ndarray,
        categories: pa.Table,
    ) -> None:
        """The rows of the chunk at ``position`` (row group, chunk of the group): numeric
        ``values`` (NaN = missing), their sample ``priority`` (smallest first) and their
        categorical columns."""
        present = ~np.isnan(values)
        count = present.sum(0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = np.where(present, values, 0.0).sum(0) / np.maximum(count, 1)
            m2 = (np.where(present, values - mean, 0.0) ** 2).sum(0)
        self.chunks.append((position, np.stack([count, mean, m2])))
        self.missing |= (~present).any(0)
        for j in range(values.shape[1]):
            self._sample(j, values[present[:, j], j], priority[present[:, j]])
        for name, arrays in self.categories.items():
            arrays.append(pc.unique(_decoded(categories.column(name))))
            self._compact(name)

    def combine(self, other: SummaryBuilder) -> None:
        """Add the chunks ``other`` gathered of the same pass (other positions)."""
        if self.merged or other.merged:
            raise ValueError("combine builders before merging others into them")
        self.chunks += other.chunks
        self._include(other)

    def merge(self, other: SummaryBuilder) -> None:
        """Add the rows ``other`` gathered, as a whole: its moments, folded on their own,
        are merged after this builder's own."""
        self.merged.append(np.stack(other.moments()))
        self._include(other)

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per numeric column: count, mean and squared deviations of the present values,
        folded chunk after chunk in position order, then builder after builder merged."""
        count, mean, m2 = np.zeros(self.width), np.zeros(self.width), np.zeros(self.width)
        parts = [m for _, m in sorted(self.chunks, key=lambda c: c[0])] + self.merged
        for part in parts:
            count, mean, m2 = _chan(count, mean, m2, part[0], part[1], part[2])
        return count, mean, m2

    def _include(self, other: SummaryBuilder) -> None:
        self.missing |= other.missing
        for j, (values, priority) in enumerate(zip(other.samples, other.priorities, strict=True)):
            self._sample(j, values, priority)
        for name, arrays in other.categories.items():
            self.categories[name] += arrays
            self._compact(name)

    def _compact(self, name: str) -> None:
        arrays = self.categories[name]
        if len(arrays) > 64:  # keep the distinct values only
            self.categories[name] = [pc.unique(pa.concat_arrays(arrays))]

    def _sample(self, j: int, values: np.ndarray, priority: np.ndarray) -> None:
        """Keep the present values of column ``j`` with the smallest priorities; of values of
        equal priority cut by the sample's size, the smallest (so the sample does not depend
        on the order the values come in)."""
        sample = np.concatenate([self.samples[j], values])
        keys = np.concatenate([self.priorities[j], priority])
        if len(keys) > MEDIAN_SAMPLE_ROWS:
            keep = np.argpartition(keys, MEDIAN_SAMPLE_ROWS - 1)[:MEDIAN_SAMPLE_ROWS]
            edge = keys[keep[-1]]  # the largest priority kept
            if np.count_nonzero(keys == edge) > np.count_nonzero(keys[keep] == edge):
                tied = np.flatnonzero(keys == edge)
                below = np.flatnonzero(keys < edge)
                tied = tied[np.argsort(sample[tied], kind="stable")]
                keep = np.concatenate([below, tied[: MEDIAN_SAMPLE_ROWS - len(below)]])
            sample, keys = sample[keep], keys[keep]
        self.samples[j], self.priorities[j] = sample, keys

    def summary(self, schema: pa.Schema, dtypes: Mapping[str, str]) -> FeatureSummary:
        """The summary, with each categorical column's distinct values as pandas gives them
        (sorted where Arrow sorts their type)."""
        categories = {}
        for name, arrays in self.categories.items():
            kind = schema.field(name).type
            kind = kind.value_type if pa.types.is_dictionary(kind) else kind
            values = pc.unique(pa.concat_arrays(arrays)) if arrays else pa.array([], kind)
            with contextlib.suppress(pa.ArrowNotImplementedError):  # else: first seen first
                values = values.take(pc.array_sort_indices(values))
            found = values.to_pandas()
            categories[name] = found.astype(dtypes[name]) if name in dtypes else found
        count, mean, m2 = self.moments()
        return FeatureSummary(count, mean, m2, self.missing, self.samples, categories)


def _chan(
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    other_count: np.ndarray,
    other_mean: np.ndarray,
    other_m2: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise update: the count, mean and squared deviations of two parts."""
    total = count + other_count
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        delta = other_mean - mean
        share = np.where(total > 0, other_count / np.maximum(total, 1), 0.0)
        mean = mean + delta * share
        m2 = m2 + other_m2 + delta**2 * count * share
    return total, mean, m2


class Processes(Protocol):
    """The processes that read a streamed table together (``torchrun``; ``polytask.distributed``'s
    :class:`~polytask.distributed.World` is one): this one is ``rank`` of ``size``, and
    ``gather`` gives every process the value each one passed, in rank order (a collective)."""

    @property
    def rank(self) -> int: ...

    @property
    def size(self) -> int: ...

    def gather(self, value: Any) -> list[Any]: ...


class Part(Protocol):
    """What one process's share of a pass gathered: ``error`` is the first error it met and
    its row group's number (the share was read no further), or None."""

    error: tuple[int, PolytaskError] | None


P = TypeVar("P", bound=Part)


def shared_pass(
    read: Callable[[list[int]], P], rows: list[int], processes: Processes | None
) -> list[P]:
    """The parts of a pass over row groups, one per process in rank order, on every process.
    Each process reads (``read``, row group numbers ascending) only its share of the groups,
    dealt by their ``rows`` (:func:`deal_row_groups`: a group without rows is read by none),
    and the parts are gathered by one collective; one process reads every share itself, with
    none. Errors are agreed on before anything else: every process raises that of the
    earliest row group, the one a single process reading the groups in file order meets."""
    if processes is None or processes.size <= 1:
        parts = [read(deal_row_groups(rows, 1)[0])]
    else:
        parts = processes.gather(read(deal_row_groups(rows, processes.size)[processes.rank]))
    errors = [part.error for part in parts if part.error is not None]
    if errors:
        raise min(errors, key=lambda error: error[0])[1]
    return parts


@dataclass
class FirstPass:
    """What the first pass gathered from the row groups it read. Per row group (by number):
    each chunk's split codes and label columns, chunks in file order; the integer columns
    with a missing value (``null_integers``); a :class:`SummaryBuilder` of the rows of each
    split code (``TRAIN``, ``CARVABLE``); and the first error met, with its row group's
    number (the pass read no further)."""

    codes: dict[int, list[np.ndarray]]
    labels: dict[int, list[pa.Table]]
    null_integers: set[str]
    summaries: dict[int, SummaryBuilder]
    error: tuple[int, PolytaskError] | None = None

    def combine(self, other: FirstPass) -> None:
        """Add what ``other`` gathered from other row groups; of the two errors, keep the
        one of the earlier row group (the one a single pass over every group meets)."""
        self.codes.update(other.codes)
        self.labels.update(other.labels)
        self.null_integers |= other.null_integers
        for code, summary in self.summaries.items():
            summary.combine(other.summaries[code])
        if other.error is not None and (self.error is None or other.error[0] < self.error[0]):
            self.error = other.error

    def group_codes(self, groups: int) -> list[list[np.ndarray]]:
        """Each of the ``groups`` row groups' chunk codes (none for a group not read)."""
        return [self.codes.get(number, []) for number in range(groups)]

    def label_tables(self) -> list[pa.Table]:
        """The label columns of every chunk read, in file order."""
        return [table for number in sorted(self.labels) for table in self.labels[number]]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (gathered from other processes) with the label tables as one Arrow IPC
        stream: a chunk's table may be a slice of its row group's buffers, which pickle would
        copy whole for every chunk."""
        state = dict(self.__dict__)
        tables = [table for found in self.labels.values() for table in found]
        layout = [
            (number, [len(t.to_batches()) for t in found]) for number, found in self.labels.items()
        ]
        sink = pa.BufferOutputStream()
        if tables:
            with pa.ipc.new_stream(sink, tables[0].schema) as writer:
                for table in tables:
                    for batch in table.to_batches():
                        writer.write_batch(batch)
        state["labels"] = (layout, tables[0].schema if tables else None, sink.getvalue())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        layout, schema, stream = state["labels"]
        batches = iter(pa.ipc.open_stream(stream)) if schema is not None else iter(())
        labels = {
            number: [
                pa.Table.from_batches([next(batches) for _ in range(n)], schema) for n in counts
            ]
            for number, counts in layout
        }
        self.__dict__.update({**state, "labels": labels})


def first_pass(
    stream: ParquetStream,
    split: SplitConfig,
    encoder: FeaturePreprocessor,
    labels: list[str],
    integers: set[str],
    groups: list[int] | None = None,
) -> FirstPass:
    """Read the row ``groups`` (every one, in file order, by default) once: each row's split
    code (:func:`split_codes`), its ``labels`` columns, which of the ``integers`` columns
    hold a missing value, and the summary of the encoder's features over the training rows
    (and the rows a split column may carve). A :class:`~polytask.errors.PolytaskError` (a
    bad value, key or split name; an unreadable group) ends the pass and is kept in it, so
    that processes reading parts of a table agree on it first (:func:`shared_pass`)."""
    numeric, categorical = list(encoder.numeric), list(encoder.categorical)
    found = FirstPass(
        {}, {}, set(), {code: SummaryBuilder(numeric, categorical) for code in (TRAIN, CARVABLE)}
    )
    for number in groups if groups is not None else range(len(stream.groups)):
        codes, tables = found.codes.setdefault(number, []), found.labels.setdefault(number, [])
        try:
            for _, chunk in stream.chunks(stream.columns, [number]):
                position = (number, len(codes))
                split_code, fractions = split_codes(chunk, split, stream.columns)
                codes.append(split_code)
                found.null_integers |= {c for c in integers if chunk.table.column(c).null_count}
                tables.append(chunk.table.select(labels))
                values = encoder.numeric_values(chunk.frame(numeric, {}), chunk.path)
                for code, summary in found.summaries.items():
                    rows = split_code == code
                    if rows.any():
                        kept = chunk.table.select(categorical).filter(pa.array(rows))
                        summary.add(position, values[rows], fractions[rows], kept)
        except PolytaskError as exc:
            found.error = (number, exc)
            break
    release_memory()
    return found


def read_first_pass(
    stream: ParquetStream,
    split: SplitConfig,
    encoder: FeaturePreprocessor,
    labels: list[str],
    integers: set[str],
    processes: Processes | None = None,
) -> FirstPass:
    """The :func:`first_pass` over every row group, raising its error. Over several
    ``processes``, each reads only its share of the row groups (:func:`first_pass_shares`)
    and the parts are gathered and combined in rank order on every process
    (:func:`shared_pass`): every process ends with the same pass, equal to that of one
    process (moments folded chunk by chunk in file order), or raises the same error, that of
    the earliest row group."""

    def read(groups: list[int]) -> FirstPass:
        return first_pass(stream, split, encoder, labels, integers, groups)

    found, *others = shared_pass(read, stream.sizes, processes)
    for part in others:
        found.combine(part)
    return found


def first_pass_shares(stream: ParquetStream, size: int) -> list[list[int]]:
    """The row groups each of ``size`` processes reads in the first pass: dealt by their rows
    (:func:`deal_row_groups`; a group without rows is read by none)."""
    return deal_row_groups(stream.sizes, size)


@dataclass
class StreamedTable:
    """A Parquet table split and summarised by one pass; its training rows are streamed.

    ``codes``: the split code of every row, per row group; ``columns``: the feature columns;
    ``transform``: a frame of them and a source name for messages → model inputs;
    ``targets`` and ``masks``: every row's encoded labels per task, in file order (encoded
    once: a few bytes per row and task); ``train_counts``: labelled training rows per task."""

    stream: ParquetStream
    columns: list[str]
    dtypes: dict[str, str]
    codes: list[np.ndarray]
    transform: Callable[[pd.DataFrame, str], Any]
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]
    train_counts: dict[str, int]
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER

    def __post_init__(self) -> None:
        sizes = [len(c) for c in self.codes]
        self._first_rows = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    @property
    def train_rows(self) -> int:
        return int(sum((c == TRAIN).sum() for c in self.codes))

    def group_train_rows(self) -> list[int]:
        """The training rows of each row group."""
        return [int((c == TRAIN).sum()) for c in self.codes]

    def batches(self, batch_size: int, rank: int = 0, size: int = 1) -> StreamingBatches:
        """Shuffled training batches of ``batch_size`` rows; of process ``rank`` of ``size``
        under ``torchrun``: its shard's part of each global batch of at most ``batch_size``
        rows (:class:`StreamingBatches`)."""
        return StreamingBatches(self, batch_size, rank, size)

    def held_out_rows(self) -> list[int]:
        """The validation and test rows of each row group."""
        return [int(np.isin(c, HELD_OUT).sum()) for c in self.codes]

    def encoded_inputs(
        self, codes: tuple[int, ...], order: list[int] | None = None
    ) -> Iterator[tuple[int, int, Tensor, Any]]:
        """``(row group, code, rows, inputs)``: the rows of the splits ``codes`` (their
        numbers in the table) and their model inputs, encoded chunk by chunk (row groups in
        ``order``; a chunk's rows of each code in turn)."""
        for number, chunk in self.stream.chunks(self.columns, order):
            offset = chunk.start - self.stream.starts[number]
            found = self.codes[number][offset : offset + len(chunk.table)]
            for code in codes:
                rows = np.flatnonzero(found == code)
                if rows.size == 0:
                    continue
                part = Chunk(chunk.path, chunk.start, chunk.table.take(pa.array(rows)))
                frame = part.frame(self.columns, self.dtypes)
                frame.index = pd.Index(chunk.start + rows)
                inputs = self.transform(frame, f"{chunk.path} ({SPLITS[code]} rows)")
                index = torch.from_numpy(self._first_rows[number] + offset + rows)
                yield number, code, index, inputs
            release_memory()

    def encoded(
        self, codes: tuple[int, ...], order: list[int] | None = None
    ) -> Iterator[tuple[int, MultiTaskData]]:
        """``(code, rows)``: the rows of the splits ``codes``, encoded chunk by chunk (row
        groups in ``order``), with their targets and masks."""
        for _, code, index, inputs in self.encoded_inputs(codes, order):
            yield code, self.labelled(inputs, index)

    def labelled(self, inputs: Any, index: Tensor) -> MultiTaskData:
        """The rows ``index`` (numbers in the table) of model ``inputs``, with their targets
        and masks."""
        return MultiTaskData(
            inputs,
            {name: t[index] for name, t in self.targets.items()},
            {name: m[index] for name, m in self.masks.items()},
        )


@dataclass
class SecondPass:
    """What the second pass encoded of the row groups it read, per split code (``VALIDATION``,
    ``TEST``): each chunk's row group and rows of the code, in file order, and the model
    inputs of those rows, chunks concatenated (NumPy arrays by input name: they travel
    between processes compactly); and the first error met, with its row group's number (the
    pass read no further). Targets and masks are not read: every process holds them."""

    chunks: dict[int, list[tuple[int, int]]]
    inputs: dict[int, dict[str, np.ndarray]]
    error: tuple[int, PolytaskError] | None = None


def second_pass(table: StreamedTable, groups: list[int]) -> SecondPass:
    """Encode the validation and test rows of the row ``groups`` (ascending). A
    :class:`~polytask.errors.PolytaskError` (a value too large to standardise; an unreadable
    group) ends the pass and is kept in it (:func:`shared_pass`)."""
    found = SecondPass({code: [] for code in HELD_OUT}, {})
    pieces: dict[int, list[Mapping[str, Tensor]]] = {code: [] for code in HELD_OUT}
    for number in groups:
        try:
            for _, code, rows, inputs in table.encoded_inputs(HELD_OUT, [number]):
                found.chunks[code].append((number, len(rows)))
                pieces[code].append(inputs)
        except PolytaskError as exc:
            found.error = (number, exc)
            break
    for code, parts in pieces.items():
        if parts:
            found.inputs[code] = {
                name: np.concatenate([part[name].numpy() for part in parts]) for name in parts[0]
            }
    return found


def read_second_pass(
    table: StreamedTable, processes: Processes | None = None
) -> dict[int, MultiTaskData]:
    """The validation and test rows (by split code) of ``table``, encoded by a
    :func:`second_pass` over the row groups that hold them, in file order, raising its
    error. Over several ``processes``, each encodes only its share of those groups
    (:func:`second_pass_shares`); the parts are gathered and put back in file order on
    every process (:func:`shared_pass`): every process ends with the rows of one process,
    bit for bit, or raises the same error, that of the earliest row group. Each split needs
    a row (:func:`~polytask.data.prepare.prepare_data` checks it first)."""
    parts = shared_pass(lambda groups: second_pass(table, groups), table.held_out_rows(), processes)
    every = np.concatenate(table.codes) if table.codes else np.empty(0, np.int8)
    found = {}
    for code in HELD_OUT:
        pieces = []  # (row group, part, first row in the part's inputs, rows)
        for p, part in enumerate(parts):
            start = 0
            for number, rows in part.chunks[code]:
                pieces.append((number, p, start, rows))
                start += rows
        pieces.sort(key=lambda piece: piece[0])  # stable: a group's chunks stay in order
        index = torch.from_numpy(np.flatnonzero(every == code))
        encoded = sum(rows for *_, rows in pieces)
        if encoded != len(index):
            raise DataError(
                f"{table.stream.source}: {len(index)} {SPLITS[code]} rows in the first pass, "
                f"{encoded} in the second; the table changed while it was read"
            )
        if not pieces:
            raise ValueError(f"no {SPLITS[code]} row to encode (checked before the pass)")
        inputs = {
            name: torch.from_numpy(
                np.concatenate([parts[p].inputs[code][name][s : s + n] for _, p, s, n in pieces])
            )
            for name in parts[pieces[0][1]].inputs[code]
        }
        found[code] = table.labelled(inputs, index)
    return found


def second_pass_shares(table: StreamedTable, size: int) -> list[list[int]]:
    """The row groups each of ``size`` processes reads in the second pass: dealt by their
    validation and test rows (:func:`deal_row_groups`; a group without one is read by none)."""
    return deal_row_groups(table.held_out_rows(), size)


def release_memory() -> None:
    """Hand the memory Arrow's allocator keeps for reuse back to the system: a streamed
    table's batches come and go, and the cached pages would count as the process's own."""
    pa.default_memory_pool().release_unused()


class StreamingBatches:
    """The training rows of a :class:`StreamedTable`: every row once per epoch, row groups in a
    seeded order, rows mixed by a :class:`ShuffleBuffer`. ``peak`` is the most rows the
    buffer held in the last epoch.

    Process ``rank`` of ``size`` (``torchrun``) reads only its own row groups
    (:func:`deal_row_groups`) and yields its rows of each global batch (``Batch.sharded``), in
    the sizes :func:`step_rows` plans: every process takes the same number of steps, every
    training row is read by one process once per epoch. Each process's buffer holds up to
    ``shuffle_buffer`` rows and draws from its own seeded generator."""

    def __init__(self, table: StreamedTable, batch_size: int, rank: int = 0, size: int = 1) -> None:
        self.table = table
        self.batch_size = batch_size
        self.rank, self.size = rank, size
        self.peak = 0
        counts = table.group_train_rows()
        self.groups = deal_row_groups(counts, size)
        self.rows = step_rows([sum(counts[g] for g in mine) for mine in self.groups], batch_size)
        empty = np.argwhere(self.rows < 1)
        if empty.size:
            r, step = (int(v) for v in empty[0])
            raise RunError(
                f"{table.stream.source}: streamed over {size} processes, process {r} reads "
                f"{len(self.groups[r])} of the {sum(c > 0 for c in counts)} row groups that "
                f"hold training rows ({int(self.rows[r].sum())} rows), too few for a row in "
                f"each of the {self.rows.shape[1]} steps of an epoch (step {step + 1} would "
                "have none): write the Parquet files with smaller row groups (pyarrow "
                "row_group_size), or use fewer processes or a larger training.batch_size"
            )

    def steps_per_epoch(self) -> int:
        return int(self.rows.shape[1])

    def epoch(self, seed: int, epoch: int) -> Iterator[Batch]:
        generator = rank_generator(seed, epoch, self.rank)
        mine = self.groups[self.rank]
        order = [mine[i] for i in torch.randperm(len(mine), generator=generator).tolist()]
        sizes = self.rows[self.rank].tolist()
        buffer = ShuffleBuffer(self.table.shuffle_buffer, max(sizes), generator)

        def shuffled() -> Iterator[Batch]:
            for _, rows in self.table.encoded((TRAIN,), order):
                yield from buffer.push(rows)
                self.peak = max(self.peak, buffer.peak)
            yield from buffer.drain()

        yield from rebatch(shuffled(), sizes, self.size > 1, self.table.stream.source)

    def describe(self) -> str:
        source = self.table.stream.source
        buffer = f"shuffle buffer {self.table.shuffle_buffer:,} rows"
        if self.size == 1:
            return (
                f"1 epoch = {self.steps_per_epoch()} steps of {self.batch_size} rows (all "
                f"training rows once, streamed from {source}; {buffer})"
            )
        return (
            f"1 epoch = {self.steps_per_epoch()} steps of at most {self.batch_size} rows (all "
            f"training rows once, streamed from {source}); each of the {self.size} processes "
            f"reads its own row groups (process {self.rank}: {len(self.groups[self.rank])} "
            f"groups, {int(self.rows[self.rank].sum())} training rows; {buffer} each)"
        )


def rank_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator of process ``rank`` for ``(seed, epoch)``: :func:`epoch_generator` for
    rank 0 (one process), a seed of its own for every other rank."""
    if rank == 0:
        return epoch_generator(seed, epoch)
    digest = hashlib.sha256(f"polytask shard {seed} {epoch} {rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def deal_row_groups(rows: list[int], size: int) -> list[list[int]]:
    """The row groups (numbers, ascending) each of ``size`` processes reads, given each
    group's training ``rows``: disjoint, covering every group with a training row (a group
    without one is read by none), and balanced: the largest group first, each to the process
    with the fewest rows so far (ties: the lower rank), so that two processes' rows differ by
    at most one group's. Deterministic: every process deals the same."""
    loads = [(0, rank) for rank in range(size)]
    dealt: list[list[int]] = [[] for _ in range(size)]
    for group in sorted((g for g, n in enumerate(rows) if n > 0), key=lambda g: (-rows[g], g)):
        load, rank = heapq.heappop(loads)
        dealt[rank].append(group)
        heapq.heappush(loads, (load + rows[group], rank))
    return [sorted(groups) for groups in dealt]


def step_rows(counts: list[int], batch_size: int) -> np.ndarray:
    """The rows each process contributes to each step of an epoch: an integer array
    (processes × steps) whose row ``r`` sums to ``counts[r]`` (process ``r``'s training rows)
    and whose columns sum to the global batches' sizes.

    An epoch has ``ceil(sum(counts) / batch_size)`` steps, the same on every process. One
    process: batches of ``batch_size`` rows, the last one the remainder. Several: the global
    batches are evened out (no step left with a few rows), and each process's share of the
    first ``s`` steps is its share of the table, rounded: ``round(counts[r] × rows of the first
    s steps / total)`` for every process but rank 0, which takes the rest (so the columns add
    up exactly). A process with a larger shard thus gives more rows to every step, within a
    row of its proportion. An entry below 1 marks a step in which a process would have no row
    (the caller refuses it)."""
    total = sum(counts)
    steps = max(math.ceil(total / batch_size), 1)
    if len(counts) == 1:
        return np.array([[batch_size] * (steps - 1) + [total - batch_size * (steps - 1)]])
    sizes = np.full(steps, total // steps, dtype=np.int64) + (np.arange(steps) < total % steps)
    done = np.cumsum(sizes)  # global rows after each step (exact integers: no float rounding)
    shares = np.asarray(counts[1:], dtype=np.int64)[:, None]
    others = (2 * shares * done[None, :] + total) // (2 * total)
    cumulative = np.vstack([done - others.sum(axis=0), others])
    return np.diff(cumulative, axis=1, prepend=0)


def rebatch(
    batches: Iterator[Batch], sizes: list[int], sharded: bool, source: str
) -> Iterator[Batch]:
    """The rows of ``batches``, in order, as batches of ``sizes`` rows (``Batch.sharded`` set
    to ``sharded``); a DataError when they hold more or fewer rows than ``sizes`` sum to (the
    table changed while training)."""
    held: list[MultiTaskData] = []
    count = 0
    for size in sizes:
        while count < size:
            batch = next(batches, None)
            if batch is None:
                raise DataError(f"{source}: fewer training rows than the first pass read; the "
                                "table changed while training")  # fmt: skip
            held.append(MultiTaskData(batch.inputs, batch.targets, batch.masks))
            count += len(held[-1])
        rows = held[0] if len(held) == 1 else MultiTaskData.concat(held)
        out = rows.batch(slice(0, size))
        yield Batch(out.inputs, out.targets, out.masks, sharded)
        rest = rows.batch(slice(size, None))
        count -= size
        held = [MultiTaskData(rest.inputs, rest.targets, rest.masks)] if count else []
    if count or next(batches, None) is not None:
        raise DataError(
            f"{source}: more training rows than the first pass read; the table changed while "
            "training"
        )


def check_streamable(config: Config) -> None:
    """Raise a ConfigError for what streaming does not read."""
    data = config.data
    if data.source is None:
        raise ConfigError("data.streaming: streams data.source, but none is set")
    for i, spec in enumerate(config.tasks):
        if spec.data is not None:
            raise ConfigError(
                f"tasks[{i}] ({spec.name}).data: streaming reads data.source only; put every "
                "task's labels in that table or set data.streaming: false"
            )
    if config.features.text:
        raise ConfigError("features.text: text columns are not streamed; set data.streaming: false")
    from polytask.data.builtin import BUILTIN_DATASETS

    if data.source in BUILTIN_DATASETS and not os.path.exists(data.source):
        raise ConfigError(
            f"data.source: {data.source!r} is a built-in dataset, not Parquet; data.streaming: "
            "true reads a Parquet file (.parquet/.pq) or a folder of them"
        )
