"""``polytask auto``: choose the architecture, balancer, task groups and learning rate by
experiment (an optuna study on validation Δm), then retrain the best on several seeds.
Needs the ``auto`` extra (optuna)."""

from polytask.auto.run import AutoOptions, AutoResult, run_auto

__all__ = ["AutoOptions", "AutoResult", "run_auto"]
