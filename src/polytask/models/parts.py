"""Shared pieces of the architectures: factory types, per-task heads, gates and mixtures.

Architectures never build their bodies themselves: they call factories, so any encoder (tabular,
convolutional, ...) can serve as trunk, tower, column or expert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

Factory = Callable[[], nn.Module]
"""Builds a fresh body (encoder, tower, column or expert): input -> ``(N, width, ...)``."""

HeadFactory = Callable[[int, int], nn.Module]
"""``(in_features, out_features) -> module``: builds one task's head or tower."""

GateFactory = Callable[[int], nn.Module]
"""``n_experts -> module``: builds a gate mapping the input to ``(N, n_experts)`` logits."""


def linear_head(in_features: int, out_features: int) -> nn.Module:
    """The default head: one linear layer."""
    return nn.Linear(in_features, out_features)


def check_output_sizes(output_sizes: Mapping[str, int]) -> list[str]:
    """Return the task names after checking every output size is a positive integer."""
    if not output_sizes:
        raise ValueError("output_sizes must name at least one task")
    for name, size in output_sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"task '{name}': output size must be a positive int, got {size!r}")
    return list(output_sizes)


def make_heads(
    output_sizes: Mapping[str, int], in_features: int, head_factory: HeadFactory | None = None
) -> nn.ModuleDict:
    """One head per task, ``head_factory(in_features, output_sizes[task])`` (linear by default)."""
    factory = head_factory or linear_head
    return nn.ModuleDict({name: factory(in_features, size) for name, size in output_sizes.items()})


def encoder_gate_factory(encoder_factory: Factory, encoder_width: int) -> GateFactory:
    """Gates that work on any input: a fresh encoder followed by a linear layer to the logits."""

    def build(n_experts: int) -> nn.Module:
        return nn.Sequential(encoder_factory(), nn.Linear(encoder_width, n_experts))

    return build


def linear_gate_factory(in_features: int) -> GateFactory:
    """Gates on a ``(N, in_features)`` tensor: ``softmax(W x)`` as in MMoE and PLE."""

    def build(n_experts: int) -> nn.Module:
        return nn.Linear(in_features, n_experts)

    return build


def mix(weights: Tensor, experts: Tensor) -> Tensor:
    """Gated mixture: ``weights`` (N, E) over ``experts`` (N, E, ...) -> (N, ...)."""
    return torch.einsum("ne,ne...->n...", weights, experts)


def unique_parameters(modules: Iterable[nn.Module]) -> Iterator[nn.Parameter]:
    """Parameters of several modules, each parameter object once (tied ones included)."""
    seen: set[int] = set()
    for module in modules:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                yield parameter


def positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Validate an integer option (counts of experts, levels, ...)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_same_structure(bodies: Sequence[nn.Module], what: str) -> list[str]:
    """Names of the parameters of ``bodies[0]``, after checking every body has the same names
    and shapes (so that corresponding layers can be compared or mixed)."""
    reference = {name: p.shape for name, p in bodies[0].named_parameters()}
    for body in bodies[1:]:
        other = {name: p.shape for name, p in body.named_parameters()}
        if other != reference:
            raise ValueError(f"{what}: the factory must build bodies with identical parameters")
    return list(reference)
