"""Experiment tracking (README, "Tracking"): the run's values, live per epoch, in TensorBoard
event files and in MLflow, with the real libraries (optional extras ``polytask[tensorboard]``
and ``polytask[mlflow]``, imported only when a config asks for them).

:mod:`~polytask.tracking.values` names what is logged; :mod:`~polytask.tracking.base` is the
:class:`Tracker` protocol; :mod:`~polytask.tracking.tensorboard` and
:mod:`~polytask.tracking.mlflow` implement it; :mod:`~polytask.tracking.build` makes them from
the config's ``logging`` section. The experiment (:mod:`polytask.experiment`) feeds them.
"""

from polytask.tracking.base import Tracker
from polytask.tracking.build import Tracking, TrackingSetup, prepare_tracking, run_files

__all__ = ["Tracker", "Tracking", "TrackingSetup", "prepare_tracking", "run_files"]
