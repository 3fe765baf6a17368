"""Evaluation: Δm against single-task baselines."""

from polytask.evaluation.delta_m import delta_m, metric_directions, relative_changes

__all__ = ["delta_m", "metric_directions", "relative_changes"]
