"""Multilabel tasks: several binary label columns predicted together (one sigmoid each)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

from polytask.errors import DataError
from polytask.tasks.base import Metric, Task, label_strings, register_task_type, require_columns

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def _f1(average: str):
    def fn(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> float:
        if average == "micro":
            return skm.f1_score(y[m], p[m] >= 0.5, zero_division=0.0)
        per_label = [
            skm.f1_score(y[m[:, j], j], p[m[:, j], j] >= 0.5, zero_division=0.0)
            for j in range(y.shape[1])
            if m[:, j].any()
        ]
        return float(np.mean(per_label)) if per_label else float("nan")

    return fn


def _hamming(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> float:
    return float(((p >= 0.5) != y.astype(bool))[m].mean())


@register_task_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class MultilabelTask(Task):
    """Each column is a 0/1 (or true/false) label; a missing entry masks that label only."""

    kind: ClassVar[str] = "multilabel"
    losses: ClassVar = {
        "bce": lambda out, y: F.binary_cross_entropy_with_logits(out, y, reduction="none"),
    }
    metric_table: ClassVar = {
        "micro_f1": Metric("micro_f1", "higher", _f1("micro")),
        "macro_f1": Metric("macro_f1", "higher", _f1("macro")),
        "hamming_loss": Metric("hamming_loss", "lower", _hamming),
    }
    default_loss: ClassVar[str] = "bce"
    default_metrics: ClassVar = ("micro_f1", "macro_f1")

    @property
    def output_size(self) -> int:
        return len(self.columns)

    def fit(self, frame: pd.DataFrame, source: str = "data") -> Self:
        self.encode(frame, source)  # validates the values
        return self

    def encode(self, frame: pd.DataFrame, source: str = "data") -> tuple[Tensor, Tensor]:
        require_columns(frame, self.columns, self.name, source)
        target = np.zeros((len(frame), len(self.columns)), dtype=np.float32)
        mask = np.zeros_like(target, dtype=bool)
        for j, column in enumerate(self.columns):
            labels, present = label_strings(frame[column])
            lowered = np.char.lower(labels.astype(str))
            positive = np.isin(lowered, list(_TRUE))
            bad = np.flatnonzero(present & ~positive & ~np.isin(lowered, list(_FALSE)))
            if bad.size:
                row = int(bad[0])
                raise DataError(
                    f"{source}: multilabel task '{self.name}' column '{column}' row {row + 1} "
                    f"holds {labels[row]!r}; labels must be 0/1 or true/false"
                )
            target[:, j] = positive
            mask[:, j] = present
        return torch.from_numpy(target), torch.from_numpy(mask)

    def scores(self, output: Tensor) -> np.ndarray:
        return torch.sigmoid(output.detach().float()).cpu().numpy()

    def decode(self, output: Tensor) -> dict[str, np.ndarray]:
        prob = self.scores(output)
        columns: dict[str, np.ndarray] = {}
        for j, column in enumerate(self.columns):
            columns[f"{self.name}.{column}"] = (prob[:, j] >= 0.5).astype(np.int64)
            columns[f"{self.name}.{column}_proba"] = prob[:, j]
        return columns
