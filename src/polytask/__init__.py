"""polytask: multi-task learning on PyTorch.

One shared model for several related prediction tasks, trained with a balanced joint loss and
always compared with single-task baselines trained on the same budget (Δm%).
"""

from polytask.balancers import BALANCERS, Balancer, build_balancer
from polytask.config import Config, load_config, parse_config
from polytask.data import Batch, MultiTaskData, prepare_data
from polytask.errors import ConfigError, DataError, PolytaskError, RunError
from polytask.evaluation import delta_m
from polytask.experiment import run_experiment
from polytask.models import HardSharing, MultiTaskModel, TabularEncoder, build_model
from polytask.predict import load_run
from polytask.tasks import BinaryTask, MulticlassTask, MultilabelTask, RegressionTask, Task
from polytask.training import EarlyStopping, Trainer

__version__ = "0.1.0"

__all__ = [
    "BALANCERS",
    "Balancer",
    "Batch",
    "BinaryTask",
    "Config",
    "ConfigError",
    "DataError",
    "EarlyStopping",
    "HardSharing",
    "MultiTaskData",
    "MultiTaskModel",
    "MulticlassTask",
    "MultilabelTask",
    "PolytaskError",
    "RegressionTask",
    "RunError",
    "TabularEncoder",
    "Task",
    "Trainer",
    "build_balancer",
    "build_model",
    "delta_m",
    "load_config",
    "load_run",
    "parse_config",
    "prepare_data",
    "run_experiment",
]
