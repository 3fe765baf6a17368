"""From a config to encoded, split, labelled data: the one entry point the CLI and runs use."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from polytask.config import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_TEXT_MODEL,
    Config,
    PlantedConfig,
    SplitConfig,
    TaskConfig,
)
from polytask.data.builtin import BUILTIN_DATASETS, get_builtin
from polytask.data.builtin.planted import PlantedDataset
from polytask.data.dataset import MultiTaskData
from polytask.data.features import FeaturePreprocessor, infer_features, select_columns
from polytask.data.sampling import BatchSource, ShuffledBatches, TaskMixture
from polytask.data.splits import SPLITS, column_split, random_split
from polytask.data.streaming import (
    CARVABLE,
    DEFAULT_SHUFFLE_BUFFER,
    TEST,
    TRAIN,
    VALIDATION,
    Chunk,
    ParquetStream,
    Processes,
    StreamedTable,
    check_streamable,
    read_first_pass,
    read_second_pass,
)
from polytask.data.tables import check_not_empty, read_table
from polytask.errors import ConfigError, DataError, did_you_mean
from polytask.tasks import Task, task_from_dict
from polytask.tasks.base import label_strings, require_columns

SHARED = "shared"
"""Name of the shared table among the training sources."""


@dataclass
class Table:
    """A raw table, where it came from, and which tasks take their labels from it."""

    name: str
    source: str
    frame: pd.DataFrame
    task_names: list[str]
    splits: dict[str, np.ndarray]


@dataclass
class PreparedData:
    """Fitted tasks and features, and the encoded splits of every table. ``test`` is None in
    a copy sealed by :meth:`without_test` (``polytask auto``'s search never sees the test split)."""

    tasks: list[Task]
    preprocessor: FeaturePreprocessor
    train: dict[str, MultiTaskData]
    validation: MultiTaskData
    test: MultiTaskData | None
    streamed: StreamedTable | None = None

    def without_test(self) -> PreparedData:
        """This data with the test split left out."""
        return replace(self, test=None)

    def train_source(
        self, batch_size: int, policy: str, temperature: float, rank: int = 0, size: int = 1
    ) -> BatchSource:
        """One shared table: shuffled batches; several tables: a task mixture; streamed data:
        batches shuffled through a bounded buffer, of process ``rank`` of ``size`` under
        ``torchrun`` (it reads its own shard; other sources give every process the global
        batches, which the trainer cuts)."""
        if self.streamed is not None:
            return self.streamed.batches(batch_size, rank, size)
        if len(self.train) == 1:
            return ShuffledBatches(next(iter(self.train.values())), batch_size)
        return TaskMixture(self.train, batch_size, policy, temperature)  # type: ignore[arg-type]

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Labelled rows per task in each split."""
        train = {t.name: 0 for t in self.tasks}
        if self.streamed is not None:
            train.update(self.streamed.train_counts)
        for data in self.train.values():
            for name, count in data.label_counts().items():
                train[name] += count
        return {
            "train": train,
            "validation": self.validation.label_counts(),
            "test": self.test.label_counts() if self.test is not None else {},
        }


def build_task(spec: TaskConfig) -> Task:
    """An unfitted :class:`Task` from its config entry (common keys and its type's options)."""
    data = {
        "type": spec.type,
        "name": spec.name,
        "columns": spec.columns,
        "loss": spec.loss or "",
        "metrics": tuple(spec.metrics or ()),
        "weight": spec.weight,
        "auxiliary": spec.auxiliary,
        **spec.options,
    }
    return task_from_dict(data)


def load_source(source: str, planted: PlantedConfig | None = None) -> tuple[pd.DataFrame, str]:
    """A built-in dataset by name, or a table file; returns the frame and a label for messages.
    ``planted``: the options of the generated ``planted`` dataset (``data.planted``)."""
    if source in BUILTIN_DATASETS:
        dataset = get_builtin(source)
        if planted is not None and isinstance(dataset, PlantedDataset):
            dataset = dataset.with_options(planted)
        return dataset.load(), f"built-in dataset '{source}'"
    if not Path(source).suffix and not os.path.isdir(source):  # False for an over-long name
        get_builtin(source)  # raises with the list of built-in names
    return read_table(source), source


def prepare_data(config: Config, processes: Processes | None = None) -> PreparedData:
    """Read, split, infer features, fit tasks and encoders, encode every split (streamed
    data: see :mod:`polytask.data.streaming`). ``processes``: those of a ``torchrun`` job,
    every one calling this function; each then reads only its share of a streamed table's
    two passes (:func:`~polytask.data.streaming.read_first_pass`,
    :func:`~polytask.data.streaming.read_second_pass`); the result is the same on every
    process, and equal to that of one."""
    if config.data.streaming:
        return _prepare_streamed(config, processes)
    split = config.data.split
    tables = _read_tables(config)
    for table in tables:
        if split.column is not None and split.column in table.frame.columns:
            table.splits = column_split(
                table.frame,
                split.column,
                validation=split.validation,
                seed=split.seed,
                source=table.source,
            )
        elif split.column is not None and table.name == SHARED:
            raise DataError(f"{table.source}: split column '{split.column}' is missing")
        else:
            _check_fractions(split)
            table.splits = random_split(
                len(table.frame), validation=split.validation, test=split.test, seed=split.seed
            )
        if table.splits["train"].size == 0:
            how = (
                f"split column '{split.column}' marks no row 'train'"
                if split.column is not None and split.column in table.frame.columns
                else f"{len(table.frame)} rows leave no training row; lower data.split fractions"
            )
            raise DataError(f"{table.source}: {how}")

    specs = {s.name: s for s in config.tasks}
    for table in tables:  # missing labels are clearer errors than what would follow from them
        for name in table.task_names:
            _check_labels_exist(table, specs[name])
    encoder = _feature_encoder(config, tables)
    train_frames = [t.frame.iloc[t.splits["train"]] for t in tables]
    columns = encoder.numeric + encoder.categorical
    if len(tables) == 1:
        encoder.fit(train_frames[0][columns], f"{tables[0].source} (training rows)")
    else:  # errors name "row N of <table>"
        keys = [t.source for t in tables]
        encoder.fit(pd.concat([f[columns] for f in train_frames], keys=keys), "training rows")

    tasks: list[Task] = []
    for spec in config.tasks:
        table = next(t for t in tables if spec.name in t.task_names)
        train = table.frame.iloc[table.splits["train"]]
        tasks.append(build_task(spec).fit(train, f"{table.source} (training rows)"))

    for table in tables:  # after fitting, whose errors name rows: every split is evaluated
        _check_not_empty(table, split)
    encoded = {name: [_encode(table, name, tasks, encoder) for table in tables] for name in SPLITS}
    prepared = PreparedData(
        tasks=tasks,
        preprocessor=encoder,
        train={t.name: data for t, data in zip(tables, encoded["train"], strict=True)},
        validation=MultiTaskData.concat(encoded["validation"]),
        test=MultiTaskData.concat(encoded["test"]),
    )
    return prepared


def _check_fractions(split: SplitConfig) -> None:
    if split.validation + split.test >= 1:
        raise ConfigError(
            f"data.split: validation + test = {split.validation:g} + {split.test:g} = "
            f"{split.validation + split.test:g} leaves no rows for training; "
            "their sum must be below 1"
        )


def _prepare_streamed(config: Config, processes: Processes | None) -> PreparedData:
    """:func:`prepare_data` for ``data.streaming``: one pass to split, check and summarise,
    one to encode the validation and test rows (over several ``processes``, each reads its
    share of each); the training rows stay on disk."""
    check_streamable(config)
    split = config.data.split
    if split.column is None:
        _check_fractions(split)
    stream = ParquetStream(config.data.source or "")
    source, empty = stream.source, stream.empty_frame()
    for what, column in (("split column", split.column), ("split key column", split.key)):
        if column is not None and column not in empty.columns:
            raise DataError(
                f"{source}: {what} '{column}' is missing"
                f"{did_you_mean(column, map(str, empty.columns))}"
            )
    for spec in config.tasks:
        require_columns(empty, spec.columns, spec.name, source)
    encoder = _feature_encoder(config, [Table(SHARED, source, empty, [], {})])
    numeric, categorical = list(encoder.numeric), list(encoder.categorical)
    labels = list(dict.fromkeys(c for spec in config.tasks for c in spec.columns))
    integers = {f.name for f in stream.schema if pa.types.is_integer(f.type)} & set(stream.columns)
    integers -= set(stream.nullable)  # unless written with a nullable dtype
    kept_split = [split.column] if split.column is not None and split.column not in labels else []
    kept = [*labels, *kept_split]  # and the split column, which error messages look for
    found = read_first_pass(stream, split, encoder, kept, integers, processes)
    codes, summaries = found.group_codes(len(stream.groups)), found.summaries
    every = np.concatenate([np.concatenate(c) for c in codes if c] or [np.empty(0, np.int8)])
    if every.size == 0:
        raise DataError(f"{source}: the table is empty (no data rows)")
    carve = VALIDATION if split.column is not None and not (every == VALIDATION).any() else TRAIN
    if carve == TRAIN:
        summaries[TRAIN].merge(summaries[CARVABLE])
    per_group = [np.concatenate(c) if c else np.empty(0, np.int8) for c in codes]
    for group in (*per_group, every):
        group[group == CARVABLE] = carve
    # integer columns with missing values: floats in pandas
    dtypes = {**dict.fromkeys(found.null_integers, "float64"), **stream.nullable}
    label_frame = Chunk(source, 0, pa.concat_tables(found.label_tables())).frame(kept, dtypes)
    del found, codes
    table = Table(SHARED, source, label_frame, [s.name for s in config.tasks], {})
    for spec in config.tasks:
        _check_labels_exist(table, spec)
    table.splits = {name: np.flatnonzero(every == code) for code, name in enumerate(SPLITS)}
    if table.splits["train"].size == 0:
        how = (
            f"split column '{split.column}' marks no row 'train'"
            if split.column is not None
            else f"{every.size} rows leave no training row; lower data.split fractions"
        )
        raise DataError(f"{source}: {how}")
    training = f"{source} (training rows)"
    encoder.fit_summary(summaries[TRAIN].summary(stream.schema, dtypes), training)
    train_labels = label_frame.iloc[table.splits["train"]]
    tasks = [build_task(spec).fit(train_labels, training) for spec in config.tasks]
    _check_not_empty(table, split)
    targets, masks = {}, {}  # every row's labels, encoded once (errors name their rows)
    for task in tasks:
        targets[task.name], masks[task.name] = task.encode(label_frame, source)
    del table, label_frame, train_labels
    train = torch.from_numpy(np.flatnonzero(every == TRAIN))
    train_counts = {
        name: int(mask[train].reshape(len(train), -1).any(dim=1).sum())
        for name, mask in masks.items()
    }
    streamed = StreamedTable(
        stream,
        columns=list(dict.fromkeys([*numeric, *categorical])),
        dtypes=dtypes,
        codes=per_group,
        transform=lambda frame, where: encoder.transform(frame, where, warn=False),
        targets=targets,
        masks=masks,
        train_counts=train_counts,
        shuffle_buffer=config.data.shuffle_buffer or DEFAULT_SHUFFLE_BUFFER,
    )
    held_out = read_second_pass(streamed, processes)
    return PreparedData(
        tasks=tasks,
        preprocessor=encoder,
        train={},
        validation=held_out[VALIDATION],
        test=held_out[TEST],
        streamed=streamed,
    )


def _check_not_empty(table: Table, split: SplitConfig) -> None:
    for name in ("validation", "test"):
        if table.splits[name].size == 0:
            how = (
                f"split column '{split.column}' marks no row 'test'"
                if name == "test" and split.column is not None and split.column in table.frame
                else f"{len(table.frame)} rows leave no {name} row with data.split.{name} = "
                f"{getattr(split, name):g}; raise it (or add rows)"
            )
            raise DataError(f"{table.source}: {how}")


def _check_labels_exist(table: Table, spec: TaskConfig) -> None:
    require_columns(table.frame, spec.columns, spec.name, table.source)
    if not any(label_strings(table.frame[c])[1].any() for c in spec.columns):
        raise DataError(
            f"{table.source}: task '{spec.name}' has no labels at all "
            f"(column(s) {', '.join(spec.columns)} are empty)"
        )


def encode_frame(
    frame: pd.DataFrame,
    tasks: list[Task],
    encoder: FeaturePreprocessor,
    source: str,
    *,
    warn: bool = True,
) -> MultiTaskData:
    """Encode a table holding the features and (where present) every task's label columns.

    Tasks whose columns are all absent get fully masked targets (prediction-only data).
    ``warn``: a :class:`~polytask.data.features.DataWarning` per feature column with categories
    or missing values never seen in training (off for the training run's own splits)."""
    check_not_empty(frame, source)
    inputs = encoder.transform(frame, source, warn=warn)
    targets, masks = {}, {}
    for task in tasks:
        present = [c for c in task.columns if c in frame.columns]
        if present and len(present) < len(task.columns):
            task.encode(frame, source)  # raises naming the missing column
        labels = frame if present else _unlabelled(task, len(frame))
        targets[task.name], masks[task.name] = task.encode(labels, source)
    return MultiTaskData(inputs, targets, masks)


def _unlabelled(task: Task, n_rows: int) -> pd.DataFrame:
    return pd.DataFrame({c: [np.nan] * n_rows for c in task.columns})


def _encode(
    table: Table, split: str, tasks: list[Task], encoder: FeaturePreprocessor
) -> MultiTaskData:
    frame = table.frame.iloc[table.splits[split]]
    labelled = frame.copy()
    for task in tasks:
        if task.name not in table.task_names:
            labelled = labelled.drop(
                columns=[c for c in task.columns if c in labelled], errors="ignore"
            )
    return encode_frame(labelled, tasks, encoder, f"{table.source} ({split} rows)", warn=False)


def _read_tables(config: Config) -> list[Table]:
    tables: list[Table] = []
    shared_tasks = [t.name for t in config.tasks if t.data is None]
    if config.data.source is not None and shared_tasks:
        frame, source = load_source(config.data.source, config.data.planted)
        tables.append(Table(SHARED, source, frame, shared_tasks, {}))
    for spec in config.tasks:
        if spec.data is not None:
            frame, source = load_source(spec.data, config.data.planted)
            tables.append(Table(spec.name, source, frame, [spec.name], {}))
    for table in tables:
        check_not_empty(table.frame, table.source)
    return tables


def _feature_encoder(config: Config, tables: list[Table]) -> FeaturePreprocessor:
    declared = config.features
    first = tables[0]
    select_columns(first.frame, declared.drop, f"{first.source} (features.drop)")
    if declared.numeric is not None or declared.categorical is not None:
        numeric, categorical = list(declared.numeric or []), list(declared.categorical or [])
    else:
        targets = [c for spec in config.tasks for c in spec.columns]
        exclude = [*targets, *declared.drop, *declared.text]
        for column in (config.data.split.column, config.data.split.key):
            if column:  # row metadata, not features
                exclude.append(column)
        numeric, categorical = infer_features(first.frame, exclude)
    text = list(declared.text)
    overlap = [c for c in text if c in numeric or c in categorical]
    if overlap:
        raise ConfigError(f"features: column '{overlap[0]}' is declared both text and tabular")
    if not numeric and not categorical and not text:
        raise DataError(f"{first.source}: no feature columns left after removing targets")
    block = config.model.encoder
    if block.type == "text" and not text:
        raise ConfigError(
            "model.encoder: 'text' encodes the features.text columns, but none are declared"
        )
    settings = block.options if block.type == "text" else {}  # the text input block's options
    encoder = FeaturePreprocessor(
        numeric,
        categorical,
        missing=declared.missing,
        text=text,
        text_model=settings.get("model", DEFAULT_TEXT_MODEL) if text else "",
        fine_tune=bool(text) and settings.get("fine_tune", False),
        max_length=settings.get("max_length", DEFAULT_MAX_LENGTH),
    )
    for table in tables:
        encoder.validate(table.frame, table.source)
    if text and not encoder.fine_tune:  # embed each table once; the vectors are numeric features
        for table in tables:
            table.frame = encoder.add_text_embeddings(table.frame, table.source)
        encoder.numeric += [n for c in text for n in encoder.embedding_columns(c)]
    return encoder
