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
      affinity.csv, affinity.png    task affinity (with evaluation.affinity), heatmap by cluster
      groups-k<k>.yaml              ``polytask affinity``: a ``groups`` config per k
      learning_rates.png            each parameter group's learning rate per epoch (if one varies)
      task_relationships.csv, .png  learned task correlations (architectures that learn them: mtrl)
      tensorboard/                  event files (logging.tensorboard; hparams/: add_hparams)
      .lock, .owner                 held by the process writing the run; .owner: its pid and host
    <output_dir>/baselines/<task>-<hash>/   single-task baselines, reused across runs
      checkpoint/, model.safetensors, metrics.json, .lock, .owner
    <output_dir>/mlflow.db, mlflow-artifacts/  the default MLflow store (logging.mlflow)
    <output_dir>/<name>-comparison.json     ``polytask compare``'s mean ± std per balancer
    <output_dir>/<name>-seeds.json          ``polytask train --seeds``: per-task verdicts over seeds
    <output_dir>/<name>-auto/               ``polytask auto``'s study folder (auto.json,
                                            leaderboard.csv, final.json, best.yaml…; see
                                            :mod:`polytask.auto.run`)

``polytask report DIR`` writes ``report.html`` into a run or study folder.

A new run of ``<name>`` gets ``<name>``, else ``<name>-2``, ``<name>-3``…; a run is finished
once its ``metrics.json`` is written (always the last file). One process at a time writes a run
or a baseline: it holds the folder's lock (:meth:`RunDir.hold`); the lock dies with its process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from polytask.config import is_plain_name
from polytask.errors import ConfigError, RunError

CONFIG = "config.json"
DATA = "data.json"
CHECKPOINT = "checkpoint"
MODEL = "model.safetensors"
METRICS = "metrics.json"
FAILED = "failed.json"
LOSS_CURVES = "loss_curves.png"
BALANCER_WEIGHTS = "balancer_weights.png"
AFFINITY_CSV = "affinity.csv"
AFFINITY_PNG = "affinity.png"
LEARNING_RATES = "learning_rates.png"
TASK_RELATIONSHIPS_CSV = "task_relationships.csv"
TASK_RELATIONSHIPS_PNG = "task_relationships.png"
BASELINES = "baselines"
AUTO_SETTINGS = "auto.json"
LEADERBOARD = "leaderboard.csv"
FINAL_REPORT = "final.json"
BEST_CONFIG = "best.yaml"
REPORT = "report.html"
LOCK = ".lock"
OWNER = ".owner"

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
    def affinity_csv(self) -> Path:
        return self.path / AFFINITY_CSV

    @property
    def affinity_png(self) -> Path:
        return self.path / AFFINITY_PNG

    def groups_config(self, k: int) -> Path:
        """``polytask affinity``'s suggested ``groups`` config for ``k`` groups."""
        return self.path / f"groups-k{k}.yaml"

    @property
    def learning_rates(self) -> Path:
        return self.path / LEARNING_RATES

    @property
    def task_relationships_csv(self) -> Path:
        return self.path / TASK_RELATIONSHIPS_CSV

    @property
    def task_relationships_png(self) -> Path:
        return self.path / TASK_RELATIONSHIPS_PNG

    @property
    def finished(self) -> bool:
        """Whether the run wrote its last file, ``metrics.json``."""
        return self.metrics.is_file()

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    @property
    def owner(self) -> Path:
        return self.path / OWNER

    def missing(self) -> list[str]:
        """The files of :data:`REQUIRED` that are not there."""
        return [name for name in REQUIRED if not (self.path / name).is_file()]

    @contextmanager
    def hold(
        self, *, wait: bool = False, on_wait: Callable[[str], None] = lambda holder: None
    ) -> Iterator[None]:
        """Hold this folder for the current process until the block ends (creating the folder
        if needed). When another process holds it: raise a :class:`RunError` naming that
        process, or with ``wait`` call ``on_wait`` with its description and wait for it. The
        operating system releases the lock of a process that dies, so a killed run's folder
        is taken over by the next one."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = self._holder()
            if not wait:
                raise RunError(
                    f"{self.path} is in use by {holder}; wait until it ends or stop it"
                ) from None
            on_wait(holder)
            lock.acquire()
        try:
            owner = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self.owner.write_text(json.dumps(owner) + "\n")
            yield
        finally:
            self.owner.unlink(missing_ok=True)
            lock.release()

    def _holder(self, patience: float = 1.0) -> str:
        """The process named in the owner note (its holder writes it just after locking)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                owner = json.loads(self.owner.read_text())
                return f"process {owner['pid']} on {owner['host']} (since {owner['since']})"
            except (OSError, ValueError, KeyError, TypeError):
                if time.monotonic() > deadline:
                    return "another process"
                time.sleep(0.05)


def baselines_folder(output: Path) -> Path:
    """The folder holding the single-task baselines of every run under ``output``."""
    return Path(output) / BASELINES


def baseline_dir(folder: Path, task: str, key: str) -> RunDir:
    """The baseline of ``task`` whose settings hash to ``key``, in the baselines ``folder``."""
    return RunDir(Path(folder) / f"{task}-{key}")


def comparison_path(output: Path, name: str) -> Path:
    """Where ``polytask compare`` writes its summary of the runs named ``name``."""
    return Path(output) / f"{name}-comparison.json"


def seeds_path(output: Path, name: str) -> Path:
    """Where ``polytask train --seeds`` writes its per-task changes and verdicts over seeds."""
    return Path(output) / f"{name}-seeds.json"


def run_dir_for(output: Path, name: str, *, resume: bool) -> RunDir:
    """A fresh folder for a new run (:func:`new_run_dir`), or the latest unfinished one for
    ``--resume`` (:func:`unfinished_run_dir`)."""
    return unfinished_run_dir(output, name) if resume else new_run_dir(output, name)


def check_output_dir(output: Path) -> None:
    """Raise a ConfigError naming ``output_dir`` when it, or a folder above it, is a file."""
    output = Path(output)
    for path in (output, *output.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"output_dir '{output}': '{path}' is a file, not a folder")
            return


def check_run_name(name: str) -> None:
    """Raise a RunError unless ``name`` is one plain folder name (it must stay in output_dir)."""
    if not is_plain_name(name):
        raise RunError(f"run name {name!r}: a run name must be one plain folder name")


def new_run_dir(output: Path, name: str) -> RunDir:
    """Create and return ``output/name``, or ``name-2``, ``name-3``… if it exists (also when
    another run creates it at the same moment)."""
    check_run_name(name)
    check_output_dir(output)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    path, suffix = output / name, 1
    while True:
        if not path.exists():
            try:
                path.mkdir()
                return RunDir(path)
            except FileExistsError:
                pass
        suffix += 1
        path = output / f"{name}-{suffix}"


def unfinished_run_dir(output: Path, name: str) -> RunDir:
    """The most recently modified run folder of ``name`` without ``metrics.json``."""
    check_run_name(name)
    check_output_dir(output)
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
