"""polytask: multi-task learning on PyTorch.

One shared model for several related prediction tasks, trained with a balanced joint loss and
always compared with single-task baselines trained on the same budget (Δm%).

The public names are imported when first used (PEP 562), so ``import polytask`` and the command
line's config checks do not load torch, scikit-learn or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "BALANCERS": "polytask.balancers",
    "Balancer": "polytask.balancers",
    "build_balancer": "polytask.balancers",
    "Config": "polytask.config",
    "load_config": "polytask.config",
    "parse_config": "polytask.config",
    "Batch": "polytask.data",
    "MultiTaskData": "polytask.data",
    "prepare_data": "polytask.data",
    "ConfigError": "polytask.errors",
    "DataError": "polytask.errors",
    "PolytaskError": "polytask.errors",
    "RunError": "polytask.errors",
    "delta_m": "polytask.evaluation",
    "run_experiment": "polytask.experiment",
    "HardSharing": "polytask.models",
    "MultiTaskModel": "polytask.models",
    "TabularEncoder": "polytask.models",
    "build_model": "polytask.models",
    "load_run": "polytask.predict",
    "BinaryTask": "polytask.tasks",
    "MulticlassTask": "polytask.tasks",
    "MultilabelTask": "polytask.tasks",
    "RegressionTask": "polytask.tasks",
    "Task": "polytask.tasks",
    "EarlyStopping": "polytask.training",
    "Trainer": "polytask.training",
}
"""Each public name and the module it comes from."""

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

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'polytask' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
