"""Input blocks: the first block of every architecture's body, chosen by ``model.encoder``.

* ``tabular`` (default, :mod:`.tabular`): numeric columns + categorical embeddings.
* ``cnn`` (:mod:`.cnn`): numeric pixel columns reshaped to ``(channels, height, width)``.
* ``gru`` (:mod:`.sequence`): a GRU over lag columns picked by name prefix, joined with the
  remaining features.
* ``text`` (:mod:`.text`) over the ``features.text`` columns: frozen (default), its cached
  embeddings become numeric feature columns in the data step and the block is ``tabular``; with
  ``fine_tune: true`` the sentence transformer itself is the input block.
* ``graph`` (:mod:`.graph`, the ``[graph]`` extra): molecules in padded per-atom columns become
  graph batches for the Gilmer et al. message-passing network (PyTorch Geometric).

Each module declares its option model and registers it with :func:`register_input_block`;
:func:`input_block` checks the choice against the fitted features and raises a ConfigError
naming the key when they do not fit (e.g. ``cnn`` on a table that is not an image).
"""

from polytask.models.input_blocks.base import (
    INPUT_BLOCKS,
    InputBlock,
    input_block,
    input_gate,
    register_input_block,
)
from polytask.models.input_blocks.cnn import CNNOptions, ConvEncoder, image_shape
from polytask.models.input_blocks.graph import (
    GilmerMPNN,
    GraphEncoder,
    GraphOptions,
    molecular_graph,
    molecule_layout,
)
from polytask.models.input_blocks.sequence import GRUOptions, SequenceEncoder, sequence_layout
from polytask.models.input_blocks.tabular import TabularOptions
from polytask.models.input_blocks.text import TextOptions, text_block

__all__ = [
    "INPUT_BLOCKS",
    "CNNOptions",
    "ConvEncoder",
    "GRUOptions",
    "GilmerMPNN",
    "GraphEncoder",
    "GraphOptions",
    "InputBlock",
    "SequenceEncoder",
    "TabularOptions",
    "TextOptions",
    "image_shape",
    "input_block",
    "input_gate",
    "molecular_graph",
    "molecule_layout",
    "register_input_block",
    "sequence_layout",
    "text_block",
]
