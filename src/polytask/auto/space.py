"""The search space of ``polytask auto``: what a trial samples, and the config it trains.

A trial's parameters are plain values (optuna stores them); :meth:`SearchSpace.candidate` turns
them and the user's config into the config that trial trains, so a stored trial can always be
trained again (the final stage, ``best.yaml``). A dimension with one value is fixed: it is not a
parameter, so it never dilutes the sampler or the importances.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from polytask.balancers.registry import BALANCERS
from polytask.checks import check_config
from polytask.config import AutoConfig, Config, parse_config
from polytask.errors import ConfigError, did_you_mean
from polytask.options import ARCHITECTURE_OPTIONS

DEFAULT_ARCHS = ("hard", "mmoe", "ple", "cgc", "cross_stitch", "soft", "mtrl", "groups")
"""Searched by default; ``cross_stitch`` and ``soft`` only up to :data:`PER_TASK_COPIES_LIMIT`
tasks, as they hold one network copy per task."""

PER_TASK_COPIES = ("cross_stitch", "soft")
PER_TASK_COPIES_LIMIT = 4

DEFAULT_BALANCERS = (
    "equal", "uw", "dwa", "famo", "db_mtl", "mgda", "pcgrad", "cagrad", "nash_mtl", "upgrad",
    "aligned_mtl", "imtl",
)  # fmt: skip


class Suggester(Protocol):
    """The part of an optuna trial the space uses."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


@dataclass(frozen=True)
class SearchSpace:
    """Candidate architectures, balancers and groupings (JSON labels), and the ranges of the
    learning rate, weight decay (log-uniform), dropout and the trunk's width and depth."""

    archs: tuple[str, ...]
    balancers: tuple[str, ...]
    groupings: tuple[str, ...]
    lr: tuple[float, float]
    weight_decay: tuple[float, float]
    dropout: tuple[float, float]
    width: tuple[int, ...]
    depth: tuple[int, ...]

    def suggest(self, trial: Suggester) -> dict[str, Any]:
        """Sample one point: the values of the dimensions that vary."""
        params: dict[str, Any] = {}

        def choose(name: str, choices: tuple[Any, ...]) -> None:
            if len(choices) > 1:
                params[name] = trial.suggest_categorical(name, choices)

        def draw(name: str, bounds: tuple[float, float], log: bool) -> None:
            if bounds[0] < bounds[1]:
                params[name] = trial.suggest_float(name, *bounds, log=log)

        choose("arch", self.archs)
        if self.value(params, "arch") == "groups":
            choose("grouping", self.groupings)
        choose("balancer", self.balancers)
        draw("lr", self.lr, log=True)
        draw("weight_decay", self.weight_decay, log=True)
        draw("dropout", self.dropout, log=False)
        choose("width", self.width)
        choose("depth", self.depth)
        return params

    def value(self, params: dict[str, Any], name: str) -> Any:
        """A dimension's value in ``params``, or its fixed value."""
        if name in params:
            return params[name]
        fixed = {
            "arch": self.archs[0],
            "grouping": self.groupings[0] if self.groupings else None,
            "balancer": self.balancers[0],
            "lr": self.lr[0],
            "weight_decay": self.weight_decay[0],
            "dropout": self.dropout[0],
            "width": self.width[0],
            "depth": self.depth[0],
        }
        return fixed[name]

    def candidate(self, base: Config, params: dict[str, Any], source: str = "auto") -> Config:
        """``base`` with the sampled architecture, balancer and sizes (checked)."""
        arch = self.value(params, "arch")
        model: dict[str, Any] = {
            "arch": arch,
            "trunk": [self.value(params, "width")] * self.value(params, "depth"),
            "head": list(base.model.head),
            "dropout": self.value(params, "dropout"),
            "encoder": base.model.encoder.model_dump(mode="json"),
        }
        if arch == base.model.arch:  # the user's options of that architecture carry over
            model.update(base.model.options)
        if arch == "groups":
            model["groups"] = json.loads(self.value(params, "grouping"))
        raw = base.model_dump(mode="json")
        raw.pop("auto", None)
        raw["model"] = model
        raw["balancer"] = {"name": self.value(params, "balancer")}
        raw["training"] = {
            **raw["training"],
            "lr": self.value(params, "lr"),
            "weight_decay": self.value(params, "weight_decay"),
        }
        return check_config(parse_config(raw, source=source))

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": list(self.archs),
            "balancer": list(self.balancers),
            "grouping": list(self.groupings),
            "lr": list(self.lr),
            "weight_decay": list(self.weight_decay),
            "dropout": list(self.dropout),
            "width": list(self.width),
            "depth": list(self.depth),
        }


def shown_value(value: object) -> str:
    """A parameter's value as tables show it: floats to 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def shown(params: dict[str, Any]) -> str:
    """Parameters as one line."""
    return ", ".join(f"{name} {shown_value(value)}" for name, value in params.items())


def grouping_label(groups: Sequence[Sequence[str]]) -> str:
    """A grouping as optuna can store it (a JSON string), e.g. ``[["a","b"],["c"]]``."""
    return json.dumps([list(group) for group in groups], separators=(",", ":"))


def default_archs(tasks: int) -> tuple[str, ...]:
    return tuple(
        a for a in DEFAULT_ARCHS if a not in PER_TASK_COPIES or tasks <= PER_TASK_COPIES_LIMIT
    )


def check_auto(auto: AutoConfig, tasks: Sequence[str]) -> None:
    """Raise a ConfigError naming the ``auto`` key of an unknown architecture or balancer, or a
    grouping that is not a partition of the tasks."""
    for i, arch in enumerate(auto.arch or ()):
        if arch not in ARCHITECTURE_OPTIONS:
            raise ConfigError(
                f"auto.arch.{i}: unknown architecture '{arch}'"
                + did_you_mean(arch, ARCHITECTURE_OPTIONS.names())
                + f"; registered: {', '.join(ARCHITECTURE_OPTIONS.names())}"
            )
        if arch == "tied":
            raise ConfigError(
                f"auto.arch.{i}: 'tied' needs the layers to tie (model.tied), which the search "
                "does not choose; train it with polytask train"
            )
    for i, name in enumerate(auto.balancer or ()):
        if name not in BALANCERS:
            raise ConfigError(
                f"auto.balancer.{i}: unknown balancer '{name}'"
                + did_you_mean(name, sorted(BALANCERS))
            )
    for i, grouping in enumerate(auto.groupings or ()):
        named = [task for group in grouping for task in group]
        unknown = sorted(set(named) - set(tasks))
        repeated = sorted({task for task in named if named.count(task) > 1})
        missing = [task for task in tasks if task not in named]
        problem = (
            f"unknown task '{unknown[0]}'"
            if unknown
            else f"task '{repeated[0]}' is in two groups"
            if repeated
            else f"task '{missing[0]}' is in no group"
            if missing
            else "an empty group"
            if any(not group for group in grouping)
            else None
        )
        if problem:
            raise ConfigError(f"auto.groupings.{i}: {problem}; each task belongs to one group")
    if auto.groupings is not None and auto.arch is not None and "groups" not in auto.arch:
        raise ConfigError("auto.groupings: given, but auto.arch does not search 'groups'")


def build_space(
    auto: AutoConfig, tasks: Sequence[str], groupings: Sequence[Sequence[Sequence[str]]]
) -> SearchSpace:
    """The space of ``auto`` (defaults filled in) with candidate ``groupings`` for ``groups``."""
    check_auto(auto, tasks)
    archs = tuple(auto.arch) if auto.arch is not None else default_archs(len(tasks))
    labels = tuple(dict.fromkeys(grouping_label(g) for g in (auto.groupings or groupings)))
    if "groups" in archs and not labels:
        archs = tuple(a for a in archs if a != "groups")
    return SearchSpace(
        archs=archs,
        balancers=tuple(auto.balancer) if auto.balancer is not None else DEFAULT_BALANCERS,
        groupings=labels,
        lr=auto.lr,
        weight_decay=auto.weight_decay,
        dropout=auto.dropout,
        width=tuple(auto.width),
        depth=tuple(auto.depth),
    )
