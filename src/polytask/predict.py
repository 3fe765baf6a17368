"""Load a finished run and use it on new tables: predictions and metrics.

Needs only the run directory: no trainer, optimizer or balancer is built (the forward passes
are :mod:`polytask.inference`'s)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from polytask.config import Config
from polytask.data.dataset import MultiTaskData
from polytask.data.features import FeaturePreprocessor
from polytask.data.prepare import encode_frame
from polytask.data.tables import read_table
from polytask.errors import RunError
from polytask.inference import evaluate, predict_outputs
from polytask.models.base import MultiTaskModel
from polytask.models.build import build_network
from polytask.rundir import RunDir
from polytask.tasks import Task, task_from_dict
from polytask.training.checkpoint import load_weights


@dataclass
class LoadedRun:
    """A trained multi-task model with the encoders that turn tables into its inputs."""

    config: Config
    encoder: FeaturePreprocessor
    tasks: list[Task]
    model: MultiTaskModel

    def encode(self, frame: pd.DataFrame, source: str) -> MultiTaskData:
        return encode_frame(frame, self.tasks, self.encoder, source)

    def predict(self, frame: pd.DataFrame, source: str = "data") -> pd.DataFrame:
        """One column per task (class and probability, or value), in input row order."""
        data = self.encode(frame.drop(columns=self._label_columns(frame)), source)
        outputs = predict_outputs(self.model, self.tasks, data)
        columns: dict[str, object] = {}
        for task in self.tasks:
            columns.update(task.decode(outputs[task.name]))
        return pd.DataFrame(columns, index=frame.index)

    def evaluate(self, frame: pd.DataFrame, source: str = "data") -> dict[str, dict[str, float]]:
        """Metrics of every task on the labelled rows of ``frame``."""
        return evaluate(self.model, self.tasks, self.encode(frame, source)).metrics

    def _label_columns(self, frame: pd.DataFrame) -> list[str]:
        return [c for t in self.tasks for c in t.columns if c in frame.columns]


def load_run(run_dir: str | Path) -> LoadedRun:
    """Read a run directory written by :func:`polytask.experiment.run_experiment`."""
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
    model = build_network(config.model, encoder, tasks)
    weights = load_weights(run.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise RunError(f"{run.model} does not match the model ({exc})") from exc
    model.eval()
    return LoadedRun(config, encoder, tasks, model)


def load_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A table and its name for messages."""
    return read_table(path), str(path)
