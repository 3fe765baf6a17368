"""The :class:`Task`: what to predict, how to encode its labels, its loss, metrics and direction.

A task owns its masking: a missing label (empty or NaN) never reaches a loss or a metric. Targets
are encoded as finite tensors with a boolean mask of the same leading shape; losses are masked
means over labelled entries, and a batch without any label for a task contributes no loss for it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polytask.errors import ConfigError, DataError, did_you_mean
from polytask.options import TASK_OPTIONS, NoOptions, Options

Direction = Literal["higher", "lower"]
LossFn = Callable[[Tensor, Tensor], Tensor]
"""Elementwise loss: ``(output, target) -> loss`` with the shape of the task's mask."""


@dataclass(frozen=True)
class Metric:
    """A named metric with its direction. ``fn(y_true, scores, mask)`` works on numpy arrays."""

    name: str
    direction: Direction
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True, kw_only=True)
class Task(ABC):
    """Base class of the task types. Subclasses set the class variables and the label codec.

    ``columns`` defaults to ``(name,)``; ``loss`` and ``metrics`` default to the type's defaults;
    ``weight`` is a static multiplier of the task's loss, applied before any balancer. An
    ``auxiliary`` task is trained but left out of Δm and model selection (e.g. Caruana's "future
    as output" targets, only known in hindsight).
    """

    name: str
    columns: tuple[str, ...] = ()
    loss: str = ""
    metrics: tuple[str, ...] = ()
    weight: float = 1.0
    auxiliary: bool = False

    kind: ClassVar[str]
    config_options: ClassVar[type[Options]] = NoOptions
    """The keys a config entry of this type adds to the common task keys."""
    losses: ClassVar[Mapping[str, LossFn]]
    metric_table: ClassVar[Mapping[str, Metric]]
    default_loss: ClassVar[str]
    default_metrics: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a task needs a non-empty name")
        if not self.columns:
            object.__setattr__(self, "columns", (self.name,))
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.loss:
            object.__setattr__(self, "loss", self.default_loss)
        if self.loss not in self.losses:
            raise ConfigError(
                f"task '{self.name}': unknown {self.kind} loss '{self.loss}'"
                f"{did_you_mean(self.loss, self.losses)}; choose from {sorted(self.losses)}"
            )
        metrics = tuple(self.metrics) or self.default_metrics
        for metric in metrics:
            if metric not in self.metric_table:
                raise ConfigError(
                    f"task '{self.name}': unknown {self.kind} metric '{metric}'"
                    f"{did_you_mean(metric, self.metric_table)}; "
                    f"choose from {sorted(self.metric_table)}"
                )
        object.__setattr__(self, "metrics", metrics)
        if not np.isfinite(self.weight) or self.weight < 0:
            raise ConfigError(f"task '{self.name}': weight must be finite and >= 0")

    # -- shape -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def output_size(self) -> int:
        """Number of outputs the head must produce."""

    @property
    def is_fitted(self) -> bool:
        """Whether the label vocabulary or scaling has been learned (see :meth:`fit`)."""
        return True

    # -- labels ------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, frame: pd.DataFrame, source: str = "data") -> Self:
        """Return a copy that knows the classes or scaling seen in ``frame``'s training labels."""

    @abstractmethod
    def encode(self, frame: pd.DataFrame, source: str = "data") -> tuple[Tensor, Tensor]:
        """Encode the task's columns as ``(target, mask)``; missing labels are masked."""

    @abstractmethod
    def decode(self, output: Tensor) -> dict[str, np.ndarray]:
        """Turn raw model outputs into named prediction columns (class, probability, value)."""

    @abstractmethod
    def scores(self, output: Tensor) -> np.ndarray:
        """Probabilities or values in the label's own scale, as the metrics expect them."""

    def target_scores(self, target: Tensor) -> np.ndarray:
        """Encoded targets in the scale the metrics expect (the identity for classification)."""
        return target.detach().cpu().numpy()

    # -- training ----------------------------------------------------------------------------
    def loss_value(
        self, output: Tensor, target: Tensor, mask: Tensor, labelled: int | None = None
    ) -> Tensor | None:
        """Masked mean loss over labelled entries, or ``None`` when the batch has no label.

        ``labelled``: ``mask.sum()`` when the caller knows it (the trainer counts on the host
        before the batch goes to the device); then nothing here waits for the device. The
        unlabelled entries are left out by a select, not by boolean indexing (whose
        data-dependent shape would be a device synchronisation); their targets are finite by
        construction, so they add exact zeros."""
        count = int(mask.sum()) if labelled is None else labelled
        if count == 0:
            return None
        elementwise = self.losses[self.loss](output, target)
        if mask.dim() > elementwise.dim():
            return elementwise[mask].sum() / count
        keep = mask.reshape(mask.shape + (1,) * (elementwise.dim() - mask.dim()))
        return torch.where(keep, elementwise, 0).sum() / count

    def evaluate(self, output: Tensor, target: Tensor, mask: Tensor) -> dict[str, float]:
        """Compute every configured metric on labelled entries (NaN when undefined)."""
        mask_np = mask.detach().cpu().numpy().astype(bool)
        y_true = self.target_scores(target)
        scores = self.scores(output)
        results = {}
        for name in self.metrics:
            try:
                value = float(self.metric_table[name].fn(y_true, scores, mask_np))
            except ValueError:  # e.g. AUC on a split with a single class
                value = float("nan")
            results[name] = value
        return results

    def direction(self, metric: str) -> Direction:
        """``"higher"`` or ``"lower"``: which way the metric improves."""
        return self.metric_table[metric].direction

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description from which :func:`task_from_dict` rebuilds the task."""
        data = dataclasses.asdict(self)
        data["type"] = self.kind
        return data


def label_strings(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Canonical label strings and a 'present' mask; integral floats print as integers.

    Empty strings, whitespace, NaN and None count as missing labels.
    """
    values = series.to_numpy(dtype=object)
    present = np.ones(len(values), dtype=bool)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            present[i] = False
            out[i] = ""
            continue
        if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (float, np.floating)) and float(value).is_integer()
        ):
            text = str(int(value))
        else:
            text = str(value).strip()
        present[i] = text != ""
        out[i] = text
    return out, present


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], task: str, source: str) -> None:
    """Raise a :class:`DataError` naming the first missing column."""
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"{source}: task '{task}' needs column '{column}', which is missing"
                f"{did_you_mean(column, map(str, frame.columns))}"
            )


def numeric_labels(frame: pd.DataFrame, column: str, task: str, source: str) -> np.ndarray:
    """Column as float64 with NaN for missing; non-numeric or infinite entries raise."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    _, present = label_strings(raw)
    bad = np.flatnonzero(present & np.isnan(values))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{source}: task '{task}' column '{column}' must be numeric, "
            f"but row {row + 1} holds {raw.iloc[row]!r}"
        )
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        raise DataError(
            f"{source}: task '{task}' column '{column}' has an infinite value at row "
            f"{int(infinite[0]) + 1}"
        )
    return values


def masked_columns_mean(
    y_true: np.ndarray, scores: np.ndarray, mask: np.ndarray, fn: Callable[..., float]
) -> float:
    """Mean of ``fn`` over columns, each on its own labelled rows (columns without labels skip)."""
    if y_true.ndim == 1:
        return float(fn(y_true[mask], scores[mask]))
    values = [
        fn(y_true[mask[:, j], j], scores[mask[:, j], j])
        for j in range(y_true.shape[1])
        if mask[:, j].any()
    ]
    return float(np.mean(values)) if values else float("nan")


def zero_filled(values: np.ndarray, present: np.ndarray, dtype: torch.dtype) -> Tensor:
    """Tensor of ``values`` with missing entries set to zero (masks keep them out of losses)."""
    filled = np.where(present, values, 0)
    return torch.as_tensor(filled.astype(np.float64 if dtype.is_floating_point else np.int64)).to(
        dtype
    )


TASK_TYPES: dict[str, type[Task]] = {}


def register_task_type(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task type addressable by its ``kind`` in configs, with
    ``cls.config_options`` as the options its config entries may set."""
    TASK_TYPES[cls.kind] = cls
    TASK_OPTIONS.register(cls.kind, cls.config_options)
    return cls


def task_from_dict(data: Mapping[str, Any]) -> Task:
    """Rebuild a task from :meth:`Task.to_dict` output (or a config entry with a ``type``)."""
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in TASK_TYPES:
        raise ConfigError(
            f"task '{data.get('name', '?')}': unknown type '{kind}'"
            f"{did_you_mean(str(kind), TASK_TYPES)}; choose from {sorted(TASK_TYPES)}"
        )
    cls = TASK_TYPES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**kwargs)


__all__ = [
    "TASK_TYPES",
    "Direction",
    "LossFn",
    "Metric",
    "Task",
    "register_task_type",
    "task_from_dict",
]
