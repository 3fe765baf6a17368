"""The registry of input blocks: ``model.encoder.type`` → option model and builder.

An input block is the first block of every architecture's body (one per tower, column or
expert): it reads the encoded features and ends at width ``trunk[0]``. Its builder sees the
fitted features now, so a block that does not fit the data fails before any training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from polytask.config import InputBlockConfig
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError
from polytask.models.parts import GateFactory
from polytask.options import INPUT_BLOCK_OPTIONS, Options

BlockFactory = Callable[[], nn.Module]
Builder = Callable[[Any, FeaturePreprocessor, int, float], BlockFactory]
"""``build(options, features, out_features, dropout)`` → a factory of fresh blocks."""
GateBuilder = Callable[[Any, FeaturePreprocessor], GateFactory]
"""``gate(options, features)`` → ``n_experts → gate``: the gates of ``mmoe``/``cgc``/``ple``
over this block's inputs, for a block whose raw columns a linear gate should not read."""


@dataclass(frozen=True)
class InputBlock:
    """A registered input block: its option model and its builder."""

    name: str
    options: type[Options]
    build: Builder
    gate: GateBuilder | None = None


INPUT_BLOCKS: dict[str, InputBlock] = {}


def register_input_block(
    name: str, options: type[Options], build: Builder, *, gate: GateBuilder | None = None
) -> InputBlock:
    """Make ``model.encoder: {type: <name>, ...}`` build blocks with ``build``; ``options``
    declares the other keys of ``model.encoder``; ``gate`` (optional) builds the gates of the
    gated architectures over these inputs (default: linear on the tabular features)."""
    block = InputBlock(name, options, build, gate)
    INPUT_BLOCKS[name] = block
    INPUT_BLOCK_OPTIONS.register(name, options)
    return block


def input_block(
    config: InputBlockConfig, features: FeaturePreprocessor, out_features: int, *, dropout: float
) -> BlockFactory:
    """A factory of the first body block ``config`` names (checked against ``features`` now)."""
    return _registered(config).build(config.typed_options, features, out_features, dropout)


def input_gate(config: InputBlockConfig, features: FeaturePreprocessor) -> GateFactory | None:
    """The gates the block ``config`` names builds for the gated architectures, or ``None``
    when it has none of its own."""
    block = _registered(config)
    return None if block.gate is None else block.gate(config.typed_options, features)


def _registered(config: InputBlockConfig) -> InputBlock:
    block = INPUT_BLOCKS.get(config.type)
    if block is None:
        raise ConfigError(f"model.encoder.type: no input block '{config.type}' is registered")
    return block
