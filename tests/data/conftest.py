"""Fixtures of the data tests."""

from .fake_pypi import fake_pypi  # noqa: F401
