"""Small instances of every architecture over the contract check's tabular problem."""

from __future__ import annotations

from typing import Any

import torch

from polytask.models import MultiTaskModel, build_model
from polytask.testing.architectures import (
    CARDINALITIES,
    N_NUMERIC,
    OUTPUT_SIZES,
    WIDTH,
    task_losses,
)
from polytask.testing.architectures import tabular_body as encoder
from polytask.testing.architectures import tabular_problem as toy_data

__all__ = [
    "CARDINALITIES",
    "N_NUMERIC",
    "OPTIONS",
    "OUTPUT_SIZES",
    "WIDTH",
    "encoder",
    "make",
    "task_losses",
    "toy_data",
]

OPTIONS: dict[str, dict[str, Any]] = {
    "hard": {},
    "soft": {"strength": 1e-2},
    "tied": {"tied": [0]},
    "cross_stitch": {},
    "mmoe": {"experts": 3},
    "cgc": {"shared_experts": 2, "task_experts": 1},
    "ple": {"levels": 2, "shared_experts": 1, "task_experts": 1},
    "groups": {"groups": [["reg", "cls"], ["bin"]]},
}


def make(arch: str, seed: int = 0, **overrides: Any) -> MultiTaskModel:
    torch.manual_seed(seed)
    options = {**OPTIONS.get(arch, {}), **overrides}
    return build_model(
        arch,
        encoder_factory=encoder,
        encoder_width=WIDTH,
        output_sizes=OUTPUT_SIZES,
        **options,
    )
