"""Architectures by name: ``build_model("mmoe", encoder_factory=..., ..., experts=4)``.

Each architecture has a frozen dataclass of options (the fields a config's ``model:`` section may
set besides ``arch``) and a builder taking the common :class:`ModelParts`. Unknown names, unknown
or missing options, and configurations an architecture cannot serve raise
:class:`~polytask.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from polytask.errors import ConfigError, did_you_mean
from polytask.models.base import MultiTaskModel
from polytask.models.cross_stitch import CrossStitch
from polytask.models.groups import GroupSharing
from polytask.models.hard import HardSharing
from polytask.models.mmoe import MMoE
from polytask.models.parts import Factory, GateFactory, HeadFactory, check_output_sizes, make_heads
from polytask.models.ple import CGC, PLE
from polytask.models.soft import Penalty, SoftSharing
from polytask.models.tied import LayerRef, TiedCopies


@dataclass(frozen=True)
class ModelParts:
    """What every architecture is built from: a body factory, its output width, the tasks'
    output sizes, and optional head (tower) and gate factories."""

    encoder_factory: Factory
    encoder_width: int
    output_sizes: Mapping[str, int]
    head_factory: HeadFactory | None = None
    gate_factory: GateFactory | None = None


@dataclass(frozen=True, kw_only=True)
class HardOptions:
    """Hard sharing has no options."""


@dataclass(frozen=True, kw_only=True)
class SoftOptions:
    penalty: Penalty = "l2"
    strength: float = 1e-3


@dataclass(frozen=True, kw_only=True)
class TiedOptions:
    tied: tuple[LayerRef, ...]


@dataclass(frozen=True, kw_only=True)
class CrossStitchOptions:
    self_weight: float = 0.9


@dataclass(frozen=True, kw_only=True)
class MMoEOptions:
    experts: int = 4


@dataclass(frozen=True, kw_only=True)
class CGCOptions:
    shared_experts: int = 1
    task_experts: int = 1


@dataclass(frozen=True, kw_only=True)
class PLEOptions:
    levels: int = 2
    shared_experts: int = 1
    task_experts: int = 1


@dataclass(frozen=True, kw_only=True)
class GroupsOptions:
    groups: tuple[tuple[str, ...], ...]


def _hard(parts: ModelParts, _: HardOptions) -> MultiTaskModel:
    check_output_sizes(parts.output_sizes)
    heads = make_heads(parts.output_sizes, parts.encoder_width, parts.head_factory)
    return HardSharing(parts.encoder_factory(), dict(heads.items()))


def _with_factories(
    cls: type[MultiTaskModel], gated: bool = False
) -> Callable[..., MultiTaskModel]:
    """Builder for the architectures whose constructor is ``cls(encoder_factory, width,
    output_sizes, *, <options>, head_factory=..., [gate_factory=...])``."""

    def build(parts: ModelParts, options: Any) -> MultiTaskModel:
        extra = {"gate_factory": parts.gate_factory} if gated else {}
        return cls(
            parts.encoder_factory,
            parts.encoder_width,
            parts.output_sizes,
            head_factory=parts.head_factory,
            **extra,
            **{f.name: getattr(options, f.name) for f in dataclasses.fields(options)},
        )

    return build


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its options dataclass and its builder."""

    name: str
    options: type[Any]
    build: Callable[[ModelParts, Any], MultiTaskModel]
    summary: str


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("hard", HardOptions, _hard, "one shared trunk, one head per task"),
        Architecture(
            "soft",
            SoftOptions,
            _with_factories(SoftSharing),
            "one tower per task, L2/trace-norm coupled",
        ),
        Architecture(
            "tied",
            TiedOptions,
            _with_factories(TiedCopies),
            "per-task copies with chosen layers tied",
        ),
        Architecture(
            "cross_stitch",
            CrossStitchOptions,
            _with_factories(CrossStitch),
            "cross-stitch columns",
        ),
        Architecture(
            "mmoe",
            MMoEOptions,
            _with_factories(MMoE, gated=True),
            "experts with one softmax gate per task",
        ),
        Architecture(
            "cgc", CGCOptions, _with_factories(CGC, gated=True), "shared + task experts, gates"
        ),
        Architecture(
            "ple", PLEOptions, _with_factories(PLE, gated=True), "stacked CGC levels, shared gates"
        ),
        Architecture(
            "groups", GroupsOptions, _with_factories(GroupSharing), "one trunk per group of tasks"
        ),
    )
}


def options_for(arch: str) -> type[Any]:
    """The options dataclass of ``arch`` (its fields are what a config may set)."""
    return _lookup(arch).options


def _lookup(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"model.arch: unknown architecture '{arch}'{did_you_mean(arch, ARCHITECTURES)}; "
            f"choose from {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[arch]


def _freeze(value: Any) -> Any:
    """Lists from YAML become tuples, so option dataclasses stay hashable and immutable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def build_model(
    arch: str,
    *,
    encoder_factory: Factory,
    encoder_width: int,
    output_sizes: Mapping[str, int],
    head_factory: HeadFactory | None = None,
    gate_factory: GateFactory | None = None,
    **options: Any,
) -> MultiTaskModel:
    """Build architecture ``arch`` from the given parts and its options (see :func:`options_for`).

    ``gate_factory`` is used by ``mmoe``, ``cgc`` and ``ple`` (first-level gates) and ignored by
    the others.
    """
    spec = _lookup(arch)
    fields = {f.name: f for f in dataclasses.fields(spec.options)}
    for key in options:
        if key not in fields:
            raise ConfigError(
                f"model.{key}: '{arch}' has no option '{key}'{did_you_mean(key, fields)}; "
                f"its options are {sorted(fields)}"
            )
    missing = [
        name
        for name, f in fields.items()
        if name not in options
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"model.{missing[0]}: '{arch}' needs option '{missing[0]}'")
    parts = ModelParts(encoder_factory, encoder_width, output_sizes, head_factory, gate_factory)
    try:
        return spec.build(parts, spec.options(**{k: _freeze(v) for k, v in options.items()}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model '{arch}': {exc}") from exc
