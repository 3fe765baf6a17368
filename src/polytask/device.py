"""Where training runs and in which precision: ``training.device`` and ``training.precision``.

``resolve_device`` turns a device setting into a :class:`torch.device` (``auto``: CUDA when
available, else MPS, else the CPU); ``check_precision`` refuses a precision the device cannot
run; :class:`Precision` holds the autocast dtype of a precision and whether it needs a gradient
scaler (``fp16`` only: bf16 has float32's exponent range, so its gradients do not underflow).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from polytask.data.dataset import Batch
from polytask.errors import ConfigError

PrecisionName = Literal["fp32", "bf16", "fp16"]

_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device = "auto", key: str = "training.device") -> torch.device:
    """The device named by ``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); a
    :class:`ConfigError` naming ``key`` when it is not available on this machine."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{key}: must be auto, cpu, cuda, cuda:N or mps, got {spec!r}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}: {spec!r} was asked for, but CUDA is not available on this machine "
                "(use cpu or auto)"
            )
        count = torch.cuda.device_count()
        index = 0 if device.index is None else device.index
        if index >= count:
            raise ConfigError(
                f"{key}: {spec!r} was asked for, but this machine has {count} CUDA "
                f"device(s) (cuda:0 to cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise ConfigError(
                f"{key}: 'mps' was asked for, but MPS is not available on this machine "
                "(use cpu or auto)"
            )
        return device
    raise ConfigError(f"{key}: must be auto, cpu, cuda, cuda:N or mps, got {spec!r}")


@dataclass(frozen=True)
class Precision:
    """A training precision: its autocast ``dtype`` (``None``: float32, no autocast) on the
    ``device_type`` it runs on, and whether it ``scales`` the losses (fp16's GradScaler)."""

    name: PrecisionName
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    @property
    def scales(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The autocast context of the forward pass and the losses (none for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def check_precision(name: str, device: torch.device, key: str = "training.precision") -> Precision:
    """``name`` as a :class:`Precision` on ``device``; a :class:`ConfigError` naming ``key`` for
    an unknown name or fp16 off CUDA (the CPU has no fp16 autocast kernels worth training with,
    and no gradient scaler is needed for bf16: use bf16 there)."""
    if name not in _DTYPES:
        raise ConfigError(f"{key}: must be fp32, bf16 or fp16, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"{key}: fp16 needs a CUDA device, and training runs on {device.type} "
            "(use bf16 or fp32 there)"
        )
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}: bf16 is not supported by {torch.cuda.get_device_name(device)}")
    return Precision(name, device.type)  # type: ignore[arg-type]


def _move(tensor: Tensor, device: torch.device) -> Tensor:
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        # page-locked, so the copy is asynchronous: the host goes on to the next batch
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` on ``device``: to CUDA from pinned (page-locked) memory with
    ``non_blocking=True``; nothing is copied for a batch already there."""
    inputs = batch.inputs
    if isinstance(inputs, Tensor):
        inputs = _move(inputs, device)
    elif isinstance(inputs, Mapping):
        inputs = {k: _move(v, device) for k, v in inputs.items()}
    return Batch(
        inputs,
        {k: _move(v, device) for k, v in batch.targets.items()},
        {k: _move(v, device) for k, v in batch.masks.items()},
    )


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s first parameter (or buffer) lives; the CPU for a model with none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
