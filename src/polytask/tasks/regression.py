"""Regression tasks: one or more numeric targets, standardised for training, reported in units."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

from polytask.errors import ConfigError, DataError
from polytask.tasks.base import (
    Metric,
    Task,
    masked_columns_mean,
    numeric_labels,
    register_task_type,
    require_columns,
)

_F32 = float(np.finfo(np.float32).max)


def _row_name(frame: pd.DataFrame, position: int) -> str:
    """``row N``: the 1-based row of the table ``frame`` was cut from (index label + 1)."""
    label = frame.index[position]
    if isinstance(label, int | np.integer) and not isinstance(label, bool) and label >= 0:
        return f"row {int(label) + 1}"
    return f"row {label!r}"


def _metric(name: str, direction, fn) -> Metric:
    return Metric(name, direction, lambda y, p, m: masked_columns_mean(y, p, m, fn))


@register_task_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class RegressionTask(Task):
    """Numeric targets. :meth:`fit` learns each column's mean and standard deviation so that the
    loss works on standardised values (comparable across tasks); metrics and predictions use the
    original units. With several columns, metrics are averaged over columns."""

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    kind: ClassVar[str] = "regression"
    losses: ClassVar = {
        "mse": lambda out, y: F.mse_loss(out, y, reduction="none"),
        "mae": lambda out, y: F.l1_loss(out, y, reduction="none"),
        "huber": lambda out, y: F.huber_loss(out, y, reduction="none"),
    }
    metric_table: ClassVar = {
        "mae": _metric("mae", "lower", skm.mean_absolute_error),
        "rmse": _metric("rmse", "lower", skm.root_mean_squared_error),
        "r2": _metric("r2", "higher", skm.r2_score),
    }
    default_loss: ClassVar[str] = "mse"
    default_metrics: ClassVar = ("mae", "rmse")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if value and len(value) != len(self.columns):
                raise ConfigError(f"task '{self.name}': {name} needs one value per column")
            object.__setattr__(self, name, value)

    @property
    def output_size(self) -> int:
        return len(self.columns)

    @property
    def is_fitted(self) -> bool:
        return bool(self.mean)

    def _values(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        require_columns(frame, self.columns, self.name, source)
        return np.stack([numeric_labels(frame, c, self.name, source) for c in self.columns], axis=1)

    def fit(self, frame: pd.DataFrame, source: str = "data") -> Self:
        values = self._values(frame, source)
        counts = (~np.isnan(values)).sum(0)
        if (counts == 0).any():
            column = self.columns[int(np.argmin(counts))]
            raise DataError(f"{source}: task '{self.name}' column '{column}' has no labels")
        with np.errstate(over="ignore", invalid="ignore"):
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
        # float64 statistics; decoding multiplies by them in float32, so they must fit there too
        fits = np.isfinite(mean) & np.isfinite(std) & (np.abs(mean) <= _F32) & (std <= _F32)
        for j in np.flatnonzero(~fits):
            column = values[:, j]
            present = ~np.isnan(column)
            limit = min(np.sqrt(np.finfo(np.float64).max / present.sum()), _F32) / 2
            rows = np.flatnonzero(present & (np.abs(np.where(present, column, 0.0)) > limit))
            row = int(rows[0]) if rows.size else int(np.nanargmax(np.abs(column)))
            raise DataError(
                f"{source}: task '{self.name}' column '{self.columns[j]}' "
                f"{_row_name(frame, row)} holds {column[row]:g}, too large to standardise (the "
                f"column's standard deviation overflows; {max(rows.size, 1)} such row(s)); "
                "rescale the target (e.g. log) or drop the row"
            )
        constant = np.flatnonzero(std == 0)
        if constant.size:  # as a binary task with one class: nothing to learn, and Δm would
            j = int(constant[0])  # compare noise around a constant (its relative change explodes)
            raise DataError(
                f"{source}: regression task '{self.name}' column '{self.columns[j]}' has a "
                f"single value ({mean[j]:g}) in all {int(counts[j])} labelled training rows: "
                "there is nothing to learn, and its relative change would dominate Δm; drop the "
                "task or the column"
            )
        return dataclasses.replace(self, mean=tuple(mean.tolist()), std=tuple(std.tolist()))

    def _scale(self) -> tuple[Tensor, Tensor]:
        if not self.is_fitted:
            raise ConfigError(f"task '{self.name}' must be fitted before encoding labels")
        return torch.tensor(self.mean), torch.tensor(self.std)

    def encode(self, frame: pd.DataFrame, source: str = "data") -> tuple[Tensor, Tensor]:
        values = torch.from_numpy(self._values(frame, source))
        mean, std = self._scale()
        mask = ~torch.isnan(values)
        standardised = torch.where(mask, (values - mean.double()) / std.double(), 0.0)
        bad = torch.nonzero(~torch.isfinite(standardised) | (standardised.abs() > _F32))
        if len(bad):
            row, j = (int(v) for v in bad[0])
            raise DataError(
                f"{source}: task '{self.name}' column '{self.columns[j]}' "
                f"{_row_name(frame, row)} holds {float(values[row, j]):g}, too large to "
                "standardise with the training statistics (beyond float32); rescale the target "
                "or drop the row"
            )
        return standardised.float(), mask

    def scores(self, output: Tensor) -> np.ndarray:
        mean, std = self._scale()
        return (output.detach().float().cpu() * std + mean).numpy()

    def target_scores(self, target: Tensor) -> np.ndarray:
        return self.scores(target)

    def decode(self, output: Tensor) -> dict[str, np.ndarray]:
        values = self.scores(output)
        if len(self.columns) == 1:
            return {self.name: values[:, 0]}
        return {f"{self.name}.{c}": values[:, j] for j, c in enumerate(self.columns)}
