"""polytask as a scikit-learn estimator: :class:`MultiTaskEstimator`.

``fit(X, Y)`` trains one multi-task network on a feature table ``X`` and a label table ``Y``
with one column per task (NaN or an empty cell: no label for that task on that row). It is
made of the library's own pieces: the config schema checks the parameters, the tasks and the
:class:`~polytask.data.features.FeaturePreprocessor` are fitted and encode the tables as for a
run (:func:`~polytask.data.prepare.encode_frame`), :func:`~polytask.experiment.make_trainer`
builds the model, balancer, optimizer and :class:`~polytask.training.Trainer` that a run uses,
and :func:`~polytask.inference.predict_outputs` predicts. There is no second training loop.

Conventions (scikit-learn's where it has one):

- ``X``: a DataFrame (numeric columns are numeric features, every other column categorical, as
  for a run) or a 2-D array, whose columns are named ``x0``, ``x1``… (object columns holding
  numbers become numeric). Missing feature values are imputed with the training median and an
  indicator, as ``features.missing: impute``.
- ``Y``: a DataFrame (a column per task, named by the task), a Series (its name, else ``y0``)
  or an array (columns ``y0``, ``y1``…). Rows are paired with ``X``'s by position
  (when both tables have an index, it must be the same).
- ``tasks``: ``{column: type}`` with type ``binary``, ``multiclass`` or ``regression``; it must
  name exactly ``Y``'s columns. ``None`` infers each column's type from its labels
  (:func:`infer_task_type`).
- ``predict(X)``: a DataFrame, a column per task: the class label (the values ``Y`` held, e.g.
  ints stay ints) or the value. ``predict_proba(X)``: a dict ``{task: (n, n_classes) array}``
  for the classification tasks only, columns in the order of ``classes_[task]``; a dict keyed by
  name rather than scikit-learn's multi-output list, as regression tasks have no probabilities.
- ``score(X, Y)``: the mean over tasks of the task's score on its labelled rows: accuracy for a
  classification task, R² for a regression task (scikit-learn's classifier and regressor
  ``score``). A task without a label in ``Y`` is left out with a warning.
- ``validation_fraction`` of the rows (drawn with ``random_state``) selects the epoch as in a
  run (validation Δm against the first epoch); ``0`` keeps the last epoch. Task classes, target
  scaling and feature statistics are fitted on all of ``fit``'s rows.
"""

from __future__ import annotations

import contextlib
import numbers
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from polytask.checks import check_config
from polytask.config import parse_config
from polytask.data.features import FeaturePreprocessor, infer_features
from polytask.data.prepare import SHARED, PreparedData, build_task, encode_frame
from polytask.data.splits import random_split
from polytask.errors import ConfigError, DataError
from polytask.experiment import make_trainer
from polytask.inference import predict_outputs
from polytask.tasks import BinaryTask, RegressionTask
from polytask.tasks.base import label_strings

ESTIMATOR_TASK_TYPES = ("binary", "multiclass", "regression")
"""The task types :class:`MultiTaskEstimator` takes (one ``Y`` column per task)."""

MAX_INFERRED_CLASSES = 20
"""A numeric column of whole numbers with at most this many distinct values is ``multiclass``
when its type is inferred; with more it is ``regression``."""


class EstimatorDataError(DataError, ValueError):
    """Bad ``X`` or ``Y``: a :class:`~polytask.errors.DataError` that scikit-learn, which
    expects a ValueError, recognises too."""


class EstimatorParameterError(ConfigError, ValueError):
    """A bad constructor parameter, found by ``fit``: a ConfigError and a ValueError."""


def infer_task_type(labels: pd.Series) -> str:
    """The task type of a ``Y`` column, from its labelled values: two distinct values are
    ``binary``; more are ``multiclass``, unless the column is numeric and either holds a
    non-integer or more than :data:`MAX_INFERRED_CLASSES` distinct values, then it is
    ``regression``. (A numeric column with one value is ``binary`` and fails as such.)"""
    strings, present = label_strings(labels)
    distinct = len(set(strings[present]))
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if distinct <= 2 or not numeric:
        return "binary" if distinct <= 2 else "multiclass"
    values = labels.to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[~np.isnan(values)]
    whole = bool(np.all(np.isfinite(values) & (values == np.round(values))))
    return "multiclass" if whole and distinct <= MAX_INFERRED_CLASSES else "regression"


class MultiTaskEstimator(BaseEstimator):
    """A multi-task network as a scikit-learn estimator (module docstring: conventions).

    ``arch``, ``balancer``, ``trunk``, ``head`` and ``dropout`` are the config's ``model.arch``,
    ``balancer.name`` and ``model`` sizes; ``epochs``, ``batch_size``, ``lr``,
    ``weight_decay`` and ``device`` (``cpu``, ``auto``, ``cuda``…) its ``training``;
    ``random_state`` (an int, a ``RandomState`` or None) seeds the weights, the batches and the
    validation rows.

    Fitted attributes: ``task_names_`` (``Y``'s columns), ``task_types_``, ``classes_``
    (``{task: array}`` of the classification tasks), ``tasks_`` (the fitted
    :class:`~polytask.tasks.Task` objects), ``preprocessor_``, ``model_``, ``history_`` (the
    trainer's epoch logs), ``best_epoch_``, ``n_features_in_`` and, for a DataFrame ``X`` with
    string column names, ``feature_names_in_``."""

    def __init__(
        self,
        tasks: Mapping[str, str] | None = None,
        arch: str = "hard",
        balancer: str = "equal",
        trunk: tuple[int, ...] = (256, 128),
        head: tuple[int, ...] = (64,),
        dropout: float = 0.1,
        epochs: int = 10,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.1,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.tasks = tasks
        self.arch = arch
        self.balancer = balancer
        self.trunk = trunk
        self.head = head
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.target_tags.two_d_labels = True
        tags.input_tags.allow_nan = True  # imputed (module docstring)
        tags.input_tags.categorical = True
        return tags

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> MultiTaskEstimator:
        """Train on ``X`` and the label table ``y`` (the module docstring's ``Y``; NaN: a
        missing label); a new fit forgets the last one."""
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_")]:
            delattr(self, name)  # a failed refit leaves no model of an earlier fit behind
        features = self._features(X, fitting=True)
        labels = _targets(y, None)
        _check_rows(X, y, len(features), len(labels))
        clash = [c for c in labels.columns if c in features.columns]
        if clash:
            raise EstimatorDataError(
                f"Y column '{clash[0]}' is also a column of X; rename one of them"
            )
        types = self._task_types(labels)
        seed = self._seed()
        config = self._config(types, seed)
        with _as_value_errors():
            numeric, categorical = infer_features(features, [])
            encoder = FeaturePreprocessor(numeric, categorical, missing="impute")
            encoder.fit(features, "X")
            tasks = [build_task(spec).fit(labels, "Y") for spec in config.tasks]
            data = encode_frame(pd.concat([features, labels], axis=1), tasks, encoder, "fit")
            train, validation = data, None
            if self.validation_fraction > 0:
                split = random_split(
                    len(data), validation=self.validation_fraction, test=0.0, seed=seed
                )
                if split["validation"].size and split["train"].size:
                    train = data.subset(torch.as_tensor(split["train"]))
                    validation = data.subset(torch.as_tensor(split["validation"]))
            selection = validation if validation is not None else train
            prepared = PreparedData(tasks, encoder, {SHARED: train}, selection, None)
            trainer = make_trainer(
                config, prepared, tasks, reference=None, progress=False, label="estimator",
                checkpoint_dir=None,
            )  # fmt: skip
            self.history_ = trainer.fit(train, validation)
        self.best_epoch_ = trainer.best_epoch or len(self.history_)
        self.n_features_in_ = features.shape[1]
        if _has_names(X):
            self.feature_names_in_ = np.asarray(features.columns, dtype=object)
        self.model_ = trainer.model
        self.tasks_ = tasks
        self.preprocessor_ = encoder
        self.task_names_ = list(labels.columns)
        self.task_types_ = types
        self.classes_ = {
            task.name: _original_classes(labels[task.name], task.classes)
            for task in tasks
            if not isinstance(task, RegressionTask)
        }
        return self

    def _task_types(self, labels: pd.DataFrame) -> dict[str, str]:
        for column in labels.columns:
            if not label_strings(labels[column])[1].any():
                raise EstimatorDataError(
                    f"Y column '{column}' has no label at all (every row is missing); "
                    "drop the column or give it labels"
                )
        if self.tasks is None:
            return {c: infer_task_type(labels[c]) for c in labels.columns}
        if not isinstance(self.tasks, Mapping):
            raise EstimatorParameterError(
                f"tasks: expected a mapping of Y column to task type, got {self.tasks!r}"
            )
        declared = {str(k): v for k, v in self.tasks.items()}
        _require_same_columns(
            list(declared), list(labels.columns), "the tasks parameter names", "Y"
        )
        for name, kind in declared.items():
            if kind not in ESTIMATOR_TASK_TYPES:
                raise EstimatorParameterError(
                    f"tasks: '{name}' has type {kind!r}; choose one of "
                    f"{list(ESTIMATOR_TASK_TYPES)} (a multilabel task is one binary column "
                    "per label)"
                )
        return {c: declared[c] for c in labels.columns}

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral) and not isinstance(
            self.random_state, bool
        ):
            return int(self.random_state)
        try:
            return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        except ValueError as exc:
            raise EstimatorParameterError(f"random_state: {exc}") from exc

    def _config(self, types: dict[str, str], seed: int) -> Any:
        if not (isinstance(self.validation_fraction, numbers.Real) and
                0 <= self.validation_fraction < 1):  # fmt: skip
            raise EstimatorParameterError(
                f"validation_fraction: {self.validation_fraction!r} must lie in [0, 1)"
            )
        raw = {
            "data": {"source": "X"},  # a name only: the tables are fit's, never read from it
            "tasks": [{"name": name, "type": kind} for name, kind in types.items()],
            "model": {
                "arch": self.arch,
                "trunk": _sizes(self.trunk),
                "head": _sizes(self.head),
                "dropout": self.dropout,
            },
            "training": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "seed": seed,
                "device": self.device,
            },
            "balancer": {"name": self.balancer},
        }
        try:
            return check_config(parse_config(raw, source=type(self).__name__))
        except ConfigError as exc:
            message = str(exc)
            for key, parameter in _PARAMETERS.items():  # the estimator's names first
                message = re.sub(rf"(?<![\w.]){re.escape(key)}\b", f"{parameter} ({key})", message)
            prefix = f"{type(self).__name__}: "
            raise EstimatorParameterError(prefix + message.removeprefix(prefix)) from exc

    # -- using the fitted model ------------------------------------------------------------
    def predict(self, X: Any) -> pd.DataFrame:
        """A column per task, in ``Y``'s order: the predicted class (one of ``classes_``) or
        value, with ``X``'s index when ``X`` is a DataFrame."""
        check_is_fitted(self, "model_")
        scores, index = self._scores(X)
        columns: dict[str, Any] = {}
        for task in self.tasks_:
            score = scores[task.name]
            if isinstance(task, RegressionTask):
                columns[task.name] = score[:, 0]
            elif isinstance(task, BinaryTask):  # the positive class at p >= 0.5, as decode
                columns[task.name] = self.classes_[task.name][(score >= 0.5).astype(int)]
            else:
                columns[task.name] = self.classes_[task.name][score.argmax(1)]
        return pd.DataFrame(columns, index=index)

    def predict_proba(self, X: Any) -> dict[str, np.ndarray]:
        """``{task: (n_rows, n_classes)}`` for every classification task, columns in the order
        of ``classes_[task]`` (rows sum to 1); regression tasks have none."""
        check_is_fitted(self, "model_")
        scores, _ = self._scores(X)
        probabilities = {}
        for task in self.tasks_:
            if isinstance(task, BinaryTask):
                positive = scores[task.name]
                probabilities[task.name] = np.column_stack([1 - positive, positive])
            elif not isinstance(task, RegressionTask):
                probabilities[task.name] = scores[task.name]
        return probabilities

    def score(self, X: Any, y: Any) -> float:
        """Mean over tasks of accuracy (classification) or R² (regression) on each task's
        labelled rows of ``Y``, whose columns must be the fitted tasks (any order)."""
        check_is_fitted(self, "model_")
        labels = _targets(y, self.task_names_)
        _require_same_columns(
            self.task_names_, list(labels.columns), "the estimator was fitted on tasks", "Y"
        )
        predicted = self.predict(X)
        _check_rows(X, y, len(predicted), len(labels))
        values, unlabelled = [], []
        for task in self.tasks_:
            true, present = label_strings(labels[task.name])
            if not present.any():
                unlabelled.append(task.name)
                continue
            guess = predicted[task.name].to_numpy()[present]
            if isinstance(task, RegressionTask):
                with _as_value_errors():
                    target = _numeric(labels[task.name], task.name)[present]
                values.append(r2_score(target, guess))
            else:
                values.append(accuracy_score(true[present], label_strings(pd.Series(guess))[0]))
        if unlabelled:
            if not values:
                raise EstimatorDataError("Y has no label for any task; nothing to score")
            warnings.warn(
                f"score: Y has no label for task(s) {', '.join(unlabelled)}; the score is the "
                "mean over the other tasks",
                UserWarning,
                stacklevel=2,
            )
        return float(np.mean(values))

    def _scores(self, X: Any) -> tuple[dict[str, np.ndarray], pd.Index]:
        """Each task's probabilities or values for the rows of ``X``, and ``X``'s index."""
        index = X.index if isinstance(X, pd.DataFrame) else None
        features = self._features(X, fitting=False)
        with _as_value_errors():
            data = encode_frame(features, self.tasks_, self.preprocessor_, "X")
        outputs = predict_outputs(self.model_, self.tasks_, data)
        scores = {task.name: task.scores(outputs[task.name]) for task in self.tasks_}
        return scores, index if index is not None else pd.RangeIndex(len(features))

    def _features(self, X: Any, *, fitting: bool) -> pd.DataFrame:
        """``X`` as a frame with a 0..n-1 index and the fitted column names; checks its
        columns against fit's."""
        if X is None:
            raise EstimatorDataError(f"{type(self).__name__} needs X; got None")
        named = _has_names(X)
        if named:
            frame = X.reset_index(drop=True)
        else:
            if hasattr(X, "toarray") or hasattr(X, "tocsr"):
                raise EstimatorDataError(
                    f"{type(self).__name__} takes a dense X (a DataFrame or an array), not a "
                    "sparse matrix; call X.toarray() first"
                )
            values = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X)
            if values.ndim != 2:
                raise EstimatorDataError(
                    f"X must be 2-D (rows × features), got an array of shape {values.shape}. "
                    "Reshape your data: X.reshape(-1, 1) for a single feature, "
                    "X.reshape(1, -1) for a single row"
                )
            if values.dtype.kind == "c":
                raise EstimatorDataError("Complex data not supported: X holds complex numbers")
            frame = pd.DataFrame(values).infer_objects()
        _check_cells(frame)
        if fitting:
            if frame.shape[1] == 0:
                raise EstimatorDataError(
                    f"0 feature(s) (shape={frame.shape}) while a minimum of 1 is required."
                )
            if len(frame) == 0:
                raise EstimatorDataError(
                    f"0 sample(s) (shape={frame.shape}) while a minimum of 1 is required."
                )
            if not named:
                frame.columns = [f"x{j}" for j in range(frame.shape[1])]
            return frame
        names = [str(c) for c in getattr(self, "feature_names_in_", [])]
        if named and names:
            _require_same_columns(names, list(frame.columns), "the estimator was fitted on", "X")
            return frame[names]
        if frame.shape[1] != self.n_features_in_:
            raise EstimatorDataError(
                f"X has {frame.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        frame.columns = names or [f"x{j}" for j in range(frame.shape[1])]  # by position
        return frame


_PARAMETERS = {
    "model.arch": "arch",
    "model.trunk": "trunk",
    "model.head": "head",
    "model.dropout": "dropout",
    "training.epochs": "epochs",
    "training.batch_size": "batch_size",
    "training.lr": "lr",
    "training.weight_decay": "weight_decay",
    "training.device": "device",
    "balancer.name": "balancer",
}
"""The config key of each constructor parameter, for error messages."""


def _check_rows(X: Any, Y: Any, n_features: int, n_labels: int) -> None:
    """Rows are paired by position: the counts must match, and so must the indexes when both
    tables have one (a Y sorted differently from X would pair the wrong rows)."""
    if n_features != n_labels:
        raise EstimatorDataError(f"X has {n_features} rows but Y has {n_labels}; they must match")
    indexes = [getattr(t, "index", None) for t in (X, Y) if isinstance(t, pd.DataFrame | pd.Series)]
    if len(indexes) == 2 and not indexes[0].equals(indexes[1]):
        row = int(np.flatnonzero(indexes[0].to_numpy() != indexes[1].to_numpy())[0])
        raise EstimatorDataError(
            f"X and Y have different row indexes (position {row}: {indexes[0][row]!r} in X, "
            f"{indexes[1][row]!r} in Y); rows are paired by position, so align them first "
            "(Y.loc[X.index])"
        )


def _has_names(X: Any) -> bool:
    """Whether ``X`` is a DataFrame whose columns are all strings (its names are kept)."""
    return isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in X.columns)


def _check_cells(frame: pd.DataFrame) -> None:
    """A TypeError naming the first cell of an object column that is neither a string, a
    number, a boolean nor missing (a dict, a list…): it has no meaning as a feature."""
    for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
        for row, value in enumerate(frame[column].to_numpy()):
            if value is None or value is pd.NA or isinstance(value, str | numbers.Number):
                continue
            raise TypeError(
                f"X column '{column}' row {row + 1} holds a {type(value).__name__}; a feature "
                "argument must be a string or a number"
            )


def _targets(Y: Any, names: list[str] | None) -> pd.DataFrame:
    """``Y`` as a frame with a 0..n-1 index and string column names: a DataFrame keeps its
    names; a Series its name (else ``y0``); an array's columns are ``names`` when given (a
    fitted estimator's tasks, by position), else ``y0``, ``y1``…"""
    if Y is None:
        raise EstimatorDataError(
            "MultiTaskEstimator requires y to be passed, but the target y is None "
            "(Y: a column of labels per task)"
        )
    if isinstance(Y, pd.DataFrame):
        frame = Y.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
    elif isinstance(Y, pd.Series):
        frame = Y.reset_index(drop=True).to_frame(str(Y.name) if Y.name is not None else "y0")
    else:
        values = np.asarray(Y)
        if values.ndim == 1:
            values = values.reshape(-1, 1)
        if values.ndim != 2:
            raise EstimatorDataError(f"Y must be 1-D or 2-D, got shape {values.shape}")
        frame = pd.DataFrame(values).infer_objects()
        width = values.shape[1]
        frame.columns = names if names and len(names) == width else [f"y{j}" for j in range(width)]
    if frame.shape[1] == 0:
        raise EstimatorDataError("Y has no column; it needs one column per task")
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise EstimatorDataError(f"Y has two columns named '{repeated[0]}'")
    return frame


def _require_same_columns(expected: list[str], found: list[str], what: str, subject: str) -> None:
    """A ValueError when ``found`` (``subject``'s columns) is not the set ``expected``, naming
    the missing and the unexpected columns."""
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or extra:
        parts = [f"{subject} has columns {found}, but {what} {expected}"]
        if missing:
            parts.append(f"missing: {', '.join(repr(c) for c in missing)}")
        if extra:
            parts.append(f"not expected: {', '.join(repr(c) for c in extra)}")
        raise EstimatorDataError("; ".join(parts))


def _original_classes(labels: pd.Series, classes: tuple[str, ...]) -> np.ndarray:
    """The task's classes as ``Y`` held them (ints stay ints), in the task's order."""
    strings, present = label_strings(labels)
    original: dict[str, Any] = {}
    for text, value in zip(strings[present], labels.to_numpy(dtype=object)[present], strict=True):
        original.setdefault(text, value.item() if isinstance(value, np.generic) else value)
    values = [original[c] for c in classes]
    array = np.asarray(values)
    return array if array.dtype.kind in "biuf" else np.asarray(values, dtype=object)


def _numeric(labels: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(label_strings(labels)[1] & np.isnan(values))
    if bad.size:
        raise EstimatorDataError(
            f"Y column '{name}' row {int(bad[0]) + 1} holds {labels.iloc[int(bad[0])]!r}; a "
            "regression task's labels are numbers"
        )
    return values


def _sizes(value: Any) -> Any:
    """Layer widths as a list for the config (a bare int is one layer)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)]
    return list(value) if isinstance(value, tuple | list) else value


@contextlib.contextmanager
def _as_value_errors() -> Iterator[None]:
    """Re-raise polytask's DataError and ConfigError as their estimator forms (ValueErrors);
    a diverged training (a RunError) stays what it is."""
    try:
        yield
    except ConfigError as exc:
        if isinstance(exc, ValueError):
            raise
        raise EstimatorParameterError(str(exc)) from exc
    except DataError as exc:
        if isinstance(exc, ValueError):
            raise
        raise EstimatorDataError(str(exc)) from exc


__all__ = [
    "ESTIMATOR_TASK_TYPES",
    "MAX_INFERRED_CLASSES",
    "EstimatorDataError",
    "EstimatorParameterError",
    "MultiTaskEstimator",
    "infer_task_type",
]
