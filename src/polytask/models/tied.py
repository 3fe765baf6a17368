"""Tied copies ("parameter copy" sharing): one copy of the body per task, chosen layers tied.

A tied layer is literally one module object placed in every copy, so its parameters exist once
and receive the gradients of all tasks; the other layers are independent per task. This spans
the range between independent models (nothing tied) and hard sharing (everything tied); see
Ruder 2017, "An Overview of Multi-Task Learning in Deep Neural Networks", and the partially
shared networks of Misra et al. 2016 (their "split" baselines).

Shared parameters: those of the tied layers. The representation is the stack of the copies'
outputs, ``(N, T, width)``; task ``t`` reads slice ``[:, t]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.models.base import MultiTaskModel
from polytask.models.parts import (
    Factory,
    HeadFactory,
    check_output_sizes,
    make_heads,
    unique_parameters,
)

LayerRef = int | str
"""A layer of the body: an index into its direct children, or a dotted submodule name."""


def resolve_layers(body: nn.Module, layers: Sequence[LayerRef]) -> list[str]:
    """Dotted names of the submodules ``layers`` refers to; unknown or repeated ones raise."""
    children = [name for name, _ in body.named_children()]
    known = [name for name, _ in body.named_modules() if name]
    paths: list[str] = []
    for ref in layers:
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise ValueError(f"tied layer must be an int index or a submodule name, got {ref!r}")
        if isinstance(ref, int):
            if not -len(children) <= ref < len(children):
                raise ValueError(
                    f"tied layer index {ref} out of range: the body has {len(children)} children"
                )
            path = children[ref]
        elif ref in known:
            path = ref
        else:
            raise ValueError(f"tied layer '{ref}' is not a submodule of the body; known: {known}")
        if path in paths:
            raise ValueError(f"tied layer '{path}' given twice")
        paths.append(path)
    return paths


def _replace(body: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(body.get_submodule(parent) if parent else body, leaf, module)


class TiedCopies(MultiTaskModel):
    """``heads[t](copies[t](x))``, where the layers named in ``tied`` are one object in all copies.

    ``tied`` picks layers of the body by index into its direct children (``0``, ``-1``) or by
    dotted submodule name (``"embeddings"``, ``"mlp.0"``).
    """

    def __init__(
        self,
        encoder_factory: Factory,
        encoder_width: int,
        output_sizes: Mapping[str, int],
        *,
        tied: Sequence[LayerRef],
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(check_output_sizes(output_sizes))
        copies = {name: encoder_factory() for name in self.task_names}
        first = copies[self.task_names[0]]
        self.tied_layers = tuple(resolve_layers(first, tied))
        for name in self.task_names[1:]:
            for path in self.tied_layers:
                copies[name].get_submodule(path)  # same structure: raises if absent
                _replace(copies[name], path, first.get_submodule(path))
        self.copies = nn.ModuleDict(copies)
        self.heads = make_heads(output_sizes, encoder_width, head_factory)

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        z = torch.stack([self.copies[name](x) for name in self.task_names], dim=1)
        outputs = {name: self.heads[name](z[:, i]) for i, name in enumerate(self.task_names)}
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        first = self.copies[self.task_names[0]]
        return unique_parameters(first.get_submodule(path) for path in self.tied_layers)

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        shared = {id(p) for p in self.shared_parameters()}
        own = (p for p in self.copies[task].parameters() if id(p) not in shared)
        return itertools.chain(own, self.heads[task].parameters())
