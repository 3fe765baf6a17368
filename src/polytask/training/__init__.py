"""Training: the trainer loop, optimizers with per-task learning rates, checkpoints."""

from polytask.training.observers import StepObserver, StepView
from polytask.training.trainer import EarlyStopping, EpochLog, Evaluation, Trainer

__all__ = ["EarlyStopping", "EpochLog", "Evaluation", "StepObserver", "StepView", "Trainer"]
