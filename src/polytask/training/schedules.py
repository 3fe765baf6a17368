"""Learning-rate schedules per parameter group, stepped once per epoch after validation.

The optimizer has one parameter group per task's own parameters (see
:func:`polytask.training.optim.parameter_groups`), and each group may follow its own schedule.
torch's schedulers adjust every group of the optimizer they are given, so each group's scheduler
is given a :class:`GroupView`: an optimizer-like view holding that one group. The schedulers are
torch's own (``ReduceLROnPlateau``, ``CosineAnnealingLR``, ``StepLR``; a warm-up is ``LinearLR``
followed by the schedule through ``SequentialLR``), so each group's learning rate is exactly what
torch computes for an optimizer with that group alone.

What a plateau schedule monitors: a task's own group, that task's validation loss (lower is
better, ``threshold`` relative, as torch's default); any other group (the shared parameters, the
balancer's, the head of a task without a schedule of its own), the validation score of model
selection (Δm in points, higher is better, ``threshold`` absolute, as the score can be 0 or
negative). An epoch whose monitored value is undefined (NaN: no labelled validation rows, an
unscored epoch) leaves that schedule as it was. A plateau schedule counts epochs after its
warm-up (``SequentialLR`` does not take ``ReduceLROnPlateau``, so the warm-up runs first here).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

from polytask.config import CosineSchedule, LrScheduleConfig, PlateauSchedule, StepSchedule
from polytask.errors import RunError


class GroupView(torch.optim.Optimizer):
    """Parameter group ``index`` of ``optimizer``, seen as an optimizer with that group alone.

    It reads the group through the optimizer at every access, so it follows
    ``optimizer.load_state_dict`` (which replaces the group dicts). It is never stepped: the
    optimizer is, before each scheduler step."""

    def __init__(self, optimizer: torch.optim.Optimizer, index: int) -> None:
        # no Optimizer.__init__: the view owns no parameters and no state
        self.optimizer = optimizer
        self.index = index
        self.defaults = optimizer.defaults
        self.state: Any = {}
        self._opt_called = True  # torch's check that optimizer.step ran before scheduler.step

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        return [self.optimizer.param_groups[self.index]]

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        raise RuntimeError("a GroupView is not stepped; step the optimizer it views")


class GroupSchedule:
    """The schedule of one parameter group: ``spec``'s optional warm-up, then its torch
    scheduler. ``maximize``: a plateau schedule's monitored value is better when higher (and its
    threshold absolute); ``epochs``: the training epochs (a cosine's default length)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        index: int,
        spec: LrScheduleConfig,
        *,
        epochs: int,
        maximize: bool,
    ) -> None:
        view = GroupView(optimizer, index)
        self.spec = spec
        self.warmup: LinearLR | None = None
        self.scheduler: LRScheduler
        if isinstance(spec, PlateauSchedule):
            self.scheduler = ReduceLROnPlateau(
                view,
                mode="max" if maximize else "min",
                factor=spec.factor,
                patience=spec.patience,
                threshold=spec.threshold,
                threshold_mode="abs" if maximize else "rel",
                cooldown=spec.cooldown,
                min_lr=spec.min_lr,
            )
            if spec.warmup:
                self.warmup = _linear_warmup(view, spec)
            return
        main: LRScheduler
        if isinstance(spec, CosineSchedule):
            length = spec.epochs or max(1, epochs - spec.warmup)
            main = CosineAnnealingLR(view, T_max=length, eta_min=spec.min_lr)
        elif isinstance(spec, StepSchedule):
            main = StepLR(view, step_size=spec.step_size, gamma=spec.gamma)
        else:
            raise TypeError(f"unknown learning-rate schedule {spec!r}")
        if spec.warmup:
            self.scheduler = SequentialLR(
                view, [_linear_warmup(view, spec), main], milestones=[spec.warmup]
            )
        else:
            self.scheduler = main

    def step(self, value: float) -> bool:
        """End of an epoch; ``value`` is what a plateau schedule monitors. False when it is
        undefined (NaN) and the plateau, unable to judge the epoch, did nothing."""
        if self.warmup is not None and self.warmup.last_epoch < self.spec.warmup:
            self.warmup.step()
        elif isinstance(self.scheduler, ReduceLROnPlateau):
            if not math.isfinite(value):
                return False
            self.scheduler.step(value)
        else:
            # older torch: SequentialLR steps the next scheduler with an epoch at its milestone
            # (the closed form, the same value) and warns that the argument is deprecated
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The epoch parameter", UserWarning)
                self.scheduler.step()
        return True

    def state_dict(self) -> dict[str, Any]:
        warmup = None if self.warmup is None else self.warmup.state_dict()
        return {"scheduler": self.scheduler.state_dict(), "warmup": warmup}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        if self.warmup is not None:
            self.warmup.load_state_dict(dict(state["warmup"]))


def _linear_warmup(view: GroupView, spec: LrScheduleConfig) -> LinearLR:
    return LinearLR(view, start_factor=spec.warmup_start, end_factor=1.0, total_iters=spec.warmup)


class LrSchedules:
    """The schedules of an optimizer's parameter groups, by group name (``schedules``); a group
    named after one of ``tasks`` monitors that task's validation loss, any other the validation
    score (see the module's docstring). Groups without a schedule keep their learning rate."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedules: Mapping[str, LrScheduleConfig],
        *,
        epochs: int,
        tasks: Collection[str],
    ) -> None:
        names = group_names(optimizer)
        self._tasks = set(tasks)
        self._warned: set[str] = set()
        self._groups: dict[str, GroupSchedule] = {}
        for name, spec in schedules.items():
            if names.count(name) != 1:
                problem = "no parameter group" if name not in names else "several parameter groups"
                raise ValueError(
                    f"a learning-rate schedule for '{name}', but the optimizer has {problem} "
                    f"named so (its groups: {', '.join(names)})"
                )
            self._groups[name] = GroupSchedule(
                optimizer, names.index(name), spec, epochs=epochs, maximize=name not in tasks
            )

    @property
    def needs_validation(self) -> bool:
        """Whether a plateau schedule needs validation data to decide."""
        return any(isinstance(g.spec, PlateauSchedule) for g in self._groups.values())

    def step(self, val_loss: Mapping[str, float], score: float) -> None:
        """End of an epoch: each task's group sees its validation loss, any other the score."""
        for name, group in self._groups.items():
            task = name in self._tasks
            what = f"validation loss of task '{name}'" if task else "validation score"
            decided = group.step(val_loss.get(name, math.nan) if task else score)
            if not decided and what not in self._warned:  # once per monitored value
                self._warned.add(what)
                warnings.warn(
                    f"a plateau learning-rate schedule watches the {what}, which is undefined "
                    "(no labelled validation rows?); it leaves the learning rate as it is",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def state_dict(self) -> dict[str, Any]:
        return {name: group.state_dict() for name, group in self._groups.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore every group's schedule; a checkpoint with other schedules is a RunError."""
        if set(state) != set(self._groups):
            raise RunError(
                "the checkpoint has learning-rate schedules for "
                f"[{', '.join(sorted(state))}], this run for [{', '.join(sorted(self._groups))}]; "
                "resume it with the config it was started with"
            )
        for name, group in self._groups.items():
            group.load_state_dict(state[name])


def group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """Each parameter group's ``name`` (``group <i>`` for an unnamed one)."""
    return [str(g.get("name", f"group {i}")) for i, g in enumerate(optimizer.param_groups)]


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The current learning rate of each parameter group, by group name."""
    groups = optimizer.param_groups
    return {name: float(g["lr"]) for name, g in zip(group_names(optimizer), groups, strict=True)}


def schedules_by_group(
    groups: Sequence[str],
    run: LrScheduleConfig | None,
    tasks: Mapping[str, LrScheduleConfig | None],
) -> dict[str, LrScheduleConfig]:
    """Each group's schedule: a task's own (``tasks``: task name → schedule) for that task's
    group, the run-level ``run`` for every other group. A task with a schedule but no group of
    its own (its architecture gives it no parameters of its own), or a scheduled group whose name
    is not unique, is a ValueError."""
    own = {task: spec for task, spec in tasks.items() if spec is not None}
    for task in own:
        if task not in groups:
            raise ValueError(
                f"task '{task}' has no parameters of its own to schedule (the optimizer's "
                f"groups: {', '.join(groups)})"
            )
    chosen = {name: own.get(name, run) for name in groups}
    chosen = {name: spec for name, spec in chosen.items() if spec is not None}
    twice = [name for name in chosen if list(groups).count(name) > 1]
    if twice:
        raise ValueError(
            f"two parameter groups are named '{twice[0]}' (a task named like the shared or the "
            "balancer's group?); rename the task to give it a schedule"
        )
    return chosen
