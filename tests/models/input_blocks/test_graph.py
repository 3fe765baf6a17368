"""The ``graph`` input block on hand-made molecules: bonds against the known ones, the encoder's
invariance to atom order, rotation and translation, every architecture over it, a run through
the command line (train, predict, export refused) and the bad inputs (no molecule columns, the
missing extra, unknown elements)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.config import InputBlockConfig, ModelConfig
from polytask.data.builtin.qm9 import atom_columns
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError, DataError
from polytask.models.build import build_network
from polytask.models.input_blocks import GraphEncoder, GraphOptions, molecular_graph
from polytask.models.input_blocks.graph import element_counts, graph_block, molecule_layout
from polytask.tasks import task_from_dict

from ...test_cli import assert_clean_error, run_cli

SLOTS = 6
_ANGLE = math.radians(104.5)
_WATER_H = (0.9572 * math.cos(_ANGLE), 0.9572 * math.sin(_ANGLE), 0)
_N_H = [(0.9377 * math.cos(a), 0.9377 * math.sin(a), -0.381) for a in (0, 2.0944, 4.1888)]
_C_H = [(0.629 * x, 0.629 * y, 0.629 * z) for x, y, z in ((1, 1, 1), (-1, -1, 1), (-1, 1, -1))]
_C_H += [(0.629, -0.629, -0.629)]
MOLECULES = {  # (atomic number, x, y, z) in Å; bonds as pairs of atom positions
    "water": ([(8, 0, 0, 0), (1, 0.9572, 0, 0), (1, *_WATER_H)], {(0, 1), (0, 2)}),
    "methane": ([(6, 0, 0, 0), *[(1, *xyz) for xyz in _C_H]], {(0, 1), (0, 2), (0, 3), (0, 4)}),
    "ammonia": ([(7, 0, 0, 0), *[(1, *xyz) for xyz in _N_H]], {(0, 1), (0, 2), (0, 3)}),
    "hydrogen_cyanide": ([(1, -1.064, 0, 0), (6, 0, 0, 0), (7, 1.156, 0, 0)], {(0, 1), (1, 2)}),
}
_REGRESSION = {"type": "regression", "name": "a", "columns": ("a",), "mean": (0.0,), "std": (1.0,)}
TASKS = [
    task_from_dict(_REGRESSION),
    task_from_dict({"type": "multiclass", "name": "b", "columns": ("b",), "classes": ("x", "y")}),
]


def rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def row(atoms, *, order=None, rotate=None, shift=(0.0, 0.0, 0.0)) -> list[float]:
    """One table row: the atoms in ``order`` of the slots (padding included), moved."""
    slots = np.zeros((SLOTS, 4))
    slots[: len(atoms)] = atoms
    xyz = slots[:, 1:] @ (rotate if rotate is not None else np.eye(3)).T + np.asarray(shift)
    slots[:, 1:] = np.where(slots[:, :1] > 0, xyz, 0.0)
    if order is not None:
        slots = slots[order]
    return slots.reshape(-1).tolist()


def table(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=atom_columns(SLOTS))


@pytest.fixture(scope="module")
def fitted() -> FeaturePreprocessor:
    """Standardisation fitted on the molecules in random poses (non-trivial means and stds)."""
    rows = [
        row(atoms, rotate=rotation(seed), shift=np.random.default_rng(seed).normal(size=3))
        for seed in range(6)
        for atoms, _ in MOLECULES.values()
    ]
    return FeaturePreprocessor(atom_columns(SLOTS), []).fit(table(rows))


def encoder(fitted: FeaturePreprocessor, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return graph_block(GraphOptions(dim=16, **options), fitted, 8, 0.0)()


# --- molecules to graphs ----------------------------------------------------------------------


def test_bonds_are_the_known_bonds_and_nodes_count_their_hydrogens():
    raw = torch.tensor([row(atoms) for atoms, _ in MOLECULES.values()]).reshape(-1, SLOTS, 4)
    graph = molecular_graph(raw[..., 0].long(), raw[..., 1:])
    assert graph.num_graphs == 4 and graph.batch.tolist() == [0] * 3 + [1] * 5 + [2] * 4 + [3] * 3
    first = torch.tensor([0, 3, 8, 12])  # node of each molecule's first atom
    for m, (_, bonds) in enumerate(MOLECULES.values()):
        edges = {
            (int(s) - int(first[m]), int(t) - int(first[m]))
            for s, t in graph.edge_index.T
            if graph.batch[s] == m
        }
        assert edges == bonds | {(j, i) for i, j in bonds}
    assert graph.x[:, :5].argmax(1).tolist() == [3, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 2]
    assert graph.x[:, 5].tolist() == [8, 1, 1, 6, 1, 1, 1, 1, 7, 1, 1, 1, 1, 6, 7]
    assert graph.x[:, 6].tolist() == [2, 0, 0, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0]
    assert torch.all(graph.edge_attr[:, 0] == 1)  # every edge is a bond
    lengths = [0.9572] * 4 + [1.0895] * 8 + [1.012] * 6 + [1.064, 1.064, 1.156, 1.156]
    assert graph.edge_attr[:, 1].tolist() == pytest.approx(lengths, abs=1e-3)


def test_a_radius_graph_links_every_pair_within_the_cutoff():
    atoms = MOLECULES["water"][0]
    raw = torch.tensor([row(atoms)]).reshape(1, SLOTS, 4)
    near = molecular_graph(raw[..., 0].long(), raw[..., 1:], edges="radius", cutoff=1.2)
    assert near.edge_index.shape[1] == 4  # H–H (1.51 Å) is beyond 1.2 Å
    full = molecular_graph(raw[..., 0].long(), raw[..., 1:], edges="radius", cutoff=5.0)
    assert full.edge_index.shape[1] == 6
    assert sorted(full.edge_attr[:, 0].tolist()) == [0, 0, 1, 1, 1, 1]  # bonded flag


def test_the_block_reads_the_raw_atoms_back_from_standardised_columns(fitted):
    atoms = MOLECULES["methane"][0]
    frame = table([row(atoms, rotate=rotation(9), shift=(3.0, -2.0, 1.0))])
    numbers, positions = encoder(fitted).atoms(fitted.transform(frame)["numeric"])
    raw = np.asarray(frame.iloc[0]).reshape(SLOTS, 4)
    assert numbers[0].tolist() == raw[:, 0].astype(int).tolist()
    assert positions[0].numpy() == pytest.approx(raw[:, 1:], abs=1e-5)


# --- invariance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [{"edges": "bonds"}, {"edges": "radius"}, {"counts": True}], ids=str
)
def test_the_encoding_ignores_atom_order_rotation_and_translation(fitted, options):
    block = encoder(fitted, **options).eval()
    molecules = [atoms for atoms, _ in MOLECULES.values()]
    base = table([row(atoms) for atoms in molecules])
    rng = np.random.default_rng(1)
    moved = table(
        [
            row(atoms, order=rng.permutation(SLOTS), rotate=rotation(i), shift=(15.0, -40.0, 25.0))
            for i, atoms in enumerate(molecules)
        ]
    )
    with torch.no_grad():
        before = block(fitted.transform(base))
        after = block(fitted.transform(moved))
    assert torch.allclose(before, after, atol=1e-5)
    assert (before[0] - before[1]).abs().max() > 1e-3  # the molecules still differ


def test_counts_join_the_element_counts_to_the_readout(fitted):
    """``counts: true``: the projection reads the 5 element counts right after the readout
    (with the readout's weights zeroed, the block is ``relu(W·counts + b)``)."""
    numbers = torch.tensor([[8, 1, 1, 0], [6, 1, 1, 1]])
    assert element_counts(numbers).tolist() == [[2, 0, 0, 1, 0], [3, 1, 0, 0, 0]]
    block = encoder(fitted, counts=True).eval()
    linear = block.project[0]
    readout = encoder(fitted).project[0].in_features
    assert linear.in_features == readout + 5
    with torch.no_grad():
        linear.weight[:, :readout] = 0
    molecules = [atoms for atoms, _ in MOLECULES.values()]
    inputs = fitted.transform(table([row(atoms) for atoms in molecules]))
    counts = torch.tensor([[2, 0, 0, 1, 0], [4, 1, 0, 0, 0], [3, 0, 1, 0, 0], [1, 1, 1, 0, 0]])
    expected = torch.relu(counts.float() @ linear.weight[:, readout:].T + linear.bias)
    with torch.no_grad():
        assert torch.allclose(block(inputs), expected, atol=1e-6)


# --- architectures and training --------------------------------------------------------------


@pytest.mark.parametrize(
    "arch",
    [{"arch": "hard"}, {"arch": "mmoe", "experts": 2}, {"arch": "ple"}, {"arch": "cross_stitch"}],
    ids=lambda a: a["arch"],
)
def test_every_architecture_runs_over_the_graph_block_and_keeps_its_invariance(fitted, arch):
    """The whole model, gates included (``mmoe``/``ple`` gate on element counts, not on the raw
    atom columns), gives the same outputs for moved and reordered molecules."""
    encoder_config = InputBlockConfig(type="graph", dim=8, message_steps=2)
    config = ModelConfig(trunk=[8, 4], head=[], encoder=encoder_config, **arch)
    torch.manual_seed(0)
    model = build_network(config, fitted, TASKS)
    assert sum(isinstance(m, GraphEncoder) for m in model.modules()) >= 1
    molecules = [atoms for atoms, _ in MOLECULES.values()]
    inputs = fitted.transform(table([row(a) for a in molecules]))
    out = model(inputs)
    assert out["a"].shape == (4, 1) and out["b"].shape == (4, 2)
    out["a"].sum().backward()
    rng = np.random.default_rng(2)
    moved = [
        row(a, order=rng.permutation(SLOTS), rotate=rotation(i)) for i, a in enumerate(molecules)
    ]
    with torch.no_grad():
        again = model.eval()(fitted.transform(table(moved)))
        first = model(inputs)
    for name in ("a", "b"):
        assert torch.allclose(first[name], again[name], atol=1e-5)


def molecule_table(n: int = 48) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    names = list(MOLECULES)
    picks = [names[i % len(names)] for i in range(n)]
    frame = table([row(MOLECULES[p][0], rotate=rotation(i)) for i, p in enumerate(picks)])
    hydrogens = [sum(a[0] == 1 for a in MOLECULES[p][0]) for p in picks]
    frame["hydrogens"] = np.asarray(hydrogens) + rng.normal(0, 0.1, size=n)
    frame["has_oxygen"] = ["yes" if p == "water" else "no" for p in picks]
    return frame


def test_train_predict_and_refused_export_through_the_cli(monkeypatch, capsys, tmp_path):
    molecule_table().to_csv(tmp_path / "molecules.csv", index=False)
    (tmp_path / "graph.yaml").write_text(
        "name: molecules\n"
        "data: {source: molecules.csv, split: {validation: 0.25, test: 0.25}}\n"
        "tasks: [{name: hydrogens, type: regression}, {name: has_oxygen, type: binary}]\n"
        "model: {trunk: [8], head: [], encoder: {type: graph, dim: 8, edges: radius}}\n"
        f"training: {{epochs: 1, batch_size: 16, lr: 0.01}}\noutput_dir: {tmp_path / 'runs'}\n"
    )
    code, _, err = run_cli(monkeypatch, capsys, "train", tmp_path / "graph.yaml", "--no-baselines")
    assert code == 0, err
    run_dir = next((tmp_path / "runs").iterdir())
    table_path, out = tmp_path / "molecules.csv", tmp_path / "p.csv"
    code, _, err = run_cli(monkeypatch, capsys, "predict", run_dir, table_path, "-o", out)
    assert code == 0, err
    assert len(pd.read_csv(out)) == 48
    code, _, err = run_cli(monkeypatch, capsys, "export", run_dir)
    assert_clean_error(code, err, "the input block 'graph' cannot be exported to ONNX")
    assert not (run_dir / "model.onnx").exists()


# --- bad input --------------------------------------------------------------------------------


def test_a_table_without_molecules_is_a_config_error_naming_the_columns(
    monkeypatch, capsys, tmp_path
):
    frame = pd.DataFrame({"x1": np.arange(20.0), "y": np.arange(20.0) % 3})
    frame.to_csv(tmp_path / "plain.csv", index=False)
    (tmp_path / "plain.yaml").write_text(
        "data: {source: plain.csv}\ntasks: [{name: y, type: regression}]\n"
        "model: {encoder: {type: graph}}\ntraining: {epochs: 1}\n"
        f"output_dir: {tmp_path / 'runs'}\n"
    )
    code, _, err = run_cli(monkeypatch, capsys, "train", tmp_path / "plain.yaml")
    assert_clean_error(code, err, "model.encoder: 'graph' reads molecules", "atomNN_number", "'x1'")


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["atom00_number", "atom00_x", "atom00_y"], "lacks atom00_z"),
        ([*atom_columns(3)[:4], *atom_columns(3)[8:]], "no atom01_* columns"),
    ],
)
def test_incomplete_molecule_columns_are_config_errors(columns, message):
    features = FeaturePreprocessor(columns, [], [0.0] * len(columns), [1.0] * len(columns))
    with pytest.raises(ConfigError, match="model.encoder") as info:
        molecule_layout("atom", features)
    assert message in str(info.value)


def test_imputed_atom_columns_are_refused():
    frame = table([row(a) for a, _ in MOLECULES.values()])
    frame.loc[0, "atom05_x"] = np.nan
    features = FeaturePreprocessor(atom_columns(SLOTS), [], missing="impute").fit(frame)
    with pytest.raises(ConfigError, match="'atom05_x' has missing values"):
        molecule_layout("atom", features)


def test_the_missing_extra_names_the_pip_command(monkeypatch, fitted):
    monkeypatch.setitem(sys.modules, "torch_geometric.nn", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'polytask\[graph\]'"):
        graph_block(GraphOptions(), fitted, 8, 0.0)


def test_unknown_elements_and_empty_molecules_are_data_errors(fitted):
    block = encoder(fitted)
    sulphur = table([row([(16, 0, 0, 0), (1, 1.34, 0, 0)])])
    with pytest.raises(DataError, match="'atom00_number' holds 16"):
        block(fitted.transform(sulphur))
    with pytest.raises(DataError, match="a molecule without atoms"):
        block(fitted.transform(table([[0.0] * SLOTS * 4])))
