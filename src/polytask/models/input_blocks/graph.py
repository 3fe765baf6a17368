"""``graph``: molecules as graphs, encoded by the message-passing network of Gilmer et al. (2017).

The table holds each molecule as padded per-atom numeric columns, ``<prefix>NN_number`` (atomic
number, 0 = no atom), ``<prefix>NN_x``, ``_y``, ``_z`` (Å) for the slots NN = 00, 01, …, so
splits, missing labels, baselines and ``predict`` treat it as any other table. The feature step
standardises those columns like every numeric column; the block undoes it exactly (``z·std +
mean`` with the fitted statistics), so it reads the raw atoms without a second data path.

Each batch becomes one PyTorch Geometric graph batch on the model's device
(:func:`molecular_graph`):

* nodes: the real atoms, with a one-hot of the element (H, C, N, O, F), the atomic number and the
  number of bonded hydrogens (the atom features of PyG's QM9 that need no chemistry toolkit);
* bonds: pairs closer than the sum of their covalent radii (Cordero et al. 2008) plus
  :data:`BOND_TOLERANCE` Å;
* edges: the bonds (``edges: bonds``) or every pair of atoms closer than ``cutoff`` Å
  (``edges: radius``; a cutoff beyond the molecule's size gives the complete graph of the
  published benchmarks);
* edge features: bonded (0/1), the distance, and the distance in :data:`GAUSSIANS` Gaussians
  centred on ``[0, cutoff]``. Only distances enter, so the encoding does not change when the
  molecule is rotated or translated, nor (up to float rounding) when its atoms are reordered.

The encoder (:class:`GilmerMPNN`) is the network of PyG's ``qm9_nn_conv`` example used by the
multi-task QM9 benchmarks of Nash-MTL (Navon et al. 2022) and FAMO (Liu et al. 2023):
``Linear(nodes → dim)`` + ReLU, ``message_steps`` rounds of one shared ``NNConv`` (edge network
``Linear(edge → 128) → ReLU → Linear(128 → dim²)``, mean aggregation) + ReLU + one shared
``GRU(dim, dim)``, then ``Set2Set(dim, set2set_steps)``. The block ends with ``Linear(2·dim [+
counts] [+ tabular] → out_features)`` + ReLU (the example's ``lin1``), joined first with the
table's other numeric and categorical features, if any. ``counts: true`` (not in the published
encoder) also joins each molecule's element counts: Set2Set's readout is an attention-weighted
mean, blind to the molecule's size, which extensive targets (energies, heat capacity) grow with.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from polytask.builtin_options import GraphOptions
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError, DataError
from polytask.models.input_blocks.base import BlockFactory, register_input_block
from polytask.models.parts import GateFactory
from polytask.models.tabular import TabularEncoder

ELEMENTS = (1, 6, 7, 8, 9)
"""Atomic numbers of the one-hot node feature: H, C, N, O, F (the elements of QM9)."""
SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
COVALENT_RADII = {1: 0.31, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57}
"""Single-bond covalent radii in Å (Cordero et al. 2008; carbon sp³)."""
BOND_TOLERANCE = 0.4
"""Å added to the sum of two covalent radii: a pair closer than that is bonded."""
GAUSSIANS = 16
"""Gaussians of the distance feature, centred evenly on ``[0, cutoff]``."""
FIELDS = ("number", "x", "y", "z")
NODE_FEATURES = len(ELEMENTS) + 2  # one-hot, atomic number, bonded hydrogens
EDGE_FEATURES = 2 + GAUSSIANS  # bonded, distance, Gaussians
EDGE_HIDDEN = 128
_INSTALL = "pip install 'polytask[graph]'"


def import_pyg() -> tuple[type[nn.Module], type[nn.Module]]:
    """``(NNConv, Set2Set)`` from PyTorch Geometric, or a ConfigError naming the extra."""
    try:
        with warnings.catch_warnings():  # its import scripts modules with torch.jit
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch_geometric.nn import NNConv, Set2Set
    except ImportError:
        raise ConfigError(f"model.encoder: 'graph' needs PyTorch Geometric: {_INSTALL}") from None
    return NNConv, Set2Set


# -- the table layout --------------------------------------------------------------------------


@dataclass(frozen=True)
class MoleculeLayout:
    """Where the atoms are among the numeric features: ``columns[slot][field]`` is the position
    of ``<prefix><slot>_<field>`` (field in :data:`FIELDS`); ``other`` the remaining numeric
    positions."""

    prefix: str
    columns: tuple[tuple[int, ...], ...]
    other: tuple[int, ...]

    @property
    def slots(self) -> int:
        return len(self.columns)


def molecule_layout(prefix: str, features: FeaturePreprocessor) -> MoleculeLayout:
    """The atom columns among ``features.numeric``; a ConfigError naming what is missing when
    there are none, a slot lacks a field, the slots are not numbered 0, 1, … or a column was
    imputed (pad absent atoms with 0 instead)."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)_({'|'.join(FIELDS)})")
    found: dict[int, dict[str, int]] = {}
    for position, name in enumerate(features.numeric):
        match = pattern.fullmatch(name)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = position
    if not found:
        shown = ", ".join(f"'{c}'" for c in features.numeric[:3]) or "none"
        raise ConfigError(
            f"model.encoder: 'graph' reads molecules from the numeric columns "
            f"{prefix}NN_number (atomic number, 0 = no atom), {prefix}NN_x, {prefix}NN_y, "
            f"{prefix}NN_z for atoms NN = 00, 01, …, but the data has no such column (numeric "
            f"features: {shown}); use data.source: qm9_graph or add them"
        )
    if sorted(found) != list(range(len(found))):
        absent = min(set(range(max(found) + 1)) - set(found))
        raise ConfigError(
            f"model.encoder: 'graph' needs the atom slots numbered 0, 1, … without a gap, but "
            f"the data has no {prefix}{absent:02d}_* columns (its highest slot is {max(found)})"
        )
    for _, fields in sorted(found.items()):
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            name = next(features.numeric[p] for p in fields.values())
            base = name.rsplit("_", 1)[0]
            raise ConfigError(
                f"model.encoder: 'graph' needs {', '.join(f'{base}_{f}' for f in FIELDS)} for "
                f"every atom, but the data lacks {', '.join(f'{base}_{f}' for f in missing)}"
            )
    names = {features.numeric[p] for fields in found.values() for p in fields.values()}
    imputed = [c for c in features.indicators if c in names]
    if imputed:
        raise ConfigError(
            f"model.encoder: 'graph' reads the atom columns as they are, but '{imputed[0]}' "
            "has missing values in the training rows; write 0 for absent atoms (number and "
            "coordinates) instead of leaving them empty"
        )
    columns = tuple(tuple(found[s][f] for f in FIELDS) for s in range(len(found)))
    used = {p for slot in columns for p in slot}
    other = tuple(p for p in range(len(features.numeric)) if p not in used)
    return MoleculeLayout(prefix, columns, other)


# -- molecules to graphs -----------------------------------------------------------------------


class MolecularGraph(NamedTuple):
    """A batch of molecules as one graph: node features ``x`` ``(n, 7)``, ``edge_index``
    ``(2, e)`` (source, target), ``edge_attr`` ``(e, 18)``, ``batch`` (the molecule of each
    node) and the number of molecules."""

    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    batch: Tensor
    num_graphs: int


def bond_matrix(numbers: Tensor, distances: Tensor) -> Tensor:
    """``(N, K, K)`` bool: atoms ``i ≠ j`` closer than their covalent radii plus the tolerance."""
    radii = torch.zeros(max(ELEMENTS) + 1, dtype=distances.dtype, device=distances.device)
    for element, radius in COVALENT_RADII.items():
        radii[element] = radius
    r = radii[numbers]
    present = numbers > 0
    pairs = present.unsqueeze(2) & present.unsqueeze(1)
    pairs &= ~torch.eye(numbers.shape[1], dtype=torch.bool, device=numbers.device)
    return pairs & (distances < r.unsqueeze(2) + r.unsqueeze(1) + BOND_TOLERANCE)


def molecular_graph(
    numbers: Tensor, positions: Tensor, *, edges: str = "bonds", cutoff: float = 5.0
) -> MolecularGraph:
    """The graph batch of ``N`` molecules given as ``numbers`` (long ``(N, K)``, 0 = no atom,
    else one of :data:`ELEMENTS`) and ``positions`` (``(N, K, 3)`` Å); see the module docs."""
    if edges not in ("bonds", "radius"):
        raise ValueError(f"edges must be 'bonds' or 'radius', not {edges!r}")
    n, slots = numbers.shape
    present = numbers > 0
    # from the differences, not cdist's |x|² + |y|² − 2x·y, which loses precision far from the
    # origin (a translated molecule would not keep its distances)
    distances = (positions.unsqueeze(2) - positions.unsqueeze(1)).norm(dim=-1)
    bonded = bond_matrix(numbers, distances)
    if edges == "bonds":
        linked = bonded
    else:
        linked = present.unsqueeze(2) & present.unsqueeze(1) & (distances < cutoff)
        linked &= ~torch.eye(slots, dtype=torch.bool, device=numbers.device)
    molecule, atom = torch.nonzero(present, as_tuple=True)
    node_of = torch.cumsum(present.reshape(-1), 0) - 1  # slot → node, for present atoms
    graph, target, source = torch.nonzero(linked, as_tuple=True)
    edge_index = torch.stack([node_of[graph * slots + source], node_of[graph * slots + target]])
    z = numbers[molecule, atom]
    elements = torch.tensor(ELEMENTS, device=numbers.device)
    one_hot = (z.unsqueeze(1) == elements).to(positions.dtype)
    hydrogens = (bonded & (numbers == 1).unsqueeze(1)).sum(dim=2)[molecule, atom]
    x = torch.cat(
        [one_hot, z.to(positions.dtype).unsqueeze(1), hydrogens.to(positions.dtype).unsqueeze(1)],
        dim=1,
    )
    d = distances[graph, target, source]
    centres = torch.linspace(0.0, cutoff, GAUSSIANS, device=d.device, dtype=d.dtype)
    width = cutoff / (GAUSSIANS - 1)
    gaussians = torch.exp(-(((d.unsqueeze(1) - centres) / width) ** 2) / 2)
    flag = bonded[graph, target, source].to(d.dtype).unsqueeze(1)
    edge_attr = torch.cat([flag, d.unsqueeze(1), gaussians], dim=1)
    return MolecularGraph(x, edge_index, edge_attr, molecule, n)


# -- the network -------------------------------------------------------------------------------


class GilmerMPNN(nn.Module):
    """Gilmer et al. (2017) MPNN as in PyG's QM9 example: embedding, ``message_steps`` rounds of
    edge-network ``NNConv`` (mean) + GRU with shared weights, then ``Set2Set``. Output
    ``(num_graphs, 2·dim)``."""

    def __init__(
        self,
        node_features: int,
        edge_features: int,
        *,
        dim: int = 64,
        message_steps: int = 3,
        set2set_steps: int = 3,
    ) -> None:
        super().__init__()
        nn_conv, set2set = import_pyg()
        self.embed = nn.Linear(node_features, dim)
        self.edge_network = nn.Sequential(
            nn.Linear(edge_features, EDGE_HIDDEN), nn.ReLU(), nn.Linear(EDGE_HIDDEN, dim * dim)
        )
        # NNConv applies its ``nn`` to the edge features of every call; the weights are shared
        # across the rounds, so the edge network runs once per batch and NNConv's ``nn`` only
        # passes its per-edge matrices through (the same function, a third of the work).
        self.conv = nn_conv(dim, dim, nn.Identity(), aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = set2set(dim, processing_steps=set2set_steps)
        self.message_steps = message_steps
        self.out_features = 2 * dim

    def forward(self, graph: MolecularGraph) -> Tensor:
        out = torch.relu(self.embed(graph.x))
        hidden = out.unsqueeze(0)
        matrices = self.edge_network(graph.edge_attr)  # (edges, dim·dim)
        for _ in range(self.message_steps):
            message = torch.relu(self.conv(out, graph.edge_index, matrices))
            out, hidden = self.gru(message.unsqueeze(0), hidden)
            out = out.squeeze(0)
        return self.set2set(out, graph.batch, dim_size=graph.num_graphs)


class AtomColumns(nn.Module):
    """Reads a batch's molecules back from the standardised atom columns of
    ``inputs["numeric"]`` (``z·std + mean`` with the fitted statistics of ``layout``'s columns);
    :meth:`rest` is the table's other features."""

    def __init__(self, layout: MoleculeLayout, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.prefix = layout.prefix
        columns = torch.tensor(layout.columns, dtype=torch.long)
        self.register_buffer("columns", columns, persistent=False)
        self.register_buffer("other", torch.tensor(layout.other, dtype=torch.long), False)
        stats = torch.tensor([mean, std], dtype=torch.float64)[:, columns]
        self.register_buffer("mean", stats[0].float(), persistent=False)
        self.register_buffer("std", stats[1].float(), persistent=False)

    def forward(self, numeric: Tensor) -> tuple[Tensor, Tensor]:
        """``(numbers (N, K) long, positions (N, K, 3))`` from the standardised columns; a
        DataError for an atomic number outside :data:`ELEMENTS` or a molecule without atoms."""
        raw = numeric.float()[:, self.columns] * self.std + self.mean  # (N, K, 4)
        rounded = torch.round(raw[..., 0])
        known = torch.tensor((0, *ELEMENTS), device=raw.device, dtype=rounded.dtype)
        bad = ((rounded.unsqueeze(-1) != known).all(-1)) | ((raw[..., 0] - rounded).abs() > 1e-3)
        if bool(bad.any()):
            row, slot = (int(i) for i in torch.nonzero(bad)[0])
            raise DataError(
                f"model.encoder: 'graph' knows the elements "
                f"{', '.join(f'{SYMBOLS[e]} ({e})' for e in ELEMENTS)} and 0 (no atom), but "
                f"'{self.prefix}{slot:02d}_number' holds {float(raw[row, slot, 0]):g} "
                f"({int(bad.sum())} value(s) in this batch)"
            )
        numbers = rounded.long()
        if not bool((numbers > 0).any(dim=1).all()):
            raise DataError(
                f"model.encoder: 'graph' found a molecule without atoms (every "
                f"'{self.prefix}NN_number' is 0); drop that row"
            )
        return numbers, raw[..., 1:]

    def rest(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The inputs without the atom columns."""
        return {"numeric": inputs["numeric"][:, self.other], "categorical": inputs["categorical"]}


def other_features(layout: MoleculeLayout, cardinalities: Sequence[int]) -> TabularEncoder | None:
    """The encoder of the table's features besides the atoms (``None`` when there are none)."""
    if not layout.other and not cardinalities:
        return None
    return TabularEncoder(len(layout.other), cardinalities, [])


def element_counts(numbers: Tensor) -> Tensor:
    """``(N, 5)``: the atoms of each element of :data:`ELEMENTS` in each molecule of
    ``numbers`` (long ``(N, K)``, 0 = no atom)."""
    elements = torch.tensor(ELEMENTS, device=numbers.device)
    return (numbers.unsqueeze(-1) == elements).sum(dim=1)


class ElementCountGate(nn.Module):
    """The gate of ``mmoe``/``cgc``/``ple`` over molecules: linear logits over the number of
    atoms of each element in :data:`ELEMENTS` (which, unlike the raw atom columns, do not change
    with atom order, rotation or translation) and the table's other features."""

    def __init__(
        self,
        layout: MoleculeLayout,
        mean: Sequence[float],
        std: Sequence[float],
        cardinalities: Sequence[int],
        n_experts: int,
    ) -> None:
        super().__init__()
        self.reader = AtomColumns(layout, mean, std)
        self.tabular = other_features(layout, cardinalities)
        width = len(ELEMENTS) + (self.tabular.out_features if self.tabular else 0)
        self.linear = nn.Linear(width, n_experts)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        numbers, _ = self.reader(inputs["numeric"])
        parts = [element_counts(numbers).to(self.linear.weight.dtype)]
        if self.tabular is not None:
            parts.append(self.tabular(self.reader.rest(inputs)))
        return self.linear(torch.cat(parts, dim=-1))


class GraphEncoder(nn.Module):
    """The ``graph`` input block: the atom columns of ``inputs["numeric"]`` back to raw values,
    the graph batch built on their device, :class:`GilmerMPNN`, joined with the element counts
    (``counts``) and the other features (:class:`~polytask.models.tabular.TabularEncoder`, when
    there are any) and projected to ``out_features`` + ReLU + dropout."""

    def __init__(
        self,
        layout: MoleculeLayout,
        mean: Sequence[float],
        std: Sequence[float],
        cardinalities: Sequence[int],
        out_features: int,
        *,
        edges: str = "bonds",
        cutoff: float = 5.0,
        dim: int = 64,
        message_steps: int = 3,
        set2set_steps: int = 3,
        counts: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.edges, self.cutoff, self.counts = edges, float(cutoff), counts
        self.reader = AtomColumns(layout, mean, std)
        self.mpnn = GilmerMPNN(
            NODE_FEATURES,
            EDGE_FEATURES,
            dim=dim,
            message_steps=message_steps,
            set2set_steps=set2set_steps,
        )
        self.tabular = other_features(layout, cardinalities)
        width = self.mpnn.out_features + (self.tabular.out_features if self.tabular else 0)
        width += len(ELEMENTS) if counts else 0
        self.project = nn.Sequential(nn.Linear(width, out_features), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = out_features

    def atoms(self, numeric: Tensor) -> tuple[Tensor, Tensor]:
        """The raw atoms of the standardised columns (:class:`AtomColumns`)."""
        return self.reader(numeric)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        numeric = inputs["numeric"]
        numbers, positions = self.atoms(numeric)
        graph = molecular_graph(numbers, positions, edges=self.edges, cutoff=self.cutoff)
        dtype = self.mpnn.embed.weight.dtype
        graph = graph._replace(x=graph.x.to(dtype), edge_attr=graph.edge_attr.to(dtype))
        parts = [self.mpnn(graph)]
        if self.counts:
            parts.append(element_counts(numbers).to(dtype))
        if self.tabular is not None:
            parts.append(self.tabular(self.reader.rest(inputs)))
        return self.project(torch.cat(parts, dim=-1))


def graph_block(
    options: GraphOptions, features: FeaturePreprocessor, out_features: int, dropout: float
) -> BlockFactory:
    layout = molecule_layout(options.prefix, features)
    import_pyg()  # the missing extra is reported now, before any training
    mean, std, cardinalities = list(features.mean), list(features.std), features.cardinalities

    def block() -> nn.Module:
        return GraphEncoder(
            layout,
            mean,
            std,
            cardinalities,
            out_features,
            edges=options.edges,
            cutoff=float(options.cutoff),
            dim=options.dim,
            message_steps=options.message_steps,
            set2set_steps=options.set2set_steps,
            counts=options.counts,
            dropout=dropout,
        )

    return block


def graph_gate(options: GraphOptions, features: FeaturePreprocessor) -> GateFactory:
    layout = molecule_layout(options.prefix, features)
    mean, std, cardinalities = list(features.mean), list(features.std), features.cardinalities
    return lambda n_experts: ElementCountGate(layout, mean, std, cardinalities, n_experts)


register_input_block("graph", GraphOptions, graph_block, gate=graph_gate)
