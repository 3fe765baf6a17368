"""One exception family. The CLI turns any :class:`PolytaskError` into one line and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PolytaskError(Exception):
    """Base class for every error caused by the user's input (config, data, run directory).

    Its message is always one line: line breaks inside it (from a key, a column name or a
    value quoted in it) are shown escaped (``\\n``)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class ConfigError(PolytaskError):
    """A config file or option is invalid."""


class DataError(PolytaskError):
    """A table, column or value cannot be used."""


class RunError(PolytaskError):
    """A run directory is missing, incomplete or corrupt."""


class FailedOnRankZero(RunError):
    """Under ``torchrun``: rank 0 failed with a user error, which rank 0 itself reports (the
    command line of the other processes exits 2 without repeating it)."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


_LINE_BREAKS = {c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with every character that would start a new line escaped (``\\n``, ``\\x85``)."""
    return text.translate(str.maketrans(_LINE_BREAKS))
