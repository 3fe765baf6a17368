"""The option models of the built-in architectures, input blocks and task types.

They are plain pydantic models, kept apart from the code that builds the entries (which needs
torch), so that :mod:`polytask.options` can validate a config by name without importing torch:
the registries import this module at their first lookup. The modules that build the entries
import their option model from here. An entry added by a user defines its options in its own
module and registers them with it (see the README's "Write your own architecture").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from polytask.config import DEFAULT_MAX_LENGTH, DEFAULT_TEXT_MODEL, Number
from polytask.options import (
    ARCHITECTURE_OPTIONS,
    INPUT_BLOCK_OPTIONS,
    TASK_OPTIONS,
    NoOptions,
    OptionRegistry,
    Options,
)

Penalty = Literal["l2", "trace"]
LayerRef = StrictInt | str

# -- architectures (model.arch) ------------------------------------------------------------


class HardOptions(NoOptions):
    """Hard sharing has no options."""


class SoftOptions(Options):
    penalty: Penalty = "l2"
    strength: Number = Field(1e-3, ge=0)


class TiedOptions(Options):
    tied: tuple[LayerRef, ...]


class CrossStitchOptions(Options):
    self_weight: Number = 0.9


class MMoEOptions(Options):
    experts: StrictInt = Field(4, ge=1)


class CGCOptions(Options):
    shared_experts: StrictInt = Field(1, ge=0)
    task_experts: StrictInt = Field(1, ge=0)


class PLEOptions(Options):
    levels: StrictInt = Field(2, ge=1)
    shared_experts: StrictInt = Field(1, ge=0)
    task_experts: StrictInt = Field(1, ge=0)


class GroupsOptions(Options):
    groups: tuple[tuple[str, ...], ...]


class MTRLOptions(Options):
    """``strength`` (λ), ``ridge`` (ε), ``update_every`` (training steps between Ω updates),
    ``layers`` (``last``: the tower's last layer; ``tower``: all of it)."""

    strength: Number = Field(1e-3, ge=0, allow_inf_nan=False)
    ridge: Number = Field(1e-3, gt=0, allow_inf_nan=False)
    update_every: StrictInt = Field(10, ge=1)
    layers: Literal["last", "tower"] = "last"


# -- input blocks (model.encoder.type) -----------------------------------------------------


class TabularOptions(NoOptions):
    """``tabular`` has no options."""


class CNNOptions(Options):
    """``channels`` × ``height`` × ``width`` (a square inferred when not given); ``conv``
    channel widths; ``kernel`` size."""

    channels: StrictInt = Field(1, ge=1)
    height: StrictInt | None = Field(None, ge=1)
    width: StrictInt | None = Field(None, ge=1)
    conv: list[StrictInt] = Field([16, 32], min_length=1)
    kernel: StrictInt = Field(3, ge=1)


class GRUOptions(Options):
    """``sequence``: one column-name prefix per channel (matched columns in table order, oldest
    first); ``hidden`` size and ``layers`` of the GRU."""

    sequence: list[str] | None = Field(None, min_length=1)
    hidden: StrictInt = Field(64, ge=1)
    layers: StrictInt = Field(1, ge=1)

    @model_validator(mode="after")
    def _needs_sequence(self) -> GRUOptions:
        if not self.sequence:
            raise ValueError("encoder 'gru' needs 'sequence': the lag column prefix(es)")
        return self


class TextOptions(Options):
    """``model`` (the sentence transformer), ``fine_tune``, ``max_length`` (tokens)."""

    model: str = Field(DEFAULT_TEXT_MODEL, min_length=1)
    fine_tune: bool = False
    max_length: StrictInt = Field(DEFAULT_MAX_LENGTH, ge=2)


class GraphOptions(Options):
    """Molecules as graphs (``graph``, needs the ``[graph]`` extra). ``prefix``: the atom
    columns are ``<prefix>NN_number``, ``<prefix>NN_x``, ``_y``, ``_z`` (NN = 00, 01, …;
    atomic number 0 = no atom); ``edges``: ``bonds`` (covalent radii) or ``radius`` (every
    pair closer than ``cutoff`` Å, which is also the range of the Gaussian distance features);
    the Gilmer et al. MPNN's width ``dim``, ``message_steps`` and ``set2set_steps``; ``counts``:
    join each molecule's element counts to the readout (off: the published encoder)."""

    prefix: str = Field("atom", min_length=1)
    edges: Literal["bonds", "radius"] = "bonds"
    cutoff: Number = Field(5.0, gt=0, allow_inf_nan=False)
    dim: StrictInt = Field(64, ge=1)
    message_steps: StrictInt = Field(3, ge=1)
    set2set_steps: StrictInt = Field(3, ge=1)
    counts: StrictBool = False


# -- task types (tasks[*].type) -------------------------------------------------------------


class BinaryOptions(Options):
    """``positive``: the label of the positive class (inferred when not given)."""

    positive: str | None = None


BUILTIN: dict[OptionRegistry, dict[str, type[Options]]] = {
    ARCHITECTURE_OPTIONS: {
        "hard": HardOptions,
        "soft": SoftOptions,
        "tied": TiedOptions,
        "cross_stitch": CrossStitchOptions,
        "mmoe": MMoEOptions,
        "cgc": CGCOptions,
        "ple": PLEOptions,
        "groups": GroupsOptions,
        "mtrl": MTRLOptions,
    },
    INPUT_BLOCK_OPTIONS: {
        "tabular": TabularOptions,
        "cnn": CNNOptions,
        "gru": GRUOptions,
        "text": TextOptions,
        "graph": GraphOptions,
    },
    TASK_OPTIONS: {
        "binary": BinaryOptions,
        "multiclass": NoOptions,
        "multilabel": NoOptions,
        "regression": NoOptions,
    },
}
"""Each registry's built-in entries, registered when this module is imported."""

for _registry, _entries in BUILTIN.items():
    for _name, _options in _entries.items():
        _registry.register(_name, _options)
