"""Load a finished run and use it on new tables: predictions and metrics.

Needs only the run directory: no trainer, optimizer or balancer is built (the forward passes
are :mod:`polytask.inference`'s)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from polytask.config import Config
from polytask.data.dataset import MultiTaskData
from polytask.data.features import FeaturePreprocessor
from polytask.data.prepare import encode_frame
from polytask.data.streaming import (
    PARQUET_SUFFIXES,
    ParquetStream,
    integer_columns_with_nulls,
    release_memory,
)
from polytask.data.tables import read_table
from polytask.device import resolve_device
from polytask.errors import DataError, PolytaskError, RunError, did_you_mean
from polytask.inference import evaluate, predict_outputs
from polytask.models.base import MultiTaskModel
from polytask.models.build import build_network
from polytask.rundir import RunDir
from polytask.tasks import Task, task_from_dict
from polytask.training.checkpoint import atomic_path, load_weights


@dataclass
class LoadedRun:
    """A trained multi-task model with the feature preprocessor that turns tables into its
    inputs."""

    config: Config
    preprocessor: FeaturePreprocessor
    tasks: list[Task]
    model: MultiTaskModel

    def encode(self, frame: pd.DataFrame, source: str) -> MultiTaskData:
        return encode_frame(frame, self.tasks, self.preprocessor, source)

    def predict(
        self, frame: pd.DataFrame, source: str = "data", keep: Sequence[str] = ()
    ) -> pd.DataFrame:
        """The ``keep`` columns of ``frame`` as they are, then each task's columns (see
        :meth:`~polytask.tasks.Task.decode`), in input row order."""
        kept = self._kept(frame, source, keep)
        data = self.encode(frame.drop(columns=self._label_columns(frame)), source)
        outputs = predict_outputs(self.model, self.tasks, data)
        columns: dict[str, object] = {}
        for task in self.tasks:
            columns.update(task.decode(outputs[task.name]))
        clash = next((c for c in kept if c in columns), None)
        if clash is not None:
            raise DataError(f"--keep: column '{clash}' has the name of a prediction column")
        return pd.concat([frame[kept], pd.DataFrame(columns, index=frame.index)], axis=1)

    def evaluate(self, frame: pd.DataFrame, source: str = "data") -> dict[str, dict[str, float]]:
        """Metrics of every task on the labelled rows of ``frame`` (a DataError when no row has
        a label for any task)."""
        data = self.encode(frame, source)
        if not any(bool(mask.any()) for mask in data.masks.values()):
            columns = [c for t in self.tasks for c in t.columns]
            raise DataError(
                f"{source}: no labels for any task (label columns: {', '.join(columns)})"
            )
        return evaluate(self.model, self.tasks, data).metrics

    def predict_parquet(self, source: str, out: Path, keep: Sequence[str] = ()) -> int:
        """:meth:`predict` on a Parquet file or folder (``data.streaming``'s sources), read in
        record batches and written to ``out`` batch by batch (:func:`write_frames`), so the
        table never sits in memory whole; returns the rows written. Row order: the files in
        path order, each in its row order."""
        stream, columns = self._stream(source, keep, labels=False)
        kept = self._kept(stream.empty_frame(), source, keep)
        frames = (
            self.predict(frame, where, keep=kept) for frame, where in _frames(stream, columns)
        )
        return write_frames(frames, out)

    def evaluate_parquet(self, source: str) -> dict[str, dict[str, float]]:
        """:meth:`evaluate` on a Parquet file or folder, read in record batches: only each
        row's outputs, targets and masks are kept (a few numbers per row and task)."""
        stream, columns = self._stream(source, (), labels=True)
        parts: dict[str, list[list[Tensor]]] = {t.name: [[], [], []] for t in self.tasks}
        for frame, where in _frames(stream, columns):
            data = self.encode(frame, where)
            outputs = predict_outputs(self.model, self.tasks, data)
            for name, (found, targets, masks) in parts.items():
                found.append(outputs[name])
                targets.append(data.targets[name])
                masks.append(data.masks[name])
        mask = {name: torch.cat(part[2]) for name, part in parts.items()}
        if not any(bool(m.any()) for m in mask.values()):
            columns = [c for t in self.tasks for c in t.columns]
            raise DataError(
                f"{source}: no labels for any task (label columns: {', '.join(columns)})"
            )
        return {
            task.name: task.evaluate(
                torch.cat(parts[task.name][0]), torch.cat(parts[task.name][1]), mask[task.name]
            )
            for task in self.tasks
        }

    def _stream(
        self, source: str, keep: Sequence[str], *, labels: bool
    ) -> tuple[ParquetStream, list[str]]:
        """The Parquet source and the columns to read from it: the features (a DataError
        naming the first file and the column when one is missing; every file has the same
        columns), with ``labels`` the label columns present, and ``keep``."""
        stream = ParquetStream(source)
        empty = stream.empty_frame()
        self.preprocessor.check_columns(empty, stream.files[0])
        wanted = {
            *self.preprocessor.numeric,
            *self.preprocessor.categorical,
            *self.preprocessor.text,
            *(self._label_columns(empty) if labels else ()),
            *keep,
        }
        return stream, [c for c in stream.columns if c in wanted]

    @staticmethod
    def _kept(frame: pd.DataFrame, source: str, keep: Sequence[str]) -> list[str]:
        for column in keep:
            if column not in frame.columns:
                hint = did_you_mean(column, map(str, frame.columns))
                raise DataError(f"--keep: {source} has no column '{column}'{hint}")
        return list(dict.fromkeys(keep))

    def _label_columns(self, frame: pd.DataFrame) -> list[str]:
        return [c for t in self.tasks for c in t.columns if c in frame.columns]


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Read a run directory written by :func:`polytask.experiment.run_experiment`, with its
    model on ``device`` (``cpu`` by default, whatever device trained it: the same outputs on
    every machine; ``auto`` or ``cuda`` for speed, see
    :func:`~polytask.device.resolve_device`, which names ``--device`` in errors)."""
    target = resolve_device(device, key="--device")
    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise RunError(f"{run.path}: no such run directory")
    missing = run.missing()
    if missing:
        raise RunError(f"{run.path}: '{missing[0]}' is missing; the run did not finish")
    try:
        config = Config.model_validate(json.loads(run.config.read_text()))
        data = json.loads(run.data.read_text())
        encoder = FeaturePreprocessor.from_dict(data["features"])
        tasks = [task_from_dict(t) for t in data["tasks"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{run.path}: config.json or data.json is corrupt ({exc})") from exc
    weights = load_weights(run.model)
    _check_shapes(run, config, encoder, tasks, weights)
    try:
        model = build_network(config.model, encoder, tasks)
    except (RuntimeError, MemoryError, ValueError, OverflowError) as exc:
        raise RunError(f"{run.path}: cannot build the model of {run.config.name} ({exc})") from exc
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise RunError(f"{run.model} does not match the model ({exc})") from exc
    model.eval()
    return LoadedRun(config, encoder, tasks, model.to(target))


def network_shapes(
    config: Config, encoder: FeaturePreprocessor, tasks: list[Task]
) -> MultiTaskModel | None:
    """The configured network built on the ``meta`` device: every shape, no memory. None when
    it cannot be built there (sizes too large to count, or a block that loads real weights)."""
    try:
        with torch.device("meta"):
            return build_network(config.model, encoder, tasks)
    except PolytaskError:
        raise
    except Exception:
        return None


def _check_shapes(
    run: RunDir,
    config: Config,
    encoder: FeaturePreprocessor,
    tasks: list[Task],
    weights: dict[str, torch.Tensor],
) -> None:
    """Compare the model that ``config.json`` describes with the saved weights, before any
    memory is allocated for it (the model is built on the ``meta`` device): an edited or
    corrupt config asking for absurd layer sizes is an error, not an allocation failure. A
    model that cannot be built on ``meta`` is left to the real build."""
    skeleton = network_shapes(config, encoder, tasks)
    if skeleton is None:
        return
    shapes = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    saved = {name: tuple(t.shape) for name, t in weights.items()}
    for name in sorted(shapes.keys() | saved.keys()):
        if shapes.get(name) != saved.get(name):
            expected = "absent" if name not in shapes else f"of shape {list(shapes[name])}"
            found = "absent" if name not in saved else f"of shape {list(saved[name])}"
            raise RunError(
                f"{run.config} does not match {run.model}: '{name}' is {expected} in the "
                f"model the config describes, {found} in the weights"
            )


def load_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A table and its name for messages."""
    return read_table(path), str(path)


def is_parquet(path: str | Path) -> bool:
    """Whether ``path`` is read as streamed Parquet: a folder, or a ``.parquet``/``.pq``
    file (anything else is read whole by :func:`load_table`)."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(PARQUET_SUFFIXES)


def _frames(stream: ParquetStream, columns: list[str]) -> Iterator[tuple[pd.DataFrame, str]]:
    """``(frame, where)``: the ``columns`` of each record batch of ``stream``, with the dtypes
    pandas gives the whole table and indexed by row of the file (so errors name its rows), and
    the file with the batch's rows (warnings count the batch's rows); a DataError for a table
    without rows."""
    dtypes = {
        **dict.fromkeys(integer_columns_with_nulls(stream, columns), "float64"),
        **stream.nullable,
    }
    empty = True
    for _, chunk in stream.chunks(columns):
        if len(chunk.table):
            empty = False
            rows = f"rows {chunk.start + 1}-{chunk.start + len(chunk.table)}"
            yield chunk.frame(columns, dtypes), f"{chunk.path} ({rows})"
        release_memory()
    if empty:
        raise DataError(f"{stream.source}: the table is empty (no data rows)")


def write_frames(frames: Iterable[pd.DataFrame], out: Path) -> int:
    """Write ``frames`` one after the other as one table to ``out``: Parquet for a
    ``.parquet``/``.pq`` name, else CSV; returns the rows written. The file appears whole when
    the last frame is written (a temporary file is renamed over ``out``), or not at all."""
    rows = 0
    with atomic_path(out) as tmp:
        if out.name.lower().endswith(PARQUET_SUFFIXES):
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for frame in frames:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    else:
                        table = table.cast(writer.schema)
                    writer.write_table(table)
                    rows += len(frame)
            finally:
                if writer is not None:
                    writer.close()
        else:
            with open(tmp, "w", newline="") as handle:
                for frame in frames:
                    frame.to_csv(handle, index=False, header=rows == 0)
                    rows += len(frame)
    return rows
