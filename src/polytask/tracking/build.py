"""The trackers a config asks for (``logging:``), in two steps: :func:`prepare_tracking`
checks them before anything is written (a missing extra, an MLflow store that cannot be
reached: one ConfigError), :meth:`TrackingSetup.start` opens them on the run folder.

A tracker that fails once the run has started (a server gone mid-run) is dropped with a
warning: the training goes on, and the run folder keeps everything (``metrics.json`` is what
counts); only the tracked copy stops.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.config import Config
from polytask.tracking.base import Param, Tracker
from polytask.tracking.mlflow import MlflowTarget, MlflowTracker, mlflow_target
from polytask.tracking.tensorboard import FOLDER, TensorBoardTracker, require_tensorboard

DEFAULT_EXPERIMENT = "polytask"
"""The MLflow experiment of a config without a ``name``."""


@dataclass(frozen=True)
class TrackingSetup:
    """The checked trackers of a config, not yet opened on a run."""

    tensorboard: bool = False
    mlflow: MlflowTarget | None = None

    def start(self, run_dir: Path, *, resume: bool = False) -> Tracking:
        """Open the trackers on ``run_dir`` (``resume``: continue its MLflow run); one that
        fails to open is left out with a warning, as if it had failed mid-run."""
        openers: list[tuple[str, Callable[[], Tracker]]] = []
        if self.tensorboard:
            openers.append(("tensorboard", lambda: TensorBoardTracker(Path(run_dir) / FOLDER)))
        if self.mlflow is not None:
            target = self.mlflow
            openers.append(("mlflow", lambda: MlflowTracker(target, Path(run_dir), resume=resume)))
        trackers: list[Tracker] = []
        for name, opener in openers:
            try:
                trackers.append(opener())
            except Exception as exc:  # the training goes on; the run folder keeps it all
                _dropped(name, exc)
        return Tracking(trackers)


def prepare_tracking(config: Config) -> TrackingSetup:
    """Check the trackers ``config.logging`` asks for: their extras are installed and the
    MLflow experiment is found or created (ConfigError otherwise)."""
    logging = config.logging
    if logging.tensorboard:
        require_tensorboard()
    target = None
    if logging.mlflow is not None:
        experiment = config.name or DEFAULT_EXPERIMENT
        target = mlflow_target(logging.mlflow, Path(config.output_dir), experiment)
    return TrackingSetup(logging.tensorboard, target)


class Tracking:
    """The open trackers of one run; each call goes to every one. A tracker that raises is
    dropped with a warning naming it (module docstring)."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self.trackers = list(trackers)

    def log_params(self, params: Mapping[str, Param]) -> None:
        self._each(lambda tracker: tracker.log_params(params))

    def log_epoch(
        self, epoch: int, scalars: Mapping[str, float], images: Mapping[str, np.ndarray]
    ) -> None:
        def log(tracker: Tracker) -> None:
            tracker.log_epoch(epoch, scalars)
            for tag, image in images.items():
                tracker.log_image(tag, image, epoch)

        self._each(log)

    def finish(
        self, summary: Mapping[str, float], files: Sequence[Path], *, failed: bool = False
    ) -> None:
        self._each(lambda tracker: tracker.finish(summary, files, failed=failed))
        self.trackers = []

    def _each(self, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:  # the training goes on; the run folder keeps it all
                self.trackers.remove(tracker)
                _dropped(tracker.name, exc)


def _dropped(name: str, exc: Exception) -> None:
    reason = " ".join(str(exc).split())
    warnings.warn(
        f"tracking: {name} failed ({type(exc).__name__}: {reason}); it logs nothing more for "
        "this run (the run folder has everything)",
        RuntimeWarning,
        stacklevel=4,
    )


def run_files(folder: Path) -> list[Path]:
    """The files of a run folder logged as artifacts: the top-level files (weights, plots,
    config, data, metrics), not the checkpoints, the event files or the lock."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
