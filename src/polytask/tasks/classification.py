"""Binary and multiclass tasks: one label column, a vocabulary of classes learned from training."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

from polytask.builtin_options import BinaryOptions
from polytask.errors import ConfigError, DataError
from polytask.options import Options
from polytask.tasks.base import (
    Metric,
    Task,
    label_strings,
    register_task_type,
    require_columns,
    zero_filled,
)


def _focal(output: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal loss (Lin et al. 2017) for a binary logit: down-weights easy examples."""
    logit = output.squeeze(-1)
    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    p_true = torch.exp(-bce)
    return (1 - p_true) ** gamma * bce


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ClassificationTask(Task):
    """Shared label codec: ``classes`` are learned by :meth:`fit` (or given) and fixed after."""

    classes: tuple[str, ...] = ()

    @property
    def is_fitted(self) -> bool:
        return bool(self.classes)

    def _check_single_column(self) -> None:
        if len(self.columns) != 1:
            raise ConfigError(
                f"task '{self.name}': a {self.kind} task has exactly one target column"
            )

    def _labels(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
        require_columns(frame, self.columns, self.name, source)
        return label_strings(frame[self.columns[0]])

    def fit(self, frame: pd.DataFrame, source: str = "data") -> Self:
        labels, present = self._labels(frame, source)
        found = tuple(sorted(set(labels[present])))
        if self.classes:  # declared classes (e.g. the positive class of a binary task)
            unknown = [c for c in found if c not in self.classes]
            if unknown:
                raise DataError(
                    f"{source}: task '{self.name}' column '{self.columns[0]}' has class "
                    f"{unknown[0]!r}, not among the declared classes {list(self.classes)}"
                )
            return self
        return dataclasses.replace(self, classes=self._order_classes(found, source))

    def _order_classes(self, found: tuple[str, ...], source: str) -> tuple[str, ...]:
        return found

    def encode(self, frame: pd.DataFrame, source: str = "data") -> tuple[Tensor, Tensor]:
        if not self.is_fitted:
            raise ConfigError(f"task '{self.name}' must be fitted before encoding labels")
        labels, present = self._labels(frame, source)
        index = {c: i for i, c in enumerate(self.classes)}
        codes = np.zeros(len(labels), dtype=np.int64)
        for row in np.flatnonzero(present):
            code = index.get(labels[row])
            if code is None:
                raise DataError(
                    f"{source}: task '{self.name}' column '{self.columns[0]}' row {row + 1} has "
                    f"class {labels[row]!r}, which training never saw (known: {list(self.classes)})"
                )
            codes[row] = code
        return zero_filled(codes, present, self.target_dtype), torch.as_tensor(present)

    target_dtype: ClassVar[torch.dtype] = torch.long


def _binary_f1(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> float:
    return skm.f1_score(y[m], p[m] >= 0.5, zero_division=0.0)


@register_task_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class BinaryTask(_ClassificationTask):
    """Two classes; the head outputs one logit for ``classes[1]``, the positive class.

    The positive class is ``positive`` when given, ``1``/``true``/``yes`` when present, else the
    second class in sorted order.
    """

    positive: str | None = None

    kind: ClassVar[str] = "binary"
    config_options: ClassVar[type[Options]] = BinaryOptions
    target_dtype: ClassVar[torch.dtype] = torch.float32
    losses: ClassVar = {
        "bce": lambda out, y: F.binary_cross_entropy_with_logits(
            out.squeeze(-1), y, reduction="none"
        ),
        "focal": _focal,
    }
    metric_table: ClassVar = {
        "auc": Metric("auc", "higher", lambda y, p, m: skm.roc_auc_score(y[m], p[m])),
        "accuracy": Metric(
            "accuracy", "higher", lambda y, p, m: skm.accuracy_score(y[m], p[m] >= 0.5)
        ),
        "f1": Metric("f1", "higher", _binary_f1),
        "average_precision": Metric(
            "average_precision", "higher", lambda y, p, m: skm.average_precision_score(y[m], p[m])
        ),
        "log_loss": Metric(
            "log_loss", "lower", lambda y, p, m: skm.log_loss(y[m], p[m], labels=[0, 1])
        ),
    }
    default_loss: ClassVar[str] = "bce"
    default_metrics: ClassVar = ("auc", "accuracy")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_single_column()
        if self.positive is not None:
            object.__setattr__(self, "positive", str(self.positive))

    @property
    def output_size(self) -> int:
        return 1

    def _order_classes(self, found: tuple[str, ...], source: str) -> tuple[str, ...]:
        if len(found) != 2:
            what = "only one class" if len(found) == 1 else f"{len(found)} classes"
            hint = "" if len(found) < 2 else "; use type 'multiclass'"
            raise DataError(
                f"{source}: binary task '{self.name}' column '{self.columns[0]}' has {what} "
                f"in the training data ({list(found)}){hint}"
            )
        positive = self.positive
        if positive is None:
            positive = next((c for c in found if c.lower() in {"1", "true", "yes"}), found[1])
        if positive not in found:
            raise DataError(
                f"{source}: binary task '{self.name}': positive class {positive!r} not found "
                f"in column '{self.columns[0]}' (found {list(found)})"
            )
        negative = found[0] if found[1] == positive else found[1]
        return (negative, positive)

    def scores(self, output: Tensor) -> np.ndarray:
        return torch.sigmoid(output.detach().float().squeeze(-1)).cpu().numpy()

    def target_scores(self, target: Tensor) -> np.ndarray:
        return target.detach().cpu().numpy().astype(np.int64)

    def decode(self, output: Tensor) -> dict[str, np.ndarray]:
        prob = self.scores(output)
        labels = np.asarray(self.classes, dtype=object)[(prob >= 0.5).astype(int)]
        return {self.name: labels, f"{self.name}_proba": prob}


def _macro_f1(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> float:
    return skm.f1_score(y[m], p[m].argmax(1), average="macro", zero_division=0.0)


def _multiclass_log_loss(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> float:
    return skm.log_loss(y[m], p[m], labels=list(range(p.shape[1])))


@register_task_type
@dataclasses.dataclass(frozen=True, kw_only=True)
class MulticlassTask(_ClassificationTask):
    """One of several classes; the head outputs one logit per class (softmax)."""

    kind: ClassVar[str] = "multiclass"
    losses: ClassVar = {
        "cross_entropy": lambda out, y: F.cross_entropy(out, y, reduction="none"),
    }
    metric_table: ClassVar = {
        "macro_f1": Metric("macro_f1", "higher", _macro_f1),
        "accuracy": Metric(
            "accuracy", "higher", lambda y, p, m: skm.accuracy_score(y[m], p[m].argmax(1))
        ),
        "micro_f1": Metric(
            "micro_f1",
            "higher",
            lambda y, p, m: skm.f1_score(y[m], p[m].argmax(1), average="micro"),
        ),
        "log_loss": Metric("log_loss", "lower", _multiclass_log_loss),
    }
    default_loss: ClassVar[str] = "cross_entropy"
    default_metrics: ClassVar = ("macro_f1", "accuracy")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_single_column()

    @property
    def output_size(self) -> int:
        if not self.classes:
            raise ConfigError(f"task '{self.name}': classes unknown until the task is fitted")
        return len(self.classes)

    def _order_classes(self, found: tuple[str, ...], source: str) -> tuple[str, ...]:
        if len(found) < 2:
            raise DataError(
                f"{source}: multiclass task '{self.name}' column '{self.columns[0]}' has "
                f"{len(found)} class(es) in the training data; it needs at least 2"
            )
        return found

    def scores(self, output: Tensor) -> np.ndarray:
        return torch.softmax(output.detach().float(), dim=-1).cpu().numpy()

    def decode(self, output: Tensor) -> dict[str, np.ndarray]:
        prob = self.scores(output)
        best = prob.argmax(1)
        return {
            self.name: np.asarray(self.classes, dtype=object)[best],
            f"{self.name}_proba": prob[np.arange(len(best)), best],  # of the predicted class
            **{f"{self.name}.proba.{c}": prob[:, j] for j, c in enumerate(self.classes)},
        }
