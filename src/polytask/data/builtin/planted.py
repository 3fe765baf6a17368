"""``planted``: regression tasks with known clusters, generated in the style of the synthetic data
of Ma et al. (2018), "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts" (KDD), generalised from a pair of tasks to clusters of tasks.

With K = ``clusters``, m = ``tasks_per_cluster``, d = ``features``, ρ_w = ``within``,
ρ_b = ``between``, σ = ``noise`` and N = ``rows`` (the options of
:class:`~polytask.config.PlantedConfig`):

1. Orthonormal directions u_1 … u_K (one per cluster) and e_{k,t} (one per task) in R^d: the
   Q factor of a d × (K + K·m) standard normal matrix.
2. Cluster centres v_k = Σ_j (C^½)_{jk} u_j with C = (1 − γ) I_K + γ 1 1ᵀ and γ = ρ_b / ρ_w
   (γ = 0 when ρ_w = 0): unit vectors with pairwise cosine γ.
3. Task weights w_{k,t} = √ρ_w · v_k + √(1 − ρ_w) · e_{k,t}: unit vectors whose cosine is ρ_w
   between two tasks of a cluster, ρ_b between tasks of different clusters and √ρ_w to their own
   centre. (K = 2, m = 1, ρ_w = 1 is the paper's pair of tasks with cosine p = ρ_b.)
4. Inputs x_n ~ N(0, I_d), n = 1 … N; α_i, β_i ~ N(0, 1), i = 1 … 10, shared by every task.
5. Targets y_{n,k,t} = z + Σ_i sin(α_i z + β_i) + σ ε_{n,k,t} with z = w_{k,t}ᵀ x_n and
   ε ~ N(0, 1) independent per row and task.

It needs −ρ_w / (K − 1) ≤ ρ_b ≤ ρ_w, 0 ≤ ρ_w ≤ 1 and d ≥ K + K·m (checked by the config).
Structure, inputs and noise come from separate streams of ``seed``: the same seed gives the same
table, and the weights do not depend on ``rows`` or ``noise``. Columns: features ``x00`` …,
targets ``c0_t0`` … (cluster k, task t). Nothing is shipped or fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from polytask.config import PLANTED, PlantedConfig
from polytask.data.builtin.base import BuiltinDataset

SINES = 10
"""Number of sine terms in every target (the α_i, β_i above)."""

SPLIT = {"validation": 0.15, "test": 0.15}


@dataclass(frozen=True)
class PlantedStructure:
    """What the generator draws before any row: task weights and the shared non-linearity."""

    task_names: list[str]
    centres: np.ndarray
    """(clusters, features): the unit cluster centres v_k."""
    weights: np.ndarray
    """(tasks, features): the unit task weight vectors w_{k,t}, rows in ``task_names`` order."""
    alphas: np.ndarray
    betas: np.ndarray

    def signal(self, inputs: np.ndarray) -> np.ndarray:
        """(rows, tasks) noiseless targets z + Σ_i sin(α_i z + β_i), z = inputs @ wᵀ."""
        z = inputs @ self.weights.T
        return z + np.sin(z[..., None] * self.alphas + self.betas).sum(axis=-1)


def planted_clusters(options: PlantedConfig) -> list[list[str]]:
    """The true clusters: task names grouped by the cluster they were generated from."""
    return [
        [f"c{k}_t{t}" for t in range(options.tasks_per_cluster)] for k in range(options.clusters)
    ]


def planted_task_names(options: PlantedConfig) -> list[str]:
    """Every task (target column) name, cluster by cluster."""
    return [name for cluster in planted_clusters(options) for name in cluster]


def planted_structure(options: PlantedConfig) -> PlantedStructure:
    """The cluster centres, task weights and sine parameters for ``options`` (see the module)."""
    k, m, d = options.clusters, options.tasks_per_cluster, options.features
    rng = np.random.default_rng(np.random.SeedSequence(options.seed).spawn(3)[0])
    q, r = np.linalg.qr(rng.standard_normal((d, k + k * m)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # a unique factor: Haar-distributed directions
    gamma = options.between / options.within if options.within > 0 else 0.0
    gram = (1 - gamma) * np.eye(k) + gamma * np.ones((k, k))
    values, vectors = np.linalg.eigh(gram)
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    centres = (q[:, :k] @ root).T
    private = q[:, k:].T
    weights = np.sqrt(options.within) * np.repeat(centres, m, axis=0)
    weights += np.sqrt(1 - options.within) * private
    alphas, betas = rng.standard_normal((2, SINES))
    return PlantedStructure(planted_task_names(options), centres, weights, alphas, betas)


def generate_planted(options: PlantedConfig) -> pd.DataFrame:
    """The table: ``rows`` × (``features`` inputs + one target column per task)."""
    _, inputs_seed, noise_seed = np.random.SeedSequence(options.seed).spawn(3)
    structure = planted_structure(options)
    inputs = np.random.default_rng(inputs_seed).standard_normal((options.rows, options.features))
    noise = np.random.default_rng(noise_seed).standard_normal(
        (options.rows, len(structure.weights))
    )
    targets = structure.signal(inputs) + options.noise * noise
    width = len(str(options.features - 1))
    frame = pd.DataFrame(inputs, columns=[f"x{j:0{width}d}" for j in range(options.features)])
    frame[structure.task_names] = targets
    return frame


@dataclass(frozen=True)
class PlantedDataset(BuiltinDataset):
    """The generated built-in: neither shipped nor fetched; its tasks follow its ``options``."""

    options: PlantedConfig = field(default_factory=PlantedConfig)

    def __post_init__(self) -> None:
        if self.file is not None or self.fetch is not None:
            raise ValueError(f"built-in dataset '{self.name}' is generated: no file, no fetch")

    def with_options(self, options: PlantedConfig) -> PlantedDataset:
        """The same dataset generated with other options (its tasks follow them)."""
        return replace(self, options=options, tasks=planted_tasks(options))

    def load(self) -> pd.DataFrame:
        return generate_planted(self.options)

    @property
    def state(self) -> str:
        return "generated"

    def rows(self) -> int | None:
        return self.options.rows

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A complete config with every task, the split and ``data.planted`` set to our options
        (a ``data`` override replaces that section whole)."""
        data = {"source": self.name, "split": self.split, "planted": self.options.model_dump()}
        return super().config(**{"data": data, **overrides})


def planted_tasks(options: PlantedConfig) -> list[dict[str, Any]]:
    """The config entries of every task: one regression target each."""
    return [{"name": name, "type": "regression"} for name in planted_task_names(options)]


def planted_dataset(options: PlantedConfig | None = None) -> PlantedDataset:
    """The ``planted`` built-in with ``options`` (defaults: 3 clusters × 3 tasks, 6000 × 20)."""
    options = options or PlantedConfig()
    return PlantedDataset(
        name=PLANTED,
        description="Regression tasks with planted clusters (MMoE-style); sizes from data.planted",
        licence="generated by polytask",
        tasks=planted_tasks(options),
        split=SPLIT,
        options=options,
    )
