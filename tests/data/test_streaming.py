"""``data.streaming``: Parquet read in record batches gives the statistics of the in-memory
path, splits that depend on row keys only, a bounded shuffle buffer that lets every training
row out once per epoch, a run that trains end to end, and clear errors for bad input."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from polytask import experiment
from polytask.config import parse_config
from polytask.data import MultiTaskData, prepare_data, streaming
from polytask.data.dataset import Batch
from polytask.data.sampling import ShuffleBuffer
from polytask.data.streaming import (
    ParquetStream,
    StreamingBatches,
    deal_row_groups,
    hash_fractions,
    step_rows,
)
from polytask.distributed import agreed, shutdown, world
from polytask.errors import ConfigError, DataError, RunError
from polytask.models import HardSharing
from polytask.tasks import BinaryTask, RegressionTask
from polytask.training import Trainer

from ..conftest import config_dict, synthetic_frame
from ..test_cli import assert_clean_error, run_cli


def _frame(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """The synthetic table with a unique row id, an integer feature with missing values, a
    split column and missing numeric values (imputed)."""
    frame = synthetic_frame(n, seed)
    rng = np.random.default_rng(seed + 1)
    frame.insert(0, "id", np.arange(n) * 7 + 3)
    frame["count"] = pd.array(rng.integers(0, 5, size=n), dtype="Int64")
    frame.loc[rng.choice(n, n // 9, replace=False), "count"] = pd.NA
    frame.loc[rng.choice(n, n // 11, replace=False), "x2"] = np.nan
    frame["split"] = rng.choice(["train", "validation", "test"], size=n, p=[0.6, 0.2, 0.2])
    return frame


def _write(frame: pd.DataFrame, folder: Path, parts: int = 1, row_group: int = 128) -> Path:
    """``frame`` as one Parquet file, or shuffled and cut into ``parts`` files in a folder."""
    folder.mkdir(exist_ok=True)
    if parts == 1:
        path = folder / "table.parquet"
        frame.to_parquet(path, row_group_size=row_group, index=False)
        return path
    shuffled = frame.sample(frac=1.0, random_state=5)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        shuffled.iloc[part].to_parquet(folder / f"part{i}.parquet", row_group_size=97, index=False)
    return folder


def _config(source: Path, **data) -> dict:
    raw = config_dict(str(source))
    raw["data"] = {"source": str(source), "streaming": True, **data}
    raw["features"] = {"drop": ["id"]}
    return raw


def test_streamed_statistics_equal_those_in_memory(tmp_path):
    path = _write(_frame(), tmp_path)
    split = {"column": "split"}  # the same training rows in both paths
    streamed = prepare_data(parse_config(_config(path, split=split)))
    raw = _config(path, split=split)
    del raw["data"]["streaming"]
    memory = prepare_data(parse_config(raw))
    ours, theirs = streamed.preprocessor, memory.preprocessor
    assert ours.numeric == theirs.numeric and "missing:x2" in ours.numeric
    assert ours.indicators == theirs.indicators == ["x2", "count"]
    np.testing.assert_allclose(ours.mean, theirs.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.std, theirs.std, rtol=1e-12)
    assert ours.median == theirs.median  # fewer training rows than the median sample: exact
    assert ours.vocabularies == theirs.vocabularies
    assert [t.to_dict() for t in streamed.tasks] == [t.to_dict() for t in memory.tasks]
    assert streamed.label_counts() == memory.label_counts()
    for ours_split, theirs_split in (
        (streamed.test, memory.test),
        (streamed.validation, memory.validation),
    ):
        assert ours_split is not None and theirs_split is not None
        for key in ("numeric", "categorical"):
            a, b = ours_split.inputs[key], theirs_split.inputs[key]
            assert torch.allclose(a.double(), b.double(), atol=1e-5)  # both in file order


def test_medians_come_from_a_bounded_sample_of_each_columns_values(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "MEDIAN_SAMPLE_ROWS", 40)
    frame = _frame()
    frame.loc[frame.index[12:], "x2"] = np.nan  # 12 values: fewer than the sample holds
    path = _write(frame, tmp_path)
    data = prepare_data(parse_config(_config(path, split={"column": "split"})))
    train = frame[frame["split"] == "train"]
    numeric = data.preprocessor.numeric
    median = dict(zip(numeric, data.preprocessor.median, strict=True))
    assert median["x2"] == np.median(train["x2"].dropna())  # exact: every value sampled
    spread = np.quantile(train["x1"], [0.25, 0.75])  # 40 of 540 values: near the median
    assert spread[0] < median["x1"] < spread[1] and median["x1"] != np.median(train["x1"])


@pytest.mark.parametrize("pandas_metadata", [True, False])
def test_integer_categories_with_missing_values_read_as_in_memory(tmp_path, pandas_metadata):
    """pandas reads an integer column with missing values as floats ('1.0') unless it wrote
    it with a nullable dtype ('1'); each streamed batch must read it as the whole table."""
    frame = _frame(400, seed=6)
    frame.index = pd.Index(np.arange(400) + 10, name="rowid")  # an index: not a column
    counts = pd.array(np.arange(400) % 5, dtype="Int64")
    counts[[300, 333]] = pd.NA  # only in the last row groups
    frame["count"] = counts
    table = pa.Table.from_pandas(frame)
    if not pandas_metadata:
        table = table.drop_columns(["rowid"]).replace_schema_metadata(None)
    path = tmp_path / "ints.parquet"
    pq.write_table(table, path, row_group_size=64)
    raw = _config(path, split={"column": "split"})
    raw["features"] = {"numeric": ["x1"], "categorical": ["colour", "count"]}
    streamed = prepare_data(parse_config(raw))
    del raw["data"]["streaming"]
    memory = prepare_data(parse_config(raw))
    expected = ["", "0", "1"] if pandas_metadata else ["", "0.0", "1.0"]
    assert memory.preprocessor.vocabularies["count"][:3] == expected
    assert streamed.preprocessor.vocabularies == memory.preprocessor.vocabularies
    assert streamed.test is not None and memory.test is not None
    assert streamed.test.inputs["categorical"].equal(memory.test.inputs["categorical"])
    codes = torch.cat(
        [b.inputs["categorical"] for b in streamed.train_source(50, "", 1).epoch(0, 0)]
    )
    assert (codes[:, 1] > 0).all()  # every training value is in the vocabulary


def test_files_of_a_folder_need_the_same_columns(tmp_path):
    folder = _write(_frame(), tmp_path / "parts", parts=2)
    _frame().drop(columns=["x2"]).to_parquet(folder / "part9.parquet")
    with pytest.raises(DataError, match="part9.parquet: lacks column 'x2'.*the same columns"):
        prepare_data(parse_config(_config(folder)))


def test_split_depends_on_the_key_not_on_row_order_or_files(tmp_path):
    frame = _frame(seed=2)
    one = _write(frame, tmp_path)
    three = _write(frame, tmp_path / "parts", parts=3)

    def assignment(source: Path, key: str | None) -> dict[int, int]:
        stream = ParquetStream(str(source))
        found = {}
        for _, chunk in stream.chunks(stream.columns):
            u = hash_fractions(chunk, key, stream.columns, seed=4)
            ids = chunk.table.column("id").to_numpy()
            found.update(zip(ids.tolist(), np.digitize(u, [0.2, 0.4]).tolist(), strict=True))
        return found

    for key in ("id", None):  # a key column, or each row's whole content
        first, second = assignment(one, key), assignment(three, key)
        assert len(first) == len(frame) and first == second
    shares = np.bincount(list(assignment(one, "id").values()), minlength=3) / len(frame)
    assert np.allclose(shares, [0.2, 0.2, 0.6], atol=0.06)  # 900 rows: 4 standard deviations

    streamed = prepare_data(parse_config(_config(three, split={"key": "id", "seed": 4})))
    again = prepare_data(parse_config(_config(one, split={"key": "id", "seed": 4})))
    assert streamed.label_counts() == again.label_counts()
    other_seed = prepare_data(parse_config(_config(one, split={"key": "id", "seed": 5})))
    assert other_seed.label_counts() != again.label_counts()
    raw = _config(one, split={"key": "id"})
    del raw["features"]
    inferred = prepare_data(parse_config(raw)).preprocessor
    assert "id" not in inferred.numeric and "x1" in inferred.numeric  # the key is no feature


def test_shuffle_buffer_is_bounded_and_lets_every_row_out_once():
    rows = MultiTaskData(
        torch.arange(1000.0)[:, None],
        {"t": torch.arange(1000)},
        {"t": torch.ones(1000, dtype=torch.bool)},
    )
    buffer = ShuffleBuffer(100, 16, torch.Generator().manual_seed(0))
    seen, sizes = [], []
    for start in range(0, 1000, 70):  # chunks that do not align with the buffer or batches
        for batch in buffer.push(rows.subset(torch.arange(start, min(start + 70, 1000)))):
            sizes.append(buffer.size)
            seen.append(batch.inputs[:, 0].long())
            assert batch.targets["t"].equal(batch.inputs[:, 0].long())  # rows stay whole
    seen += [b.inputs[:, 0].long() for b in buffer.drain()]
    order = torch.cat(seen)
    assert buffer.peak == 100 and max(sizes) <= 100
    assert sorted(order.tolist()) == list(range(1000))
    assert not order.equal(torch.arange(1000))
    assert [len(s) for s in seen[:-1]] == [16] * (len(seen) - 1)


def test_training_stream_yields_every_training_row_once_per_epoch(tmp_path):
    frame = _frame(seed=3)
    path = _write(frame, tmp_path, row_group=50)
    raw = _config(path, split={"key": "id"}, shuffle_buffer=64)
    raw["features"] = {"numeric": ["id", "x1"], "categorical": ["colour"]}
    data = prepare_data(parse_config(raw))
    source = data.train_source(20, "proportional", 1.0)
    mean, std = data.preprocessor.mean[0], data.preprocessor.std[0]
    train = data.label_counts()["train"]["segment"]  # every row has a segment
    assert source.steps_per_epoch() == math.ceil(train / 20)
    epochs = []
    for epoch in range(2):
        batches = list(source.epoch(seed=1, epoch=epoch))
        assert len(batches) == source.steps_per_epoch() and source.peak == 64
        ids = torch.cat([b.inputs["numeric"][:, 0] for b in batches]).double() * std + mean
        epochs.append(ids.round().long().tolist())
    held_out = torch.cat(
        [data.validation.inputs["numeric"][:, 0], data.test.inputs["numeric"][:, 0]]
    )
    held_out_ids = set((held_out.double() * std + mean).round().long().tolist())
    for ids in epochs:
        assert len(ids) == len(set(ids)) == train
        assert set(ids) | held_out_ids == set(frame["id"]) and not set(ids) & held_out_ids
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])
    repeat = [b.inputs["numeric"] for b in source.epoch(seed=1, epoch=1)]
    assert torch.cat(repeat).equal(torch.cat([b.inputs["numeric"] for b in source.epoch(1, 1)]))


def test_row_groups_are_dealt_disjointly_covering_and_balanced():
    rows = [50, 50, 50, 50, 50, 50, 50, 50, 20, 50, 10, 0, 7]
    for size in (1, 2, 3, 5):
        dealt = deal_row_groups(rows, size)
        flat = sorted(g for groups in dealt for g in groups)
        assert flat == [g for g, n in enumerate(rows) if n > 0]  # disjoint, covering, no 11
        loads = [sum(rows[g] for g in groups) for groups in dealt]
        assert max(loads) - min(loads) <= max(rows)
        assert dealt == deal_row_groups(rows, size)  # every process deals the same
    assert [sum(rows[g] for g in gs) for gs in deal_row_groups(rows, 2)] == [250, 237]
    assert deal_row_groups([5, 0], 3) == [[0], [], []]


def test_every_process_takes_the_same_steps_and_its_own_rows_once():
    plan = step_rows([247, 240, 20], 32)
    steps = math.ceil(507 / 32)
    assert plan.shape == (3, steps)
    assert plan.sum(axis=1).tolist() == [247, 240, 20]  # each process: its rows, once
    assert plan.sum(axis=0).max() <= 32 and plan.sum(axis=0).min() >= 507 // steps
    assert (plan > 0).all()  # a row for every process in every step
    assert step_rows([100], 32).tolist() == [[32, 32, 32, 4]]  # one process: as before
    assert (step_rows([300, 5], 20) < 1).any()  # 5 rows cannot cover 16 steps
    assert (step_rows([5, 300], 20) < 1).any()


THREE_FILES = (("a", slice(0, 420)), ("b", slice(420, 600)), ("c", slice(600, 660)))


def _three_files(folder: Path, frame: pd.DataFrame | None = None) -> Path:
    """The rows of :func:`_frame` (or of ``frame``, as many) in three files of 420, 180 and 60
    rows, row groups of 50 (uneven shards for two processes)."""
    frame = _frame(660, seed=6) if frame is None else frame
    folder.mkdir()
    for name, part in THREE_FILES:
        frame.iloc[part].to_parquet(folder / f"{name}.parquet", row_group_size=50, index=False)
    return folder


def test_each_process_reads_its_own_row_groups_in_step(tmp_path):
    raw = _config(_three_files(tmp_path / "parts"), split={"key": "id"}, shuffle_buffer=64)
    raw["features"] = {"numeric": ["id", "x1"], "categorical": ["colour"]}
    data = prepare_data(parse_config(raw))
    assert data.streamed is not None
    mean, std = data.preprocessor.mean[0], data.preprocessor.std[0]
    read: dict[int, list[int]] = {0: [], 1: []}
    chunks = data.streamed.stream.chunks

    def recording(columns, order=None):
        for number, chunk in chunks(columns, order):
            read[rank].append(number)
            yield number, chunk

    data.streamed.stream.chunks = recording  # type: ignore[method-assign]
    ids, sizes = {}, {}
    for rank in (0, 1):
        source = data.streamed.batches(40, rank, 2)
        batches = list(source.epoch(seed=2, epoch=1))
        assert len(batches) == source.steps_per_epoch() and all(b.sharded for b in batches)
        ids[rank] = torch.cat([b.inputs["numeric"][:, 0] for b in batches]).double() * std + mean
        sizes[rank] = [len(b.targets["segment"]) for b in batches]
    train = data.label_counts()["train"]["segment"]
    assert len(sizes[0]) == len(sizes[1]) == math.ceil(train / 40)
    assert max(a + b for a, b in zip(sizes[0], sizes[1], strict=True)) <= 40
    assert not set(read[0]) & set(read[1])  # disjoint reads
    assert sorted(read[0] + read[1]) == [
        g for g, n in enumerate(source.table.group_train_rows()) if n
    ]
    first, second = (set(ids[r].round().long().tolist()) for r in (0, 1))
    assert len(first) + len(second) == train and not first & second  # every row once
    assert abs(len(first) - len(second)) <= 50  # balanced within a row group
    with pytest.raises(RunError, match="process 14 reads 1 of the 15 row groups"):
        StreamingBatches(data.streamed, 40, 0, 16)


@pytest.fixture
def small_sample(monkeypatch):
    monkeypatch.setattr(streaming, "MEDIAN_SAMPLE_ROWS", 40)


def test_a_summary_gathered_chunk_by_chunk_does_not_depend_on_the_order_chunks_come_in(
    small_sample,
):
    """Moments are folded in chunk position order; the median sample keeps the values of
    smallest priority, ties cut by the sample's size broken by value."""
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(30, 2)) * 1e3 + 7.0 for _ in range(3)]
    values[1][::4, 1] = np.nan
    priority = [np.full(30, 0.5) for _ in range(3)]  # every value tied at the sample's edge
    colours = [pa.table({"c": rng.choice(["b", "a", f"c{i}"], size=30)}) for i in range(3)]
    built = []
    for order in ([0, 1, 2], [2, 0, 1]):
        builder = streaming.SummaryBuilder(["x", "y"], ["c"])
        for i in order:
            builder.add((i, 0), values[i], priority[i], colours[i])
        built.append(builder.summary(colours[0].schema, {}))
    first, second = built
    for name in ("count", "mean", "m2", "missing"):
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes()
    every = np.concatenate(values)
    assert first.count.tolist() == [90, 90 - 8] and first.missing.tolist() == [False, True]
    np.testing.assert_allclose(first.mean, np.nanmean(every, axis=0), rtol=1e-14)
    np.testing.assert_allclose(first.m2 / first.count, np.nanvar(every, axis=0), rtol=1e-12)
    for j in range(2):  # 40 of the values, all of one priority: the smallest
        smallest = np.sort(every[~np.isnan(every[:, j]), j])[:40]
        assert np.sort(first.samples[j]).tolist() == smallest.tolist()
        assert np.sort(second.samples[j]).tolist() == smallest.tolist()
    assert first.categories["c"].tolist() == ["a", "b", "c0", "c1", "c2"]
    assert second.categories["c"].tolist() == first.categories["c"].tolist()


def test_sample_ties_at_the_edge_keep_the_smallest_values(small_sample):
    builder = streaming.SummaryBuilder(["x"], [])
    builder.add((0, 0), -np.arange(60.0)[:, None], np.full(60, 0.5), pa.table({}))
    builder.add(
        (1, 0), np.arange(60.0)[:, None], np.r_[np.zeros(10), np.full(50, 0.5)], pa.table({})
    )
    kept = sorted(builder.samples[0].tolist())
    assert kept == sorted([*range(10), *(-np.arange(30.0, 60.0))])  # priority 0, then by value


def test_a_first_pass_travels_between_processes_compactly_and_whole():
    """Pickled (as ``all_gather_object`` does), a first pass keeps every chunk's label table,
    dictionaries differing between chunks included, and sends each chunk's rows only, not
    the whole buffers its slices share."""
    colour = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0] * 1000, pa.int32()), ["a", "b"])
    other = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), ["c", "a"])
    schema = pa.schema([("y", colour.type), ("v", pa.float64())])
    whole = pa.table({"y": colour, "v": np.arange(3000.0)}, schema=schema)
    tail = pa.table({"y": other, "v": [1.5, None]}, schema=schema)
    chunks = [whole.slice(i, 300) for i in range(0, 3000, 300)]
    found = streaming.FirstPass({}, {0: chunks, 1: [], 4: [tail, tail.slice(0, 0)]}, set(), {})
    sent = pickle.dumps(found)
    assert len(sent) < 2 * whole.nbytes  # pickling each slice would copy 10 x the buffers
    back = pickle.loads(sent)
    assert list(back.labels) == [0, 1, 4] and [len(t) for t in back.labels[4]] == [2, 0]
    for ours, theirs in zip(back.label_tables(), found.label_tables(), strict=True):
        assert ours.equals(theirs) and ours.schema == theirs.schema
    assert back.labels[4][0].column("y").to_pylist() == ["a", "c"]


class _Threads:
    """``size`` processes simulated by threads of this one: :meth:`_Process.gather` passes each
    one's value through pickle, as ``torch.distributed.all_gather_object`` does."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: list[bytes] = [b""] * size
        self.barrier = threading.Barrier(size, timeout=60)  # a hang fails the test

    def run(self, config, *reads: dict) -> list:
        """:func:`prepare_data` in every simulated process: its result or its error; the row
        groups each one's passes read in ``reads[rank]`` (each of ``reads`` emptied first)."""
        results: list = [None] * self.size

        def run(rank: int) -> None:
            for found in reads:
                found[rank] = []
            try:
                results[rank] = prepare_data(config, _Process(rank, self.size, self))
            except Exception as exc:
                results[rank] = exc

        threads = [
            threading.Thread(target=run, args=(r,), name=f"rank{r}") for r in range(self.size)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


@dataclass(frozen=True)
class _Process:
    rank: int
    size: int
    threads: _Threads

    def gather(self, value):
        self.threads.values[self.rank] = pickle.dumps(value)
        self.threads.barrier.wait()
        found = [pickle.loads(v) for v in self.threads.values]
        self.threads.barrier.wait()  # every one has read them before the next gather
        return found


def _recording_reads(monkeypatch) -> tuple[dict, dict]:
    """The row groups each thread's first passes read (those read with every column) and
    those its second passes read (with the feature columns only), chunk by chunk: by rank for
    the threads of :class:`_Threads`, else under -1."""
    first: dict[int, list[int]] = {-1: []}
    second: dict[int, list[int]] = {-1: []}
    chunks = ParquetStream.chunks

    def recording(self, columns, order=None):
        for number, chunk in chunks(self, columns, order):
            name = threading.current_thread().name
            reads = first if columns == self.columns else second
            reads.setdefault(int(name[4:]) if name.startswith("rank") else -1, []).append(number)
            yield number, chunk

    monkeypatch.setattr(ParquetStream, "chunks", recording)
    return first, second


def _same_rows(ours: MultiTaskData, theirs: MultiTaskData) -> None:
    """Two datasets hold the same inputs, targets and masks, bit for bit, in the same order."""
    for mine, other in ((ours.inputs, theirs.inputs), (ours.targets, theirs.targets)):
        assert list(mine) == list(other)
        for key in mine:
            a, b = mine[key], other[key]
            assert (
                a.dtype == b.dtype
                and a.shape == b.shape
                and a.numpy().tobytes() == b.numpy().tobytes()
            )
    assert list(ours.masks) == list(theirs.masks)
    assert all(ours.masks[k].equal(theirs.masks[k]) for k in ours.masks)


def _same_data(ours, theirs) -> None:
    """Two prepared streamed tables hold the same fitted statistics, tasks, split codes,
    encoded labels and validation and test rows, bit for bit."""
    assert ours.preprocessor.to_dict() == theirs.preprocessor.to_dict()  # floats exactly
    assert [t.to_dict() for t in ours.tasks] == [t.to_dict() for t in theirs.tasks]
    a, b = ours.streamed, theirs.streamed
    assert [c.tobytes() for c in a.codes] == [c.tobytes() for c in b.codes]
    assert a.train_counts == b.train_counts and a.dtypes == b.dtypes
    for name in a.targets:
        assert a.targets[name].equal(b.targets[name]) and a.masks[name].equal(b.masks[name])
    _same_rows(ours.validation, theirs.validation)
    _same_rows(ours.test, theirs.test)


def test_processes_read_shares_of_the_first_pass_and_end_equal_to_one(
    tmp_path, monkeypatch, small_sample
):
    """Three processes (threads here; two gloo processes in the slow test below): each
    process's first pass reads only its share of the row groups, and every process ends
    with the statistics, splits and labels of one process, bit for bit (chunks of 23 rows:
    several per row group, whose moments are folded in file order; a median sample of 40)."""
    monkeypatch.setattr(streaming, "READ_ROWS", 23)
    reads, _ = _recording_reads(monkeypatch)
    frame = _frame(seed=7)
    path = _write(frame, tmp_path, row_group=100)
    config = parse_config(_config(path, split={"key": "id"}))
    one = prepare_data(config)
    groups = len(ParquetStream(str(path)).groups)
    assert reads[-1] == sorted(reads[-1]) and set(reads[-1]) == set(range(groups))
    assert len(reads[-1]) > groups  # several chunks in a row group
    found = _Threads(3).run(config, reads)
    shares = streaming.first_pass_shares(ParquetStream(str(path)), 3)
    for rank, data in enumerate(found):
        assert sorted(set(reads[rank])) == shares[rank]  # its share only, each group once
        _same_data(data, one)
    assert sorted(g for share in shares for g in share) == list(range(groups))
    assert min(len(s) for s in shares) >= 2  # (the premise: every process reads groups)

    bad = frame.copy()  # errors in a row group of process 1, then in a later one of process 0
    early = shares[1][0]
    late = next(g for g in shares[0] if g > early)
    bad.loc[early * 100 + 17, "x1"] = np.inf
    bad.loc[late * 100 + 3, "x2"] = -np.inf
    config = parse_config(_config(_write(bad, tmp_path / "bad", row_group=100)))
    with pytest.raises(DataError) as alone:
        prepare_data(config)
    assert f"numeric feature 'x1' row {early * 100 + 18} holds an infinite value" in str(
        alone.value
    )
    errors = _Threads(3).run(config, reads)
    assert [type(e) for e in errors] == [DataError] * 3
    assert [str(e) for e in errors] == [str(alone.value)] * 3  # the same line on every one
    no_labels = frame.assign(spend=np.nan)  # found after the pass: on every process alike
    config = parse_config(_config(_write(no_labels, tmp_path / "labels", row_group=100)))
    errors = _Threads(3).run(config, reads)
    assert all(isinstance(e, DataError) for e in errors) and len(set(map(str, errors))) == 1
    assert "task 'spend' has no labels at all" in str(errors[0])


def test_processes_read_shares_of_the_second_pass_and_end_equal_to_one(tmp_path, monkeypatch):
    """Three processes (threads here; two gloo processes in the slow test below): each
    process's second pass encodes only its share of the row groups that hold validation or
    test rows (a group without one is read by none), the parts travel as arrays of their
    rows, and every process ends with the validation and test rows of one process, bit for
    bit (inputs, targets, masks, row order). A value too large to standardise in a test row
    of a group of process 1 (and in a later group of process 0) gives every process the
    line one process gives."""
    monkeypatch.setattr(streaming, "READ_ROWS", 23)
    _, reads = _recording_reads(monkeypatch)
    frame = _frame(seed=8)
    frame.loc[400:499, "split"] = "train"  # row group 4: no validation or test row
    path = _write(frame, tmp_path, row_group=100)
    config = parse_config(_config(path, split={"column": "split"}))
    one = prepare_data(config)
    assert one.streamed is not None
    held_out = [g for g, n in enumerate(one.streamed.held_out_rows()) if n]
    assert held_out == [0, 1, 2, 3, 5, 6, 7, 8]
    assert reads[-1] == sorted(reads[-1]) and set(reads[-1]) == set(held_out)
    assert len(reads[-1]) == 5 * len(held_out)  # 5 chunks of at most 23 rows a group
    threads = _Threads(3)
    found = threads.run(config, reads)
    shares = streaming.second_pass_shares(one.streamed, 3)
    width = sum(t.shape[1] * t.element_size() for t in one.test.inputs.values())
    for rank, data in enumerate(found):
        assert sorted(set(reads[rank])) == shares[rank]  # its share only,
        assert len(reads[rank]) == 5 * len(shares[rank])  # each group once
        _same_data(data, one)
        rows = sum(one.streamed.held_out_rows()[g] for g in shares[rank])
        assert len(threads.values[rank]) < rows * width + 1_000  # the last gather: its rows
    dealt = [g for share in shares for g in share]
    assert sorted(dealt) == held_out and dealt != held_out  # (the premise: shares interleave)
    assert min(len(s) for s in shares) >= 2

    bad = frame.copy()  # errors in a row group of process 1, then in a later one of process 0
    early = shares[1][0]
    late = next(g for g in shares[0] if g > early)
    tests = np.flatnonzero(frame["split"] == "test")
    row = tests[tests >= early * 100][1]
    bad.loc[row, "x1"] = 1e300
    bad.loc[tests[tests >= late * 100][0], "x2"] = -1e300
    config = parse_config(
        _config(_write(bad, tmp_path / "bad", row_group=100), split={"column": "split"})
    )
    with pytest.raises(DataError) as alone:
        prepare_data(config)
    assert f"(test rows): numeric feature 'x1' row {row + 1} holds 1e+300, too large" in str(
        alone.value
    )
    errors = _Threads(3).run(config, reads)
    assert [type(e) for e in errors] == [DataError] * 3
    assert [str(e) for e in errors] == [str(alone.value)] * 3  # the same line on every one
    assert late in reads[0] and early in reads[1]  # each met its own error


def _uneven_step(rows: slice, sharded: bool) -> tuple[dict[str, float], torch.Tensor]:
    """One step of a tiny model on the ``rows`` of ten fixed rows (a process's rows of the
    global batch when ``sharded``); the losses it reports and the parameters after it. Task
    ``r`` is labelled on rows 0, 1, 2 and 8 only: 3 of them in rows 0-6, 1 in rows 7-9."""
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))
    targets = {"r": 2 * x[:, :1] - x[:, 2:], "b": (x[:, 1] > 0).float()}
    masks = {"r": torch.zeros(10, 1, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)}
    masks["r"][[0, 1, 2, 8]] = True
    masks["b"][[3, 9]] = False
    tasks = [RegressionTask(name="r", mean=(0.0,), std=(1.0,)), BinaryTask(name="b")]
    torch.manual_seed(0)
    model = HardSharing(nn.Linear(3, 4), {"r": nn.Linear(4, 1), "b": nn.Linear(4, 1)})
    trainer = Trainer(model, tasks, optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    model.train()
    batch = Batch(
        x[rows],
        {k: v[rows] for k, v in targets.items()},
        {k: v[rows] for k, v in masks.items()},
        sharded,
    )
    losses, _ = trainer.step(batch)
    return {k: float(v) for k, v in losses.items()}, torch.cat(
        [p.detach().reshape(-1) for p in model.parameters()]
    )


def _digest(data: MultiTaskData) -> str:
    """A fingerprint of every tensor of ``data``: name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for kind in (data.inputs, data.targets, data.masks):
        for name, tensor in kind.items():
            digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _streaming_worker(rank: int, size: int, folder: str) -> None:
    """One process of a streamed run under two gloo processes: records the row groups its
    first and second passes read and those it read while training, the rows of each of its
    steps, its feature statistics, validation and test rows and its result; then the errors
    two bad tables give it (one found by the first pass, one by the second)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    store = f"file://{folder}/store"
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=size)
    read: list[tuple[str, int, int]] = []
    chunks, step, prepare = ParquetStream.chunks, Trainer.step, experiment.prepare_data
    passes: list[int] = []  # the row groups the first passes read, chunk by chunk
    second: list[int] = []  # and those the second passes read
    found: dict = {"read": read, "steps": [], "sharded": set(), "preparing": False}

    def recording(self, columns, order=None):  # the first pass reads every column
        for number, chunk in chunks(self, columns, order):
            if columns == self.columns:
                passes.append(number)
            elif found["preparing"]:  # the second pass: while preparing, the features only
                second.append(number)
            else:
                read.append((Path(chunk.path).name, chunk.start, len(chunk.table)))
            yield number, chunk

    def counting(self, batch):
        found["steps"].append(len(batch.targets["segment"]))
        found["sharded"].add(batch.sharded)
        return step(self, batch)

    def preparing(config, processes):
        found["preparing"] = True
        data = prepare(config, processes)
        found["preparing"] = False
        found["first_pass"], found["second_pass"] = passes.copy(), second.copy()
        found["held_out"] = [_digest(data.validation), _digest(data.test)]
        found["features"] = json.dumps(data.preprocessor.to_dict(), sort_keys=True)
        found["group_train_rows"] = data.streamed.group_train_rows()
        found["train_counts"] = data.streamed.train_counts
        return data

    ParquetStream.chunks, Trainer.step = recording, counting  # type: ignore[method-assign]
    experiment.prepare_data = preparing  # type: ignore[assignment]
    try:
        config = parse_config(json.loads((Path(folder) / "config.json").read_text()))
        result = experiment.run_experiment(config, baselines=False)
        found["path"] = str(result.run_dir)
        found["test"] = result.multitask.test
        Trainer.step = step  # type: ignore[method-assign]
        losses, params = _uneven_step(slice(0, 7) if rank == 0 else slice(7, 10), True)
        found["uneven"] = {"losses": losses, "params": params.tolist()}
        try:
            agreed(3 + rank, "steps per epoch")
        except RunError as exc:
            found["disagreement"] = str(exc)
        bad = parse_config(json.loads((Path(folder) / "bad.json").read_text()))
        try:
            prepare(bad, world())
        except DataError as exc:
            found["error"] = str(exc)
        found["bad_pass"] = passes[len(found["first_pass"]) :]
        bad = parse_config(json.loads((Path(folder) / "bad_held_out.json").read_text()))
        found["preparing"] = True
        try:
            prepare(bad, world())
        except DataError as exc:
            found["held_out_error"] = str(exc)
        found["bad_second_pass"] = second[len(found["second_pass"]) :]
    finally:
        shutdown()
    (Path(folder) / f"rank{rank}.json").write_text(
        json.dumps({**found, "sharded": sorted(found["sharded"])})
    )


@pytest.mark.slow
def test_two_processes_stream_disjoint_shards_in_step(tmp_path):
    """``data.streaming`` under two gloo processes, three files of uneven sizes: each process's
    first and second passes read only its share of the row groups, and both end with the
    statistics, per-group training rows and validation and test rows of one process, bit for
    bit; each process reads only its own row groups while training (together every training
    row group, once per epoch), both take the same number of steps, every step's rows sum to
    at most the batch size, the run ends with finite metrics, and rank 0 alone wrote it. A
    bad value in a row group of process 1's share (and another in a later group of process
    0's) gives both the line one process gives: in the first pass, and in the second."""
    raw = _config(_three_files(tmp_path / "parts"), split={"key": "id"}, shuffle_buffer=64)
    raw["training"].update(epochs=2, batch_size=40)
    raw["output_dir"] = str(tmp_path / "runs")
    (tmp_path / "config.json").write_text(json.dumps(raw))
    stream = ParquetStream(str(tmp_path / "parts"))
    shares = streaming.first_pass_shares(stream, 2)
    early = shares[1][0]
    late = next(g for g in shares[0] if g > early)
    offsets = {f"{name}.parquet": part.start for name, part in THREE_FILES}
    bad = _frame(660, seed=6)
    for group, column in ((early, "x1"), (late, "x2")):
        row = offsets[Path(stream.groups[group].path).name] + stream.starts[group] + 7
        bad.loc[row, column] = np.inf
    bad_raw = _config(_three_files(tmp_path / "bad", bad), split={"key": "id"})
    (tmp_path / "bad.json").write_text(json.dumps(bad_raw))
    where = f"{Path(stream.groups[early].path).name}: numeric feature 'x1' row"
    with pytest.raises(DataError, match=f"{where} {stream.starts[early] + 8} holds an") as alone:
        prepare_data(parse_config(bad_raw))
    data = prepare_data(parse_config(raw))
    assert data.streamed is not None
    held = streaming.second_pass_shares(data.streamed, 2)
    assert held[0][-1] > held[1][0]  # an error in a group of process 1, a later one of 0's
    bad = _frame(660, seed=6)  # too large to standardise, in test rows: the second pass's
    for group, column in ((held[1][0], "x1"), (held[0][-1], "x2")):
        row = offsets[Path(stream.groups[group].path).name] + stream.starts[group]
        row += int(np.flatnonzero(data.streamed.codes[group] == streaming.TEST)[0])
        bad.loc[row, column] = 1e300
    bad_raw = _config(_three_files(tmp_path / "bad_held_out", bad), split={"key": "id"})
    (tmp_path / "bad_held_out.json").write_text(json.dumps(bad_raw))
    with pytest.raises(DataError, match="numeric feature 'x1' row .* too large") as held_alone:
        prepare_data(parse_config(bad_raw))
    # forked: the processes start with what this one imported (spawning re-imports it all)
    mp.start_processes(
        _streaming_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    train = data.streamed.train_rows
    steps = 2 * math.ceil(train / 40)
    assert len(first["steps"]) == len(second["steps"]) == steps
    assert first["sharded"] == second["sharded"] == [True]
    together = [a + b for a, b in zip(first["steps"], second["steps"], strict=True)]
    assert max(together) <= 40 and sum(together) == 2 * train
    mine, theirs = (set(map(tuple, r["read"])) for r in (first, second))
    assert not mine & theirs  # disjoint reads
    assert len(first["read"]) == 2 * len(mine)  # each epoch reads the shard once
    groups = ParquetStream(str(tmp_path / "parts")).groups
    assert len(mine | theirs) == sum(1 for n in data.streamed.group_train_rows() if n)
    assert len(groups) == 15
    assert first["features"] == second["features"]
    assert first["features"] == json.dumps(data.preprocessor.to_dict(), sort_keys=True)
    assert first["group_train_rows"] == second["group_train_rows"]
    assert first["group_train_rows"] == data.streamed.group_train_rows()
    assert first["train_counts"] == second["train_counts"] == data.streamed.train_counts
    assert sorted(set(first["first_pass"])) == shares[0]  # its share only, each group once
    assert sorted(set(second["first_pass"])) == shares[1]
    assert len(first["first_pass"]) == len(shares[0])  # (a group of 50 rows: one chunk)
    assert sorted(shares[0] + shares[1]) == list(range(15))
    assert first["error"] == second["error"] == str(alone.value)
    assert set(first["bad_pass"]) <= set(shares[0]) and late in first["bad_pass"]
    assert set(second["bad_pass"]) <= set(shares[1]) and early in second["bad_pass"]
    assert sorted(set(first["second_pass"])) == held[0]  # its share only, each group once
    assert sorted(set(second["second_pass"])) == held[1]
    assert len(first["second_pass"]) == len(held[0])
    assert len(second["second_pass"]) == len(held[1])
    assert sorted(held[0] + held[1]) == [
        g for g, n in enumerate(data.streamed.held_out_rows()) if n
    ]
    assert min(len(h) for h in held) >= 3
    expected = [_digest(data.validation), _digest(data.test)]
    assert first["held_out"] == second["held_out"] == expected
    assert first["held_out_error"] == second["held_out_error"] == str(held_alone.value)
    assert held[0][-1] in first["bad_second_pass"]  # each met its own error
    assert held[1][0] in second["bad_second_pass"]
    values = [v for task in first["test"].values() for v in task.values()]
    assert values and all(math.isfinite(v) for v in values)
    assert first["test"] == second["test"]
    assert first["path"] == second["path"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["synthetic"]
    assert (Path(first["path"]) / "metrics.json").is_file()
    # uneven sharded batches (7 and 3 rows; 3 and 1 labelled rows of task r): the losses and
    # the step of one process on the 10 rows (mean over the global labelled rows, not a mean
    # of the processes' means)
    losses, params = _uneven_step(slice(None), False)
    for found in (first, second):
        assert found["uneven"]["losses"] == pytest.approx(losses, abs=1e-6)
        torch.testing.assert_close(
            torch.tensor(found["uneven"]["params"]), params, atol=1e-6, rtol=0
        )
    assert "disagree on the steps per epoch (3 to 4)" in first["disagreement"]
    assert second["disagreement"] == first["disagreement"]


def test_a_streamed_run_trains_end_to_end(tmp_path, monkeypatch, capsys):
    path = _write(_frame(600, seed=4), tmp_path)
    raw = _config(path, shuffle_buffer=100)
    raw["training"]["epochs"] = 2
    raw["output_dir"] = str(tmp_path / "runs")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "train", config_path, "--no-baselines")
    assert code == 0, err
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    values = [v for task in metrics["multitask"]["test"].values() for v in task.values()]
    assert values and all(math.isfinite(v) for v in values)
    saved = json.loads(next((tmp_path / "runs").rglob("config.json")).read_text())
    assert saved["data"]["streaming"] is True and saved["data"]["shuffle_buffer"] == 100


def test_streaming_options_are_absent_from_saved_configs_by_default(tmp_path):
    config = parse_config(config_dict("t.csv"))
    dumped = config.model_dump(mode="json")["data"]
    assert "streaming" not in dumped and "shuffle_buffer" not in dumped
    assert "key" not in dumped["split"]


def test_a_csv_source_is_not_streamed(tmp_path, table, monkeypatch, capsys):
    raw = _config(table)
    with pytest.raises(ConfigError, match=r"data\.source: .*table\.csv' is not Parquet"):
        prepare_data(parse_config(raw))
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({**raw, "output_dir": str(tmp_path / "runs")}))
    code, _, err = run_cli(monkeypatch, capsys, "train", config_path, "--no-baselines")
    assert_clean_error(code, err, "data.source", "is not Parquet", "reads Parquet only")
    assert not (tmp_path / "runs").exists()


def test_a_builtin_dataset_is_not_streamed():
    with pytest.raises(
        ConfigError, match="data.source: 'penguins' is a built-in dataset, not Parquet"
    ):
        prepare_data(parse_config(_config(Path("penguins"))))


def test_an_empty_parquet_folder_or_one_with_another_file(tmp_path):
    (tmp_path / "empty" / ".cache").mkdir(parents=True)
    (tmp_path / "empty" / "_SUCCESS").write_text("")  # marker and hidden files are skipped
    (tmp_path / "empty" / ".cache" / "notes.txt").write_text("nothing")
    with pytest.raises(DataError, match="empty: the folder holds no Parquet file"):
        prepare_data(parse_config(_config(tmp_path / "empty")))
    (tmp_path / "empty" / "notes.txt").write_text("nothing")
    with pytest.raises(DataError, match="notes.txt: not a Parquet file, in the folder"):
        prepare_data(parse_config(_config(tmp_path / "empty")))


def test_a_parquet_file_without_rows(tmp_path):
    path = tmp_path / "none.parquet"
    _frame().iloc[:0].to_parquet(path)
    with pytest.raises(DataError, match="none.parquet: the table is empty"):
        prepare_data(parse_config(_config(path)))


def test_a_missing_column_reads_as_in_memory(tmp_path):
    path = _write(_frame(), tmp_path)
    raw = _config(path)
    raw["features"] = {"numeric": ["x1", "x3"]}
    with pytest.raises(DataError) as streamed:
        prepare_data(parse_config(raw))
    del raw["data"]["streaming"]
    with pytest.raises(DataError) as memory:
        prepare_data(parse_config(raw))
    assert str(streamed.value) == str(memory.value)
    assert "feature column 'x3' is missing" in str(streamed.value)
    raw = _config(path)
    raw["tasks"][2]["target"] = "spent"
    with pytest.raises(DataError, match="needs column 'spent'.*did you mean 'spend'"):
        prepare_data(parse_config(raw))
    with pytest.raises(DataError, match="split key column 'ids' is missing.*did you mean 'id'"):
        prepare_data(parse_config(_config(path, split={"key": "ids"})))
    frame = _frame()
    frame["split"] = frame["split"].replace("test", "train")
    with pytest.raises(DataError, match="split column 'split' marks no row 'test'"):
        prepare_data(
            parse_config(_config(_write(frame, tmp_path / "s"), split={"column": "split"}))
        )


def test_bad_values_name_their_file_and_row(tmp_path):
    frame = _frame()
    frame.loc[500, "x1"] = np.inf
    path = _write(frame, tmp_path)
    with pytest.raises(
        DataError, match=r"table.parquet: numeric feature 'x1' row 501 holds an infinite value"
    ):
        prepare_data(parse_config(_config(path)))
    frame = _frame().astype({"id": "float64"})
    frame.loc[33, "id"] = np.nan
    path = tmp_path / "keys.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match="keys.parquet: split key column 'id' row 34 is missing"):
        prepare_data(parse_config(_config(path, split={"key": "id"})))


def test_streaming_options_need_streaming():
    raw = config_dict("t.parquet")
    raw["data"]["shuffle_buffer"] = 10
    with pytest.raises(ConfigError, match="data.shuffle_buffer: applies to streamed data only"):
        parse_config(raw)
    raw = config_dict("t.parquet")
    raw["data"]["split"] = {"key": "id"}
    with pytest.raises(ConfigError, match="data.split: key 'id' assigns splits by a hash"):
        parse_config(raw)
    raw["data"].update(streaming=True, split={"key": "id", "column": "split"})
    with pytest.raises(ConfigError, match="data.split: key 'id' and column 'split' both"):
        parse_config(raw)
