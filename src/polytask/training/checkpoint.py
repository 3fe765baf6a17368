"""Checkpoints: weights in safetensors, optimizer and balancer state via ``torch.save`` loaded
with ``weights_only=True``, trainer state in JSON; written atomically.

Each epoch is written to ``epoch-NNNN.tmp/`` and renamed to ``epoch-NNNN/`` when complete; then
``latest.json`` (itself replaced atomically) points at it and older epochs are removed. A run
killed at any moment leaves the previous complete checkpoint readable.

Every file is written to a temporary name beside its target and renamed over it; files are
created with mode ``0o666`` less the umask, like any other output. JSON is strict (a non-finite
number is written ``null``) and weights that are not finite are refused when read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from polytask.errors import RunError

LATEST = "latest.json"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A fresh temporary file beside ``path`` (mode ``0o666`` less the umask) to write; renamed
    over ``path`` when the block succeeds, removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 less the umask, without reading the umask
    try:
        yield tmp
        os.chmod(tmp, mode)  # a writer may have replaced the file with a private one
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_json(path: Path, data: Any) -> None:
    """Strict JSON version of :func:`atomic_write_text`: NaN and infinities become ``null``."""
    text = json.dumps(finite_or_none(data), indent=2, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def finite_or_none(data: Any) -> Any:
    """``data`` with every non-finite float, in nested dicts, lists and tuples, set to None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite_or_none(v) for v in data]
    return data


def nan_for_none(data: Any) -> Any:
    """The reverse of :func:`finite_or_none` for numbers read back: None becomes NaN."""
    if data is None:
        return math.nan
    if isinstance(data, dict):
        return {k: nan_for_none(v) for k, v in data.items()}
    if isinstance(data, list):
        return [nan_for_none(v) for v in data]
    return data


def save_weights(state: Mapping[str, Tensor], path: Path) -> None:
    """A state dict as safetensors, written atomically (tied tensors are stored once per name)."""
    tensors = {k: v.detach().contiguous().clone().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_weights(path: Path, *, require_finite: bool = True) -> dict[str, Tensor]:
    """Read safetensors weights; a missing or corrupt file raises RunError, and so do weights
    that are not finite (a diverged model) unless ``require_finite`` is false."""
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the weights ({exc})") from exc
    if require_finite:
        for name, tensor in weights.items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise RunError(
                    f"{path}: the weights are not finite (tensor '{name}' holds NaN or "
                    "infinity); the training diverged and this model cannot be used"
                )
    return weights


@dataclass
class Checkpoint:
    """What one epoch's checkpoint holds."""

    model: dict[str, Tensor]
    best_model: dict[str, Tensor]
    optimizer: dict[str, Any]
    balancer: dict[str, Any]
    state: dict[str, Any]
    schedules: dict[str, Any] = field(default_factory=dict)  # learning-rate schedulers'


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
        {
            "optimizer": checkpoint.optimizer,
            "balancer": checkpoint.balancer,
            "schedules": checkpoint.schedules,
        },
        tmp / "optim.pt",
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
        # on the CPU whatever device saved it; load_state_dict puts each piece where it lives
        extra = torch.load(path / "optim.pt", map_location="cpu", weights_only=True)
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
        schedules=extra.get("schedules", {}),  # none before learning-rate schedules
    )
