"""Architectures by name: ``build_model("mmoe", encoder_factory=..., ..., experts=4)``.

Each architecture registers a pydantic option model (the keys a config's ``model:`` section may
set besides ``arch`` and the common keys) and a builder taking the common :class:`ModelParts`
(:func:`register_architecture`). Unknown names, unknown or missing options, and configurations
an architecture cannot serve raise :class:`~polytask.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from polytask.builtin_options import (
    CGCOptions,
    CrossStitchOptions,
    GroupsOptions,
    HardOptions,
    MMoEOptions,
    MTRLOptions,
    PLEOptions,
    SoftOptions,
    TiedOptions,
)
from polytask.errors import ConfigError, did_you_mean
from polytask.models.base import MultiTaskModel
from polytask.models.cross_stitch import CrossStitch
from polytask.models.groups import GroupSharing
from polytask.models.hard import HardSharing
from polytask.models.mmoe import MMoE
from polytask.models.mtrl import MTRL
from polytask.models.parts import Factory, GateFactory, HeadFactory, check_output_sizes, make_heads
from polytask.models.ple import CGC, PLE
from polytask.models.soft import SoftSharing
from polytask.models.tied import TiedCopies
from polytask.options import ARCHITECTURE_OPTIONS, Options


@dataclass(frozen=True)
class ModelParts:
    """What every architecture is built from: a body factory, its output width, the tasks'
    output sizes, and optional head (tower) and gate factories."""

    encoder_factory: Factory
    encoder_width: int
    output_sizes: Mapping[str, int]
    head_factory: HeadFactory | None = None
    gate_factory: GateFactory | None = None


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
            **dict(options),
        )

    return build


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its option model and its builder."""

    name: str
    options: type[Options]
    build: Callable[[ModelParts, Any], MultiTaskModel]
    summary: str


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    options: type[Options],
    build: Callable[[ModelParts, Any], MultiTaskModel],
    summary: str,
) -> Architecture:
    """Make ``model.arch: <name>`` build ``build(parts, options)``; ``options`` (a subclass of
    :class:`~polytask.options.Options`) declares the keys ``model:`` may set for it."""
    architecture = Architecture(name, options, build, summary)
    ARCHITECTURES[name] = architecture
    ARCHITECTURE_OPTIONS.register(name, options)
    return architecture


register_architecture("hard", HardOptions, _hard, "one shared trunk, one head per task")
register_architecture(
    "soft", SoftOptions, _with_factories(SoftSharing), "one tower per task, L2/trace-norm coupled"
)
register_architecture(
    "tied", TiedOptions, _with_factories(TiedCopies), "per-task copies with chosen layers tied"
)
register_architecture(
    "cross_stitch", CrossStitchOptions, _with_factories(CrossStitch), "cross-stitch columns"
)
register_architecture(
    "mmoe", MMoEOptions, _with_factories(MMoE, gated=True), "experts with one softmax gate per task"
)
register_architecture(
    "cgc", CGCOptions, _with_factories(CGC, gated=True), "shared + task experts, gates"
)
register_architecture(
    "ple", PLEOptions, _with_factories(PLE, gated=True), "stacked CGC levels, shared gates"
)


def _groups(parts: ModelParts, options: Any) -> MultiTaskModel:
    """``groups``; built for one task of its groups (a single-task baseline), that task's group
    cut to it: one trunk. Any other set of tasks must match the groups exactly."""
    groups = options.groups
    names = list(parts.output_sizes)
    if len(names) == 1 and any(names[0] in group for group in groups):
        groups = ((names[0],),)
    return _with_factories(GroupSharing)(parts, {"groups": groups})


register_architecture("groups", GroupsOptions, _groups, "one trunk per group of tasks")
register_architecture(
    "mtrl", MTRLOptions, _with_factories(MTRL), "one tower per task, learned task covariance"
)


def options_for(arch: str) -> type[Options]:
    """The option model of ``arch`` (its fields are what a config may set)."""
    return _lookup(arch).options


def _lookup(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"model.arch: unknown architecture '{arch}'{did_you_mean(arch, ARCHITECTURES)}; "
            f"choose from {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[arch]


def parse_options(arch: str, options: Mapping[str, Any]) -> Options:
    """``options`` validated by ``arch``'s option model; a ConfigError names the first bad key."""
    model = _lookup(arch).options
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        fields = list(model.model_fields)
        if error["type"] == "extra_forbidden":
            raise ConfigError(
                f"model.{key}: '{arch}' has no option '{key}'{did_you_mean(key, fields)}; "
                f"its options are {sorted(fields)}"
            ) from exc
        if error["type"] == "missing":
            raise ConfigError(f"model.{key}: '{arch}' needs option '{key}'") from exc
        raise ConfigError(f"model.{key}: {error['msg']}") from exc


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
    parsed = parse_options(arch, options)
    parts = ModelParts(encoder_factory, encoder_width, output_sizes, head_factory, gate_factory)
    try:
        return spec.build(parts, parsed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model '{arch}': {exc}") from exc
