"""The run directory layout: where a run keeps its files, how a new run's folder is named and
which folder ``--resume`` continues.

Layout::

    <output_dir>/<name>/            one per run; a new run never reuses a finished run's folder
      config.json                   the resolved config
      data.json                     fitted feature encoder and tasks (for predict/evaluate)
      checkpoint/                   per-epoch checkpoint for --resume
      model.safetensors             the selected (best-validation) multi-task weights
      metrics.json                  per-task metrics, Δm, parameters, wall time, history
      failed.json                   instead of the two above when the training diverged
      loss_curves.png               per-task training and validation loss (and the baselines')
      balancer_weights.png          the balancer's task weights over training (if they vary)
    <output_dir>/baselines/<task>-<hash>/   single-task baselines, reused across runs
      checkpoint/, model.safetensors, metrics.json
    <output_dir>/<name>-comparison.json     ``polytask compare``'s mean ± std per balancer

A new run of ``<name>`` gets ``<name>``, else ``<name>-2``, ``<name>-3``…; a run is finished
once its ``metrics.json`` is written (always the last file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polytask.errors import RunError

CONFIG = "config.json"
DATA = "data.json"
CHECKPOINT = "checkpoint"
MODEL = "model.safetensors"
METRICS = "metrics.json"
FAILED = "failed.json"
LOSS_CURVES = "loss_curves.png"
BALANCER_WEIGHTS = "balancer_weights.png"
BASELINES = "baselines"

REQUIRED = (CONFIG, DATA, MODEL, METRICS)
"""The files :func:`polytask.predict.load_run` needs, in the order it checks them."""


@dataclass(frozen=True)
class RunDir:
    """The paths inside one run folder (or one baseline folder, which holds only the
    checkpoint, the weights and the metrics)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def data(self) -> Path:
        return self.path / DATA

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def failed(self) -> Path:
        """Written instead of the weights and metrics when the training diverged."""
        return self.path / FAILED

    @property
    def loss_curves(self) -> Path:
        return self.path / LOSS_CURVES

    @property
    def balancer_weights(self) -> Path:
        return self.path / BALANCER_WEIGHTS

    @property
    def finished(self) -> bool:
        """Whether the run wrote its last file, ``metrics.json``."""
        return self.metrics.is_file()

    def missing(self) -> list[str]:
        """The files of :data:`REQUIRED` that are not there."""
        return [name for name in REQUIRED if not (self.path / name).is_file()]


def baselines_folder(output: Path) -> Path:
    """The folder holding the single-task baselines of every run under ``output``."""
    return Path(output) / BASELINES


def baseline_dir(folder: Path, task: str, key: str) -> RunDir:
    """The baseline of ``task`` whose settings hash to ``key``, in the baselines ``folder``."""
    return RunDir(Path(folder) / f"{task}-{key}")


def comparison_path(output: Path, name: str) -> Path:
    """Where ``polytask compare`` writes its summary of the runs named ``name``."""
    return Path(output) / f"{name}-comparison.json"


def run_dir_for(output: Path, name: str, *, resume: bool) -> RunDir:
    """A fresh folder for a new run (:func:`new_run_dir`), or the latest unfinished one for
    ``--resume`` (:func:`unfinished_run_dir`)."""
    return unfinished_run_dir(output, name) if resume else new_run_dir(output, name)


def new_run_dir(output: Path, name: str) -> RunDir:
    """Create and return ``output/name``, or ``name-2``, ``name-3``… if it exists."""
    output = Path(output)
    path, suffix = output / name, 1
    while path.exists():
        suffix += 1
        path = output / f"{name}-{suffix}"
    path.mkdir(parents=True)
    return RunDir(path)


def unfinished_run_dir(output: Path, name: str) -> RunDir:
    """The most recently modified run folder of ``name`` without ``metrics.json``."""
    output = Path(output)
    candidates = sorted(
        (p for p in output.glob(f"{name}*") if p.is_dir() and is_run_of(p.name, name)),
        key=lambda p: p.stat().st_mtime,
    )
    unfinished = [RunDir(p) for p in candidates if not RunDir(p).finished]
    if not unfinished:
        raise RunError(f"{output}: no unfinished run named '{name}' to resume")
    return unfinished[-1]


def is_run_of(folder: str, name: str) -> bool:
    """Whether a folder called ``folder`` is a run of ``name``: ``name`` or ``name-<n>``."""
    rest = folder[len(name) :]
    return folder.startswith(name) and (rest == "" or (rest.startswith("-") and rest[1:].isdigit()))
