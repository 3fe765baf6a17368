"""Methods addressed by name: :data:`BALANCERS`, :func:`register_balancer` and
:func:`build_balancer`, which composes a Gramian weighting with the engine and the wrappers."""

from __future__ import annotations

import functools
import inspect
import reprlib
import typing
from collections.abc import Callable, Mapping, Sequence
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Strict,
    ValidationError,
    create_model,
)

from polytask.balancers.base import Balancer
from polytask.balancers.engine import Mode
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.weighting import GramianBalancer, Weighting
from polytask.balancers.wrappers import LossesFrom, UpdateEvery
from polytask.config import Number
from polytask.errors import ConfigError, did_you_mean

Method = type[Balancer] | type[Weighting]
M = TypeVar("M", bound=Method)

#: Registered name (or alias) -> the method's class: a :class:`Balancer` or a Gramian
#: :class:`Weighting`.
BALANCERS: dict[str, Method] = {}
#: Options fixed by a name registered as a composition (``imtl``: ``losses_from="imtl_l"``).
PRESETS: dict[str, dict[str, Any]] = {}
#: Options of every Gramian weighting, handled by the engine and the wrappers.
GRAMIAN_OPTIONS = ("mode", "update_every", "reuse_jacobian", "losses_from")


def register_balancer(*names: str, **preset: Any) -> Callable[[M], M]:
    """Class decorator: address a balancer or Gramian weighting by ``names`` (the first is its
    ``name``) in configs. With ``preset`` options, register a composition of an already
    named method instead (e.g. ``register_balancer("imtl", losses_from="imtl_l")(IMTLG)``)."""

    def decorate(cls: M) -> M:
        if preset and not issubclass(cls, Weighting):
            raise TypeError(f"{cls.__name__}: presets compose Gramian weightings only")
        taken = [name for name in names if name in BALANCERS]
        if taken:
            raise ValueError(f"balancer name {taken[0]!r} registered twice")
        for name in names:
            BALANCERS[name] = cls
            if preset:
                PRESETS[name] = dict(preset)
        if not preset:
            cls.name = names[0]
        return cls

    return decorate


def options_of(method: Method) -> list[str]:
    """Keyword options of ``method``: its constructor's, plus :data:`GRAMIAN_OPTIONS` for a
    Gramian weighting."""
    parameters = inspect.signature(method.__init__).parameters.values()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    own = [p.name for p in parameters if p.kind in kinds and p.name not in ("self", "task_names")]
    return [*own, *GRAMIAN_OPTIONS] if issubclass(method, Weighting) else own


def build_balancer(name: str, task_names: Sequence[str], **options: Any) -> Balancer:
    """Instantiate the balancer registered as ``name``; an unknown option, or one whose value
    does not fit its annotated type (:func:`option_model`), raises a ConfigError naming it."""
    if name not in BALANCERS:
        raise ConfigError(
            f"balancer.name: unknown balancer '{name}'{did_you_mean(name, BALANCERS)}; "
            f"choose from {sorted(BALANCERS)}"
        )
    method, preset = BALANCERS[name], PRESETS.get(name, {})
    accepted = [k for k in options_of(method) if k not in preset]
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"balancer.{key}: '{name}' has no option '{key}'{did_you_mean(key, accepted)}; "
                f"its options are {accepted}"
            )
    options = _typed_options(name, method, options)
    try:
        if not issubclass(method, Weighting):
            return method(task_names, **options)
        return _gramian_balancer(name if preset else method.name, method, task_names,
                                 **options, **preset)  # fmt: skip
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError(f"balancer '{name}': {exc}") from exc


def _gramian_balancer(
    name: str,
    weighting: type[Weighting],
    task_names: Sequence[str],
    mode: Mode = "features",
    update_every: int = 1,
    reuse_jacobian: bool = True,
    losses_from: str | None = None,
    **options: Any,
) -> Balancer:
    """The weighting on the Gramian engine, wrapped for ``update_every`` and ``losses_from``."""
    source = _loss_source(name, losses_from, task_names)
    balancer: Balancer = GramianBalancer(weighting(task_names, **options), mode, reuse_jacobian)
    if update_every != 1:
        balancer = UpdateEvery(balancer, update_every)
    if source is not None:
        balancer = LossesFrom(balancer, source)
    balancer.name = name
    return balancer


def _loss_source(owner: str, name: str | None, task_names: Sequence[str]) -> LossWeighting | None:
    """The loss-weighting balancer ``name`` (default options) of ``losses_from``."""
    if name is None:
        return None
    allowed = sorted(n for n, cls in BALANCERS.items() if issubclass(cls, LossWeighting))
    if name not in allowed:
        kind = "unknown balancer" if name not in BALANCERS else "not a pure loss-weighting method"
        raise ValueError(
            f"{owner}: losses_from={name!r} is {kind}{did_you_mean(name, allowed)}; "
            f"choose from {allowed}"
        )
    source = BALANCERS[name](task_names)
    assert isinstance(source, LossWeighting)
    return source


FiniteNumber = Annotated[Number, Strict(False)]
"""What a ``float`` option takes: an int, a float or a numeric string (YAML reads ``1e-3`` as a
string), finite, never a boolean."""


def _checked_type(annotation: Any) -> Any:
    """``annotation`` with every ``float`` inside it made a :data:`FiniteNumber` (the option
    model is strict otherwise: ints take no bool or float, bools and strings only themselves)."""
    if annotation is float:
        return FiniteNumber
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if not args or origin in (Literal, Annotated):
        return annotation
    checked = tuple(_checked_type(a) for a in args)
    if origin in (Union, UnionType):
        return Union[checked]  # noqa: UP007 - a union built from a tuple of members
    return origin[checked]


@functools.cache
def option_model(method: Method) -> type[BaseModel]:
    """The pydantic model of ``method``'s options, from its constructor's annotations (and those
    of :func:`_gramian_balancer` for :data:`GRAMIAN_OPTIONS`); an unannotated one takes anything."""
    own, engine = method.__init__, _gramian_balancer
    hints = {**typing.get_type_hints(engine), **typing.get_type_hints(own)}
    parameters = {
        **inspect.signature(engine).parameters,
        **inspect.signature(own).parameters,
    }
    fields: dict[str, Any] = {}
    for key in options_of(method):
        default = parameters[key].default
        missing = default is inspect.Parameter.empty
        fields[key] = (_checked_type(hints.get(key, Any)), ... if missing else default)
    config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{method.__name__}Options", __config__=config, **fields)


def _typed_options(name: str, method: Method, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against their annotated types (floats converted); the first error
    is a ConfigError naming the key."""
    try:
        checked = option_model(method).model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"] if part != "[key]")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] != "value_error":
            message = f"{message[0].lower()}{message[1:]}, got {_shown(error['input'])}"
        raise ConfigError(f"balancer.{where}: {message} (balancer '{name}')") from exc
    return {key: getattr(checked, key) for key in options}


def _shown(value: Any) -> str:
    """``value`` as a config spells it (``true``, ``null``), long ones shortened."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return reprlib.repr(value)
