"""The :class:`Tracker` protocol: what an experiment tracker (TensorBoard, MLflow) is told
about one run, and the one-line error for a tracker whose optional extra is not installed.

A tracker sees the run's hyperparameters once (:meth:`Tracker.log_params`), each finished
epoch's scalars and images (:meth:`Tracker.log_epoch`, :meth:`Tracker.log_image`, with the
epoch as the step), and the run's final values and files (:meth:`Tracker.finish`). What the
values are is :mod:`polytask.tracking.values`' business; a tracker only writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from polytask.errors import ConfigError

Param = str | int | float | bool
"""A hyperparameter's value (a flattened config entry)."""


class Tracker(Protocol):
    """Writes one run's values to a tracking backend."""

    name: str

    def log_params(self, params: Mapping[str, Param]) -> None:
        """The run's hyperparameters (the flattened config), once, before the first epoch."""

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        """One finished epoch's scalars, at step ``epoch``."""

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An RGB image (height × width × 3, uint8) at ``step``."""

    def finish(
        self, summary: Mapping[str, float], files: Sequence[Path], *, failed: bool = False
    ) -> None:
        """The run's final values and its files, then close; ``failed``: the training
        failed (``summary`` is empty, ``files`` are what the run folder holds)."""


def missing_extra(extra: str, key: str) -> ConfigError:
    """The error for ``logging.<key>`` when the ``extra``'s packages are not installed."""
    return ConfigError(
        f"logging.{key}: the {extra} extra is not installed; pip install 'polytask[{extra}]'"
    )
