"""Evaluation: Δm against single-task baselines."""

from polytask.evaluation.delta_m import delta_m, relative_changes

__all__ = ["delta_m", "relative_changes"]
