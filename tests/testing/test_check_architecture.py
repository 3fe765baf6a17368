"""check_architecture passes on every registered architecture and fails, naming the broken
check, on architectures that break the model contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from polytask.models import ARCHITECTURES, ModelParts, MultiTaskModel, options_for
from polytask.testing.architectures import check_architecture

# Only architectures with a required option need an example here (the test below enforces it).
REQUIRED_OPTIONS: dict[str, dict[str, Any]] = {
    "tied": {"tied": [0]},
    "groups": {"groups": [["reg", "cls"], ["bin"]]},
}


def test_every_required_option_has_an_example():
    for arch in ARCHITECTURES:
        required = {k for k, f in options_for(arch).model_fields.items() if f.is_required()}
        assert required <= set(REQUIRED_OPTIONS.get(arch, {})), arch


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_registered_architecture_passes(arch):
    check_architecture(arch, options=REQUIRED_OPTIONS.get(arch, {}))


class _Broken(MultiTaskModel):
    """Hard sharing with one defect chosen by ``defect``."""

    def __init__(self, parts: ModelParts, defect: str) -> None:
        super().__init__(list(parts.output_sizes))
        self.defect = defect
        self.trunk = parts.encoder_factory()
        self.heads = nn.ModuleDict(
            {t: nn.Linear(parts.encoder_width, n) for t, n in parts.output_sizes.items()}
        )
        self.bias = nn.Parameter(torch.zeros(1))

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        z = self.trunk(x)
        outputs = {t: head(z) for t, head in self.heads.items()}
        if self.defect == "head_reads_other_head":
            outputs["bin"] = outputs["bin"] + outputs["reg"]
        if self.defect == "bypasses_representation":
            outputs = {t: out + self.bias for t, out in outputs.items()}
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        if self.defect == "misses_a_trunk_layer":
            return self.trunk[0].parameters()
        return iter([*self.trunk.parameters(), self.bias])

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        return self.heads[task].parameters()


@pytest.mark.parametrize(
    ("defect", "check"),
    [
        ("misses_a_trunk_layer", "parameters"),
        ("head_reads_other_head", "task_isolation"),
        ("bypasses_representation", "through_representation"),
    ],
)
def test_a_broken_architecture_fails_the_check_it_breaks(defect, check):
    with pytest.raises(AssertionError, match=rf"\[{check}\]"):
        check_architecture(lambda parts: _Broken(parts, defect), balancers=["equal"])


def test_the_unbroken_variant_passes():
    check_architecture(lambda parts: _Broken(parts, "none"), balancers=["equal", "mgda"])
