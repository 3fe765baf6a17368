"""Checks of a parsed config that need the registries above the config layer.

The schema (:mod:`polytask.config`) validates architectures, input blocks and task types by
name through :mod:`polytask.options`. The balancer is checked here, by building it for the
config's tasks, and so are the device and precision, against this machine:
:func:`check_config` runs before any data is read or any folder is made.
"""

from __future__ import annotations

from polytask.balancers import build_balancer
from polytask.config import Config
from polytask.device import check_precision, resolve_device


def check_config(config: Config) -> Config:
    """Return ``config`` after checking its balancer's name and options, and that this
    machine has its ``training.device`` and can train there in its ``training.precision`` (a
    ConfigError names the key)."""
    names = [t.name for t in config.tasks]
    build_balancer(config.balancer.name, names, **config.balancer.options)  # raises ConfigError
    check_precision(config.training.precision, resolve_device(config.training.device))
    return config
