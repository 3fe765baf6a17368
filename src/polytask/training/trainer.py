"""The :class:`Trainer`: epochs of balanced multi-task steps, validation, model selection,
early stopping and checkpoints. It never names a method: balancers and architectures plug in.

Model selection uses validation data only: the score of an epoch is its validation Δm% against a
reference (the single-task baselines' validation metrics when given, else the model's own
first-epoch metrics), and the best epoch's weights are restored at the end.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from polytask.balancers import Balancer, EqualWeights
from polytask.data.dataset import Batch, MultiTaskData
from polytask.data.sampling import BatchSource, ShuffledBatches
from polytask.evaluation.delta_m import Scores, delta_m, metric_directions
from polytask.inference import Evaluation, evaluate, predict_outputs
from polytask.models.base import MultiTaskModel
from polytask.tasks import Task
from polytask.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from polytask.training.optim import parameter_groups


@dataclass(frozen=True)
class EarlyStopping:
    """Stop after ``patience`` epochs without a validation-score gain above ``min_delta``."""

    patience: int = 3
    min_delta: float = 0.0


@dataclass
class EpochLog:
    """What one epoch measured."""

    epoch: int
    train_loss: dict[str, float]
    val_loss: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    score: float = math.nan
    weights: dict[str, float] = field(default_factory=dict)
    step_weights: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


class Trainer:
    """Fits a :class:`MultiTaskModel` on :class:`MultiTaskData` (or any batch source)."""

    def __init__(
        self,
        model: MultiTaskModel,
        tasks: Sequence[Task],
        *,
        optimizer: torch.optim.Optimizer | None = None,
        balancer: Balancer | None = None,
        epochs: int = 10,
        batch_size: int = 256,
        seed: int = 0,
        early_stopping: EarlyStopping | None = None,
        reference: Scores | None = None,
        delta_m_average: Literal["per_task", "per_metric"] = "per_task",
        grad_clip: float | None = None,
        checkpoint_dir: str | Path | None = None,
        progress: bool = False,
        label: str = "multi-task",
        eval_batch_size: int = 8192,
    ) -> None:
        missing = [t.name for t in tasks if t.name not in model.task_names]
        if missing:
            raise ValueError(f"the model has no output for task {missing[0]!r}")
        self.model = model
        self.tasks = list(tasks)
        self.balancer = balancer or EqualWeights([t.name for t in tasks])
        self._shared = list(model.shared_parameters())
        if self.balancer.needs_shared_params and not self._shared:
            raise ValueError(
                f"balancer '{self.balancer.name}' needs shared parameters (params mode), but "
                f"{type(model).__name__} shares none; use mode 'features' or another architecture"
            )
        self.optimizer = optimizer or torch.optim.Adam(
            parameter_groups(model, 1e-3, extra=self.balancer.parameters())
        )
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.early_stopping = early_stopping
        self.reference = reference
        self.delta_m_average = delta_m_average
        self.grad_clip = grad_clip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress = progress
        self.label = label
        self.eval_batch_size = eval_batch_size
        self.history: list[EpochLog] = []
        self.best_epoch: int | None = None
        self._directions = metric_directions(self.tasks)

    # -- one step ----------------------------------------------------------------------------
    def step(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, float]]:
        """One optimisation step (the model must be in training mode; :meth:`fit` sees to it);
        returns the detached task losses and the balancer's weights."""
        outputs, representation = self.model.forward_with_representation(batch.inputs)
        losses: dict[str, Tensor] = {}
        for task in self.tasks:
            loss = task.loss_value(
                outputs[task.name], batch.targets[task.name], batch.masks[task.name]
            )
            if loss is not None:
                losses[task.name] = loss * task.weight if task.weight != 1.0 else loss
        self.optimizer.zero_grad(set_to_none=True)
        weights = self.balancer.backward(
            losses, shared_params=self._shared, features=representation
        )
        penalty = self.model.regularization()
        if penalty is not None:
            penalty.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return {k: v.detach() for k, v in losses.items()}, weights

    # -- fitting -----------------------------------------------------------------------------
    def fit(
        self,
        train: MultiTaskData | BatchSource,
        validation: MultiTaskData | None = None,
        *,
        resume: bool = False,
    ) -> list[EpochLog]:
        """Train for the configured epochs (or until early stopping); returns the history."""
        source = (
            ShuffledBatches(train, self.batch_size) if isinstance(train, MultiTaskData) else train
        )
        start, selection = self._restore() if resume else (1, None)
        selection = selection or _Selection(self._copy_weights())
        with self._progress_bar(source.steps_per_epoch()) as bar:
            for epoch in range(start, self.epochs + 1):
                if self.early_stopping and selection.stale >= self.early_stopping.patience:
                    break
                log = self._train_epoch(source, epoch, bar)
                if validation is not None:
                    self._validate(log, validation, selection)
                self.history.append(log)
                if self.checkpoint_dir is not None:
                    self._save(epoch, selection)
        if validation is not None and self.best_epoch is not None:
            self.model.load_state_dict(selection.weights)
        return self.history

    def _validate(self, log: EpochLog, validation: MultiTaskData, selection: _Selection) -> None:
        """Score the epoch by validation Δm; keep its weights if it is the best so far."""
        evaluation = self.evaluate(validation)
        log.val_metrics, log.val_loss = evaluation.metrics, evaluation.loss
        if self.reference is None:
            self.reference = evaluation.metrics
        log.score = delta_m(log.val_metrics, self.reference, self._directions, self.delta_m_average)
        score = log.score if math.isfinite(log.score) else -math.inf
        min_delta = self.early_stopping.min_delta if self.early_stopping else 0.0
        if self.best_epoch is None or score > selection.score + min_delta:
            selection.score, selection.stale, self.best_epoch = score, 0, log.epoch
            selection.weights = self._copy_weights()
        else:
            selection.stale += 1

    def _copy_weights(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _train_epoch(self, source: BatchSource, epoch: int, bar: Progress | None) -> EpochLog:
        started = time.perf_counter()
        torch.manual_seed(self.seed * 1_000_003 + epoch)  # dropout etc.: repeatable on resume
        self.model.train()
        names = [t.name for t in self.tasks]
        loss_sums = {n: torch.zeros(()) for n in names}
        counts = dict.fromkeys(names, 0)
        trace: dict[str, list[float]] = {n: [] for n in names}
        if bar is not None:
            bar.reset(bar.task_ids[0], description=f"{self.label} epoch {epoch}/{self.epochs}")
        for batch in source.epoch(self.seed, epoch):
            losses, weights = self.step(batch)
            for name, loss in losses.items():
                loss_sums[name] += loss
                counts[name] += 1
            for name, weight in weights.items():
                trace[name].append(weight)
            if bar is not None:
                bar.advance(bar.task_ids[0])
        train_loss = {n: float(loss_sums[n]) / counts[n] if counts[n] else math.nan for n in names}
        self.balancer.epoch_end({n: v for n, v in train_loss.items() if math.isfinite(v)})
        mean_weights = {n: sum(v) / len(v) for n, v in trace.items() if v}
        step_weights = {n: _thin(v, STEP_WEIGHT_SAMPLES) for n, v in trace.items() if v}
        seconds = time.perf_counter() - started
        return EpochLog(
            epoch, train_loss, weights=mean_weights, step_weights=step_weights, seconds=seconds
        )

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, data: MultiTaskData) -> dict[str, Tensor]:
        """Raw outputs per task for every row of ``data`` (eval mode, batched; see
        :func:`polytask.inference.predict_outputs`)."""
        return predict_outputs(self.model, self.tasks, data, self.eval_batch_size)

    def evaluate(self, data: MultiTaskData) -> Evaluation:
        """Metrics and mean loss per task on the labelled rows of ``data``
        (:func:`polytask.inference.evaluate`)."""
        return evaluate(self.model, self.tasks, data, self.eval_batch_size)

    # -- checkpoints -------------------------------------------------------------------------
    def _save(self, epoch: int, selection: _Selection) -> None:
        assert self.checkpoint_dir is not None
        state = {
            "epoch": epoch,
            "history": [asdict(log) for log in self.history],
            "best_epoch": self.best_epoch,
            "best_score": selection.score if math.isfinite(selection.score) else None,
            "stale_epochs": selection.stale,
            "reference": self.reference,
        }
        save_checkpoint(
            self.checkpoint_dir,
            epoch,
            Checkpoint(
                model=self.model.state_dict(),
                best_model=selection.weights,
                optimizer=self.optimizer.state_dict(),
                balancer=self.balancer.state_dict(),
                state=state,
            ),
        )

    def _restore(self) -> tuple[int, _Selection | None]:
        """Load the latest checkpoint, if any: the epoch to start from and the selection state."""
        checkpoint = load_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if checkpoint is None:
            return 1, None
        self.model.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.balancer.load_state_dict(checkpoint.balancer)
        state = checkpoint.state
        self.history = [EpochLog(**log) for log in state["history"]]
        self.best_epoch = state["best_epoch"]
        self.reference = state["reference"] or self.reference
        score = state["best_score"]
        selection = _Selection(
            checkpoint.best_model, -math.inf if score is None else score, state["stale_epochs"]
        )
        return state["epoch"] + 1, selection

    def _progress_bar(self, total: int) -> Any:
        if not self.progress:
            return contextlib.nullcontext()
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        bar.add_task(self.label, total=total)
        return bar


@dataclass
class _Selection:
    """Model selection state: the best epoch's weights, its score, epochs since it."""

    weights: dict[str, Tensor]
    score: float = -math.inf
    stale: int = 0


STEP_WEIGHT_SAMPLES = 64
"""Per-step balancer weights kept per epoch (evenly spaced), so logs stay small."""


def _thin(values: list[float], count: int) -> list[float]:
    if len(values) <= count:
        return values
    step = len(values) / count
    return [values[int(i * step)] for i in range(count)]
