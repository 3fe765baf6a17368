"""Checkpoints: weights in safetensors, optimizer and balancer state via ``torch.save`` loaded
with ``weights_only=True``, trainer state in JSON; written atomically.

Each epoch is written to ``epoch-NNNN.tmp/`` and renamed to ``epoch-NNNN/`` when complete; then
``latest.json`` (itself replaced atomically) points at it and older epochs are removed. A run
killed at any moment leaves the previous complete checkpoint readable.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from polytask.errors import RunError

LATEST = "latest.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """JSON version of :func:`atomic_write_text` (NaN allowed, as Python's json writes it)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def save_weights(state: Mapping[str, Tensor], path: Path) -> None:
    """A state dict as safetensors (tied tensors are stored once per name)."""
    save_file({k: v.detach().contiguous().clone().cpu() for k, v in state.items()}, str(path))


def load_weights(path: Path) -> dict[str, Tensor]:
    """Read safetensors weights; a missing or corrupt file raises RunError."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the weights ({exc})") from exc


@dataclass
class Checkpoint:
    """What one epoch's checkpoint holds."""

    model: dict[str, Tensor]
    best_model: dict[str, Tensor]
    optimizer: dict[str, Any]
    balancer: dict[str, Any]
    state: dict[str, Any]


def save_checkpoint(directory: Path, epoch: int, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` for ``epoch`` atomically and drop older ones."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"epoch-{epoch:04d}"
    tmp = directory / f"epoch-{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(checkpoint.model, tmp / "model.safetensors")
    save_weights(checkpoint.best_model, tmp / "best.safetensors")
    torch.save(
        {"optimizer": checkpoint.optimizer, "balancer": checkpoint.balancer}, tmp / "optim.pt"
    )
    atomic_write_json(tmp / "state.json", checkpoint.state)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_json(directory / LATEST, {"epoch": epoch, "path": final.name})
    for old in directory.glob("epoch-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _load_problem(exc: BaseException) -> str:
    """One line for a failed load; a refused weights-only unpickling gives only what was refused,
    never torch's advice to load with ``weights_only=False``."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split())
        for end in (" was not an allowed global", ". Please", " Check the documentation"):
            detail = detail.split(end, 1)[0]
        return f"the weights-only loader refused optim.pt: {detail.rstrip('.')}"
    if "weights_only" in text:
        return f"{type(exc).__name__} while loading it safely"
    return " ".join(text.split())


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """The latest complete checkpoint in ``directory``, or None if there is none yet."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    try:
        latest = json.loads(pointer.read_text())
        path = directory / latest["path"]
        state = json.loads((path / "state.json").read_text())
        extra = torch.load(path / "optim.pt", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise RunError(
            f"{directory}: the checkpoint is corrupt or incomplete ({_load_problem(exc)})"
        ) from exc
    return Checkpoint(
        model=load_weights(path / "model.safetensors"),
        best_model=load_weights(path / "best.safetensors"),
        optimizer=extra["optimizer"],
        balancer=extra["balancer"],
        state=state,
    )
