"""Typed options addressed by name: the registries behind ``model.arch``, ``model.encoder``
(the input block) and ``tasks[*].type``.

Each registry maps a name to the pydantic model of that entry's options (unknown keys are
errors). The modules that define architectures, input blocks and task types register their
option models here when they are imported. Each registry names the modules of its built-in
entries (``builtins``) and imports them by name at its first lookup, so the config schema
validates a section by name without importing them itself: this module sits below the config,
and a config error in any other section is reported before torch is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails

from polytask.errors import did_you_mean


class Options(BaseModel):
    """Base class of every registered option model: frozen, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(Options):
    """For entries without options."""


class OptionRegistry:
    """Names → option models for one kind of entry (``what``: "architecture", ...)."""

    def __init__(
        self, what: str, *, builtins: Sequence[str] = (), saved_defaults: bool = False
    ) -> None:
        self.what = what
        self.saved_defaults = saved_defaults
        self._builtins = tuple(builtins)
        self._entries: dict[str, type[Options]] = {}

    @property
    def _models(self) -> dict[str, type[Options]]:
        """The entries, after importing the built-in ones' modules (once)."""
        while self._builtins:
            module, *rest = self._builtins
            self._builtins = tuple(rest)
            importlib.import_module(module)
        return self._entries

    def register(self, name: str, options: type[Options]) -> None:
        """Make ``name`` valid in configs, with ``options`` as its option model."""
        if not issubclass(options, Options):
            raise TypeError(f"{self.what} '{name}': options must subclass polytask.options.Options")
        self._entries[name] = options

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests that register an entry for a while)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def options(self, name: str) -> type[Options]:
        """The option model of ``name``; ValueError naming the closest name when unknown."""
        if name not in self._models:
            raise ValueError(
                f"unknown {self.what} '{name}'{did_you_mean(str(name), self._models)}; "
                f"choose from {self.names()}"
            )
        return self._models[name]

    def owner(self, key: str) -> str | None:
        """The first registered name whose options include ``key``."""
        return next((n for n in self.names() if key in self._models[n].model_fields), None)

    def validate(self, name: str, raw: Mapping[str, Any]) -> Options:
        """``raw`` validated against ``name``'s option model (pydantic errors keep their key).

        A key that belongs to another entry is an error naming that entry; with
        ``saved_defaults``, not when it holds that entry's default (configs saved before typed
        options repeated every default of every entry there)."""
        model = self.options(name)
        kept: dict[str, Any] = {}
        for key, value in raw.items():
            owner = None if key in model.model_fields else self.owner(key)
            if owner is None:
                kept[key] = value
                continue
            field = self._models[owner].model_fields[key]
            if not self.saved_defaults or value != field.get_default(call_default_factory=True):
                raise_at(key, f"'{key}' is an option of {self.what} '{owner}', not of '{name}'")
        return model.model_validate(kept)


def raise_at(key: str, message: str) -> None:
    """Raise a pydantic ValidationError located at ``key``, for use inside validators (pydantic
    prefixes the location of the section being validated)."""
    detail = InitErrorDetails(type="value_error", loc=(key,), input=None, ctx={"error": message})
    raise ValidationError.from_exception_data("options", [detail])


ARCHITECTURE_OPTIONS = OptionRegistry("architecture", builtins=("polytask.builtin_options",))
"""``model.arch`` → the architecture's options (the other keys of ``model``)."""

INPUT_BLOCK_OPTIONS = OptionRegistry(
    "encoder", builtins=("polytask.builtin_options",), saved_defaults=True
)
"""``model.encoder.type`` → the input block's options (the other keys of ``model.encoder``)."""

TASK_OPTIONS = OptionRegistry(
    "task type", builtins=("polytask.builtin_options",), saved_defaults=True
)
"""``tasks[*].type`` → the options a task of that type adds to the common task keys."""

__all__ = [
    "ARCHITECTURE_OPTIONS",
    "INPUT_BLOCK_OPTIONS",
    "TASK_OPTIONS",
    "NoOptions",
    "OptionRegistry",
    "Options",
    "raise_at",
]
