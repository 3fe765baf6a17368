"""A tiny synthetic tabular multi-task problem and small instances of every architecture."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.models import MultiTaskModel, TabularEncoder, build_model

N_NUMERIC = 3
CARDINALITIES = (4, 3)
WIDTH = 8
OUTPUT_SIZES = {"reg": 1, "cls": 3, "bin": 1}

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


def encoder() -> nn.Sequential:
    """Two blocks: a tabular encoder (embeddings + one layer), then one more layer."""
    return nn.Sequential(
        TabularEncoder(N_NUMERIC, CARDINALITIES, hidden=[WIDTH]),
        nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh()),
    )


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


def toy_data(n: int = 64, seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Inputs and targets: a regression, a 3-class and a binary task sharing structure."""
    g = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, N_NUMERIC, generator=g)
    categorical = torch.stack(
        [torch.randint(0, c, (n,), generator=g) for c in CARDINALITIES], dim=1
    )
    signal = numeric[:, 0] - numeric[:, 1] + 0.5 * (categorical[:, 0] == 2).float()
    targets = {
        "reg": (signal + 0.3 * numeric[:, 2]).unsqueeze(1),
        "cls": torch.bucketize(signal, torch.tensor([-0.7, 0.7])),
        "bin": (signal + numeric[:, 2] > 0).float().unsqueeze(1),
    }
    return {"numeric": numeric, "categorical": categorical}, targets


def task_losses(outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    return {
        "reg": F.mse_loss(outputs["reg"], targets["reg"]),
        "cls": F.cross_entropy(outputs["cls"], targets["cls"]),
        "bin": F.binary_cross_entropy_with_logits(outputs["bin"], targets["bin"]),
    }
