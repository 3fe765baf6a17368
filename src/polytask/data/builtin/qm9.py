"""QM9 (Ramakrishnan et al., 2014), 130,831 small organic molecules with DFT properties, from the
qm9pack 1.0.3 wheel (``qm9pack/data/qm9_part{1,2,3}.csv``, 101 MB download, 225 MB of CSV).

Inputs are simple descriptors computed here, with no chemistry toolkit: atom counts
(C, H, N, O, F, all, heavy), bond and ring counts read from the SMILES string (``=``, ``#``,
ring closures; the SMILES are Kekulé), rotational constants A/B/C (log GHz; geometry only) and two
geometry sizes from the XYZ coordinates (radius of gyration, largest interatomic distance).
DFT outputs that would give targets away (Mulliken charges, harmonic frequencies, which sum to
the ZPVE) are not used.

Targets: the 11 properties of the usual multi-task QM9 benchmark (μ, α, HOMO, LUMO, ⟨R²⟩, ZPVE,
U0, U, H, G, Cv). Fixed split (seed 0): 110,000 train, 10,000 validation, the rest test.
``qm9_small`` keeps 10,000 / 2,000 / 2,000 of those rows for quick runs.

``qm9_graph`` / ``qm9_graph_small``: the same molecules, targets and split rows, with the atoms
themselves as inputs instead of descriptors, for ``model.encoder: {type: graph}``: per atom slot
``atomNN_number`` (atomic number), ``atomNN_x``, ``_y``, ``_z`` (Å, the qm9pack geometry) for
NN = 00…28 (QM9 molecules have at most 29 atoms), in the file's atom order, 0 = no atom.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from polytask.data.fetch import PackageFiles
from polytask.errors import DataError

MEMBERS = tuple(f"qm9pack/data/qm9_part{i}.csv" for i in (1, 2, 3))
TARGETS = {
    "Dipole_debye": "mu",
    "Polarizability_bohr3": "alpha",
    "HOMO_au": "homo",
    "LUMO_au": "lumo",
    "R2_bohr2": "r2",
    "ZPVE_au": "zpve",
    "InternalEnergy_0K_au": "u0",
    "InternalEnergy_298K_au": "u298",
    "Enthalphy_298K_au": "h298",
    "GibbsFreeEnergy_298K_au": "g298",
    "Heatcapacity_Cv_cal_mol_K": "cv",
}
DESCRIPTORS = [
    "n_c",
    "n_h",
    "n_n",
    "n_o",
    "n_f",
    "n_atoms",
    "n_heavy",
    "n_double",
    "n_triple",
    "n_ring_closures",
    "log_rot_a",
    "log_rot_b",
    "log_rot_c",
    "radius_of_gyration",
    "max_distance",
]
MAX_ATOMS = 29
ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
SIZES = {"train": 110_000, "validation": 10_000}
SMALL = {"train": 10_000, "validation": 2_000, "test": 2_000}
_NUMBER = re.compile(r"-?\d+\.?\d*(?:[eE][-+]?\d+)?")
_RING = re.compile(r"%\d\d|(?<![A-Za-z\[])\d")
_SYMBOL = re.compile(r"[A-Z][a-z]?")


def atom_columns(slots: int = MAX_ATOMS) -> list[str]:
    """``atom00_number, atom00_x, atom00_y, atom00_z, atom01_number, …`` for ``slots`` atoms."""
    return [f"atom{i:02d}_{f}" for i in range(slots) for f in ("number", "x", "y", "z")]


def _geometry(xyz: str) -> tuple[float, float]:
    coords = np.asarray(_NUMBER.findall(xyz), dtype=float).reshape(-1, 3)  # "0." is not JSON
    centred = coords - coords.mean(axis=0)
    gyration = float(np.sqrt((centred**2).sum(axis=1).mean()))
    diff = coords[:, None, :] - coords[None, :, :]
    return gyration, float(np.sqrt((diff**2).sum(-1)).max())


def descriptors(raw: pd.DataFrame) -> pd.DataFrame:
    """The :data:`DESCRIPTORS` of each molecule (see module docs)."""
    counts = np.array([json.loads(s) for s in raw["Stoichiometry"]], dtype=float)
    smiles = raw["SMILES"].astype(str)
    # Stoichiometry lists the counts as [H, C, N, O, F]
    out = pd.DataFrame({f"n_{e}": counts[:, i] for i, e in enumerate("hcnof")})
    out = out[["n_c", "n_h", "n_n", "n_o", "n_f"]]
    out["n_atoms"] = raw["N_atoms"].to_numpy(dtype=float)
    out["n_heavy"] = out["n_atoms"] - out["n_h"]
    out["n_double"] = smiles.str.count("=").to_numpy(dtype=float)
    out["n_triple"] = smiles.str.count("#").to_numpy(dtype=float)
    out["n_ring_closures"] = smiles.map(lambda s: len(_RING.findall(s)) / 2).to_numpy()
    for axis in "ABC":
        rot = pd.to_numeric(raw[f"Rot{axis}_GHz"], errors="coerce").to_numpy(dtype=float)
        out[f"log_rot_{axis.lower()}"] = np.log10(np.clip(rot, 1e-3, None))
    geometry = np.array([_geometry(x) for x in raw["XYZ_Ang"]])
    out["radius_of_gyration"], out["max_distance"] = geometry[:, 0], geometry[:, 1]
    return out


def atoms(raw: pd.DataFrame) -> pd.DataFrame:
    """The :func:`atom_columns` of each molecule from its ``Elements`` and ``XYZ_Ang`` (Å)."""
    table = np.zeros((len(raw), MAX_ATOMS, 4), dtype=np.float32)
    for row, (elements, xyz) in enumerate(zip(raw["Elements"], raw["XYZ_Ang"], strict=True)):
        symbols = _SYMBOL.findall(str(elements))
        coords = np.asarray(_NUMBER.findall(str(xyz)), dtype=np.float32)
        unknown = set(symbols) - set(ATOMIC_NUMBERS)
        if not symbols or unknown or len(coords) != 3 * len(symbols):
            raise DataError(f"qm9pack row {row + 1}: cannot read atoms {elements!r} at {xyz!r}")
        if len(symbols) > MAX_ATOMS:
            raise DataError(f"qm9pack row {row + 1}: {len(symbols)} atoms, more than {MAX_ATOMS}")
        numbers = [ATOMIC_NUMBERS[e] for e in symbols]
        coords = coords.reshape(-1, 3)
        table[row, : len(numbers), 0] = numbers
        table[row, : len(numbers), 1:] = coords
    return pd.DataFrame(table.reshape(len(raw), -1), columns=atom_columns())


def _read(files: Mapping[str, bytes], inputs: list[str]) -> pd.DataFrame:
    columns = ["Index", "SMILES", *inputs, *TARGETS]
    return pd.concat(
        [pd.read_csv(io.BytesIO(files[m]), usecols=columns) for m in MEMBERS], ignore_index=True
    )


def _with_targets_and_split(inputs: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """``inputs`` after the index and SMILES, then the targets and the fixed seeded split (the
    same rows for every converter: it depends on the number of molecules only)."""
    frame = inputs
    frame.insert(0, "smiles", raw["SMILES"].astype(str))
    frame.insert(0, "index", raw["Index"].astype(int))
    for source, name in TARGETS.items():
        frame[name] = pd.to_numeric(raw[source], errors="coerce")
    order = np.random.default_rng(0).permutation(len(frame))
    split = np.full(len(frame), "test", dtype=object)
    n_train = min(SIZES["train"], int(0.85 * len(frame)))  # 110,000 of 130,831
    n_val = min(SIZES["validation"], int(0.08 * len(frame)))  # 10,000
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "validation"
    frame["split"] = split
    frame["order"] = np.argsort(order)  # rank in the seeded permutation, used by subsample()
    return frame


def convert(files: Mapping[str, bytes]) -> pd.DataFrame:
    """The descriptor table (``qm9``)."""
    columns = ["N_atoms", "Stoichiometry", "XYZ_Ang", *(f"Rot{a}_GHz" for a in "ABC")]
    raw = _read(files, columns)
    return _with_targets_and_split(descriptors(raw), raw)


def convert_graph(files: Mapping[str, bytes]) -> pd.DataFrame:
    """The atom table (``qm9_graph``)."""
    raw = _read(files, ["Elements", "XYZ_Ang"])
    return _with_targets_and_split(atoms(raw), raw)


def subsample(frame: pd.DataFrame, sizes: Mapping[str, int] = SMALL) -> pd.DataFrame:
    """The first ``sizes[split]`` rows of each split in the seeded order (deterministic)."""
    ranked = frame.sort_values("order")
    parts = [ranked[ranked["split"] == s].head(n) for s, n in sizes.items()]
    return pd.concat(parts).sort_index().reset_index(drop=True)


QM9 = PackageFiles(
    cache_name="qm9",
    package="qm9pack",
    version="1.0.3",
    filename="qm9pack-1.0.3-py3-none-any.whl",
    sha256="1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0",
    members=MEMBERS,
    convert=convert,
)
QM9_GRAPH = PackageFiles(
    cache_name="qm9_graph",
    package=QM9.package,
    version=QM9.version,
    filename=QM9.filename,
    sha256=QM9.sha256,
    members=MEMBERS,
    convert=convert_graph,
)
TASKS = [{"name": name, "type": "regression", "target": name} for name in TARGETS.values()]
FEATURES = {"numeric": DESCRIPTORS}
GRAPH_FEATURES = {"numeric": atom_columns()}
GRAPH_MODEL = {"encoder": {"type": "graph"}}
