"""The :class:`Trainer`: epochs of balanced multi-task steps, validation, model selection,
early stopping and checkpoints. It never names a method: balancers and architectures plug in.

Model selection uses validation data only: the score of an epoch is its validation Δm% against a
reference (the single-task baselines' validation metrics when given, else the model's own
first-epoch metrics), and the best epoch's weights are restored at the end. A metric whose
reference is 0 or undefined leaves the score (with a warning); when no metric is left, the score
is the mean relative decrease of the validation loss from the first epoch; when that is undefined
too (no validation labels), the last epoch is kept. An epoch whose score is undefined is never
selected.

Training that diverges raises :class:`TrainingDiverged`: weights that are no longer finite
(checked once per epoch, before validation and the checkpoint), an epoch in which every step had
a non-finite loss, or a non-finite validation loss. A step with a non-finite loss (which the
balancers skip) is otherwise tolerated and counted in :attr:`EpochLog.nonfinite_steps`.

Devices and precision: the model and the optimizer live on ``device``; each batch is copied
there (from pinned memory, ``non_blocking``, for CUDA). The forward pass and the losses run
under ``torch.autocast`` for ``bf16`` and ``fp16``; the losses reach the balancer as float32.
``fp16`` adds a ``torch.amp.GradScaler``: the balancer is given its scale
(:meth:`Balancer.backward` ``grad_scale``) and writes scaled gradients, while the losses it
reads and the per-task gradients it decides on (Gramians, norms, running averages) are the true,
unscaled ones, in float32 (:mod:`polytask.balancers.base`). Scaling per task below the loss
values, rather than computing per-task gradients of unscaled losses, is what keeps small
per-task gradients from underflowing in float16 on their way back through the network: the scale is
divided out only once they are float32. An overflow (a non-finite scaled gradient of finite
losses) is reported by the balancer, which has written nothing and kept its state, and handed to
the scaler as a non-finite gradient: ``scaler.step`` skips the update and ``scaler.update``
lowers the scale, as GradScaler does; such steps are not counted as non-finite (their losses
were finite). Validation and evaluation run in float32.

The balancer's T-sized state (weights, logits, running losses, learned log-variances) lives on
the host, beside the T×T solves, so that a step reads back from the device once; the T weights
go to the device with non-blocking copies. Under ``fp16`` its learned parameters (uncertainty
weighting, IMTL-L) move to the device instead: GradScaler's ``unscale_`` hands a host
parameter's gradient a non-blocking copy of the inverse scale that a host kernel may read
before it lands.

Host synchronisations of a step (the trainer itself adds none: each task's labels are counted
on the host before the batch is copied, so the masked losses need no count from the device,
and the step's losses are kept on the device and read once per epoch):

1. the balancer's one read-back (:meth:`~polytask.balancers.base.Balancer.backward`): a Gramian
   method copies the losses and the T×T Gramian to the host together (its loss check and T×T
   solve share the copy), GradNorm the losses and its T gradient norms, every other method the
   stacked losses for their finiteness check, from which it computes its weights on the host;
2. with ``fp16`` only, ``GradScaler.step`` reads whether the unscaled gradients are finite (and
   reading a learned balancer parameter back for the weights is one more).

Under ``torchrun`` (:mod:`polytask.distributed`; the step works on this process's rows of the
global batch), a step adds three collectives: the T loss values, the balancer's own sum (the
Gramian engine's T×T matrix or T×P block, GradNorm's last-layer blocks, DB-MTL's and GradDrop's
per-task gradients or signals; DB-MTL in ``features`` mode adds a second one) and the model's
gradients with their presence flags (one buffer, read back once for the flags). A measured
affinity step adds its own (tag: two). The T labelled counts are counted on the global batch,
which every process holds, so they need none; streamed batches (each process holds only its
rows) add a fourth for them, a host read-back before the losses. A fit adds one, before its
first step: every process must take the same number of steps per epoch
(:func:`~polytask.distributed.agreed`). A batch marked ``sharded`` (streamed data, whose
processes read disjoint shards) already holds this process's rows and is not cut. Each process
seeds torch's random state (dropout) at the start of every epoch from the seed, the epoch and
its rank (:func:`epoch_seed`), so a resumed run draws what an uninterrupted one draws.

Exceptions, which read back more: DB-MTL (its running gradient averages and weights are on the
device), GradDrop (its gradient check), and the ``losses_from`` and ``update_every`` wrappers
(their own loss check, then the inner Gramian method's copy on the steps that compute one).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from polytask.balancers import Balancer, EqualWeights
from polytask.balancers.base import GradientOverflow
from polytask.data.dataset import Batch, MultiTaskData
from polytask.data.sampling import BatchSource, ShuffledBatches, TaskMixture
from polytask.device import (
    check_precision,
    model_device,
    resolve_device,
    to_device,
)
from polytask.distributed import agreed, shard_rows, world
from polytask.errors import ConfigError, RunError
from polytask.evaluation.delta_m import Scores, delta_m, metric_directions, reference_problem
from polytask.inference import Evaluation, evaluate, predict_outputs
from polytask.models.base import MultiTaskModel
from polytask.tasks import Direction, Task
from polytask.training.checkpoint import (
    Checkpoint,
    load_checkpoint,
    nan_for_none,
    save_checkpoint,
)
from polytask.training.observers import StepObserver, StepView
from polytask.training.optim import parameter_groups
from polytask.training.schedules import LrScheduleConfig, LrSchedules, learning_rates
from polytask.training.step import (
    finish_gradients,
    global_losses,
    labelled_counts,
    masked_losses,
    shard,
    skip_unless_finite,
    sums_losses_late,
)


@dataclass(frozen=True)
class EarlyStopping:
    """Stop after ``patience`` epochs without a validation-score gain above ``min_delta``."""

    patience: int = 3
    min_delta: float = 0.0


class TrainingDiverged(RunError):
    """The weights or losses became non-finite: the run failed and must not be used."""


@dataclass
class EpochLog:
    """What one epoch measured (NaN marks an undefined value; JSON ``null`` reads back as NaN).

    ``score`` is the epoch's validation selection score (NaN: undefined, never selected);
    ``nonfinite_steps`` counts steps with a non-finite loss, which the balancers skip;
    ``observations``: what each step observer recorded for the epoch, by its name; ``lr`` is
    each parameter group's learning rate during the epoch."""

    epoch: int
    train_loss: dict[str, float]
    val_loss: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    score: float = math.nan
    weights: dict[str, float] = field(default_factory=dict)
    step_weights: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    nonfinite_steps: int = 0
    observations: dict[str, Any] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train_loss = nan_for_none(self.train_loss)
        self.val_loss = nan_for_none(self.val_loss)
        self.val_metrics = nan_for_none(self.val_metrics)
        self.score = math.nan if self.score is None else self.score


class Trainer:
    """Fits a :class:`MultiTaskModel` on :class:`MultiTaskData` (or any batch source).

    ``observers`` (:class:`~polytask.training.observers.StepObserver`) see every step and
    record per-epoch values in :attr:`EpochLog.observations` (task affinity, for one).
    ``device`` (``None``: where the model is; else a device or ``training.device`` setting)
    and ``precision`` (``fp32``, ``bf16``, ``fp16``): see the module docstring.
    ``lr_schedules`` maps optimizer parameter-group names to learning-rate schedules, stepped
    once per epoch after validation (:mod:`polytask.training.schedules`). ``on_epoch`` sees each
    finished epoch's log (after validation, before the epoch's checkpoint, so that a process
    stopped between the two trains the epoch again when resumed and ``on_epoch`` sees it again,
    rather than never: what it tracks misses no epoch); an exception it raises stops the fit
    (``polytask auto`` prunes a trial that way)."""

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
        observers: Sequence[StepObserver] = (),
        lr_schedules: Mapping[str, LrScheduleConfig] | None = None,
        on_epoch: Callable[[EpochLog], None] | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
    ) -> None:
        missing = [t.name for t in tasks if t.name not in model.task_names]
        if missing:
            raise ValueError(f"the model has no output for task {missing[0]!r}")
        self.device = model_device(model) if device is None else resolve_device(device)
        self.precision = check_precision(precision, self.device)
        self.model = model.to(self.device)  # in place: a given optimizer keeps its parameters
        self.tasks = list(tasks)
        self.balancer = balancer or EqualWeights([t.name for t in tasks])
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.scales else None
        if self.scaler is not None:  # its unscale_ must not mix devices (module docstring)
            with torch.no_grad():
                for p in self.balancer.parameters():  # in place: an optimizer keeps them
                    p.data = p.data.to(self.device)
        if world().size > 1 and not self.balancer.data_parallel:
            raise ConfigError(
                f"balancer '{self.balancer.name}' is not exact under data-parallel training "
                f"(torchrun, {world().size} processes): train it in one process"
            )
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
        # per parameter-group name; see polytask.training.schedules
        self.schedules = LrSchedules(
            self.optimizer, lr_schedules or {}, epochs=epochs, tasks=[t.name for t in tasks]
        )
        self.batch_size = batch_size
        self.seed = seed
        self.early_stopping = early_stopping
        self.reference = reference
        self._given_reference = reference is not None
        self.delta_m_average = delta_m_average
        self.grad_clip = grad_clip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress = progress
        self.label = label
        self.eval_batch_size = eval_batch_size
        self.observers = list(observers)
        self.on_epoch = on_epoch
        self.history: list[EpochLog] = []
        self.best_epoch: int | None = None
        self._directions = metric_directions(self.tasks)
        self._reference_loss: dict[str, float] | None = None
        self._selection_rule: _SelectionRule | None = None
        self._first_nonfinite: tuple[str, int, int] | None = None

    # -- one step ----------------------------------------------------------------------------
    def step(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, float]]:
        """One optimisation step (the model must be in training mode; :meth:`fit` sees to it);
        returns the detached task losses and the balancer's weights.

        Under ``torchrun`` (:mod:`polytask.distributed`) ``batch`` is the global batch: this
        process keeps its rows ``rank::world_size`` (unless ``batch.sharded``: it already holds
        this process's rows only, as streamed data do), each task's loss is its local sum over the
        global labelled count with the global value (or, for a balancer that does not read it,
        summed with the gradients), and the model's gradients are summed over the processes
        after the backward (:mod:`polytask.training.step`)."""
        here = world()
        names = [t.name for t in self.tasks]
        # labels counted before the batch moves: on the host, so no device synchronisation;
        # on the global batch when this process holds it, so no collective either
        whole = here.size > 1 and not batch.sharded
        labelled = labelled_counts(batch, names, whole=whole)
        if whole:
            batch = shard(batch, here.rank, here.size)
        batch = to_device(batch, self.device)
        with self.precision.autocast():
            outputs, representation = self.model.forward_with_representation(batch.inputs)
            losses = masked_losses(outputs, batch, self.tasks, labelled)
        # every rank sees the global values (one collective), unless they are summed late,
        # with the gradients (equal weights: one collective in all)
        late = sums_losses_late(self.balancer, bool(self.observers))
        if not late:
            losses = global_losses(losses)
        view = StepView(
            batch, losses, self._shared, representation, self.model, self.tasks,
            self.optimizer, self.balancer,
        )  # fmt: skip
        for observer in self.observers:
            observer.before_backward(view)
        self.optimizer.zero_grad(set_to_none=True)
        scale = None
        if self.scaler is not None:  # the scale as a device tensor: no host sync
            scale = self.scaler.scale(torch.ones((), device=self.device))
        overflow = False
        try:
            weights = self.balancer.backward(
                losses, shared_params=self._shared, features=representation, summed=not late,
                **({} if scale is None else {"grad_scale": scale}),
            )  # fmt: skip
        except GradientOverflow:
            weights, overflow = dict.fromkeys(losses, 0.0), True
        for observer in self.observers:
            observer.after_backward(view)
        totals = finish_gradients(self.model, scale, losses if late else None)  # the sums
        if totals is not None:
            losses, weights = totals, skip_unless_finite(totals, weights, self.model, self.balancer)
        if self.scaler is not None:
            if overflow:  # the scaler finds it as it would any non-finite gradient
                first = self.optimizer.param_groups[0]["params"][0]
                first.grad = torch.full_like(first, math.inf)
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when a gradient is not finite
            self.scaler.update()
        else:
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
        if validation is None and self.schedules.needs_validation:
            raise ValueError("a plateau learning-rate schedule needs validation data")
        rows = smallest_batch(source)
        if world().size > 1 and rows is not None:  # before any step, not mid-epoch
            shard_rows(rows, world().rank, world().size)
        # every process must take the same number of steps (a collective waiting for a
        # process that has finished its epoch would never return): checked once, up front
        agreed(source.steps_per_epoch(), "steps per epoch")
        start, selection = self._restore() if resume else (1, None)
        selection = selection or _Selection(self._copy_weights())
        with self._progress_bar(source.steps_per_epoch()) as bar:
            for epoch in range(start, self.epochs + 1):
                if self.early_stopping and selection.stale >= self.early_stopping.patience:
                    break
                lr = learning_rates(self.optimizer)
                log = self._train_epoch(source, epoch, bar)
                log.lr = lr
                if validation is not None:
                    self._validate(log, validation, selection)
                self.schedules.step(log.val_loss, log.score)
                self.history.append(log)
                if self.on_epoch is not None:  # before the checkpoint: see the docstring
                    self.on_epoch(log)
                if self.checkpoint_dir is not None and world().is_main:
                    self._save(epoch, selection)
        if validation is not None and self.best_epoch is not None:
            self.model.load_state_dict(selection.weights)
        return self.history

    def _validate(self, log: EpochLog, validation: MultiTaskData, selection: _Selection) -> None:
        """Score the epoch on validation; keep its weights if it is the best so far."""
        evaluation = self.evaluate(validation)
        log.val_metrics, log.val_loss = evaluation.metrics, evaluation.loss
        for task in self.tasks:
            loss = evaluation.loss[task.name]
            if not math.isfinite(loss) and bool(validation.masks[task.name].any()):
                raise self._diverged(
                    f"the validation loss of task '{task.name}' is {loss} after epoch {log.epoch}"
                )
        if self.reference is None:
            self.reference = evaluation.metrics
        if self._reference_loss is None:
            self._reference_loss = dict(evaluation.loss)
        rule = self._selection_rule or self._choose_selection_rule()
        log.score = self._score(log.epoch, evaluation, rule)
        min_delta = self.early_stopping.min_delta if self.early_stopping else 0.0
        if rule.by == "last_epoch" or (
            math.isfinite(log.score) and log.score > selection.score + min_delta
        ):
            selection.score, selection.stale, self.best_epoch = log.score, 0, log.epoch
            selection.weights = self._copy_weights()
        else:
            selection.stale += 1

    def _choose_selection_rule(self) -> _SelectionRule:
        """The rule of :func:`choose_selection_rule`, fixed at the first validation."""
        assert self.reference is not None and self._reference_loss is not None
        origin = "the baselines' validation metrics" if self._given_reference else "epoch 1"
        self._selection_rule = choose_selection_rule(
            self._directions, self.reference, self._reference_loss, origin=origin, label=self.label
        )
        return self._selection_rule

    def _score(self, epoch: int, evaluation: Evaluation, rule: _SelectionRule) -> float:
        assert self.reference is not None
        return selection_score(
            epoch, evaluation, rule, self.reference, self.delta_m_average, label=self.label
        )

    def _copy_weights(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _train_epoch(self, source: BatchSource, epoch: int, bar: Progress | None) -> EpochLog:
        started = time.perf_counter()
        torch.manual_seed(epoch_seed(self.seed, epoch, world().rank))  # dropout: per process
        self.model.train()
        names = [t.name for t in self.tasks]
        # the detached losses are kept per task (on their device, no host sync per step) and
        # read back once per epoch
        kept: dict[str, list[Tensor]] = {n: [] for n in names}
        kept_steps: dict[str, list[int]] = {n: [] for n in names}
        steps = 0
        trace: dict[str, list[float]] = {n: [] for n in names}
        if bar is not None:
            bar.reset(bar.task_ids[0], description=f"{self.label} epoch {epoch}/{self.epochs}")
        for batch in source.epoch(self.seed, epoch):
            steps += 1
            losses, weights = self.step(batch)
            for name, loss in losses.items():
                kept[name].append(loss)
                kept_steps[name].append(steps)
            for name, weight in weights.items():
                trace[name].append(weight)
            if bar is not None:
                bar.advance(bar.task_ids[0])
        train_loss: dict[str, float] = {}
        bad_steps: set[int] = set()
        first_bad: dict[str, int] = {}
        for name in names:
            if not kept[name]:
                train_loss[name] = math.nan
                continue
            values = torch.stack(kept[name])
            finite = values.isfinite()
            bad = [kept_steps[name][k] for k in (~finite).nonzero().flatten().tolist()]
            bad_steps.update(bad)
            if bad:
                first_bad[name] = bad[0]
            # the mean over the steps that were not skipped
            train_loss[name] = float(values[finite].mean()) if len(bad) < len(values) else math.nan
        if first_bad and self._first_nonfinite is None:
            task = min(first_bad, key=first_bad.__getitem__)  # ties: the first task
            self._first_nonfinite = (task, epoch, first_bad[task])
        if steps and len(bad_steps) == steps:
            raise self._diverged(f"every step of epoch {epoch} had a non-finite loss")
        self._check_weights(epoch)
        self.balancer.epoch_end({n: v for n, v in train_loss.items() if math.isfinite(v)})
        mean_weights = {n: sum(v) / len(v) for n, v in trace.items() if v}
        step_weights = {n: _thin(v, STEP_WEIGHT_SAMPLES) for n, v in trace.items() if v}
        observations = {o.name: o.epoch_end(epoch) for o in self.observers}
        seconds = time.perf_counter() - started
        return EpochLog(
            epoch,
            train_loss,
            weights=mean_weights,
            step_weights=step_weights,
            seconds=seconds,
            nonfinite_steps=len(bad_steps),
            observations={k: v for k, v in observations.items() if v is not None},
        )

    def _check_weights(self, epoch: int) -> None:
        """Raise :class:`TrainingDiverged` unless every weight is finite (one host sync)."""
        tensors = {
            name: value
            for name, value in self.model.state_dict().items()
            if value.is_floating_point() or value.is_complex()
        }
        tensors |= {f"balancer.{i}": p for i, p in enumerate(self.balancer.parameters())}
        if not tensors:
            return
        flags = [t.detach().isfinite().all() for t in tensors.values()]
        device = flags[0].device
        if bool(torch.stack([f.to(device) for f in flags]).all()):
            return
        bad = next(n for n, f in zip(tensors, flags, strict=True) if not bool(f))
        raise self._diverged(f"after epoch {epoch} the weights are not finite ('{bad}')")

    def _diverged(self, what: str) -> TrainingDiverged:
        if self._first_nonfinite is None:
            origin = "every training loss was finite until then (the gradients overflowed?)"
        else:
            task, epoch, step = self._first_nonfinite
            origin = f"task '{task}' had the first non-finite loss at epoch {epoch} step {step}"
        return TrainingDiverged(
            f"training diverged ({self.label}): {what}; {origin}. Lower the learning rate or "
            "clip the gradients (training.lr, training.grad_clip)"
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
            "reference_loss": self._reference_loss,
            "observers": {o.name: o.state_dict() for o in self.observers},
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
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
                schedules=self.schedules.state_dict(),
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
        self.schedules.load_state_dict(checkpoint.schedules)  # after the optimizer's lrs
        state = checkpoint.state
        self.history = [EpochLog(**log) for log in state["history"]]
        self.best_epoch = state["best_epoch"]
        if state["reference"] is not None:
            self.reference = nan_for_none(state["reference"])
        if state.get("reference_loss") is not None:
            self._reference_loss = nan_for_none(state["reference_loss"])
        if self._reference_loss is None and self.history and self.history[0].val_loss:
            self._reference_loss = dict(self.history[0].val_loss)  # a checkpoint from before
        for observer in self.observers:
            observer.load_state_dict(state.get("observers", {}).get(observer.name, {}))
        if self.scaler is not None and state.get("scaler"):  # fp16: the loss scale reached
            self.scaler.load_state_dict(state["scaler"])
        score = state["best_score"]
        selection = _Selection(
            checkpoint.best_model, -math.inf if score is None else score, state["stale_epochs"]
        )
        return state["epoch"] + 1, selection

    def _progress_bar(self, total: int) -> Any:
        if not self.progress or not world().is_main:
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


@dataclass(frozen=True)
class _SelectionRule:
    """How epochs are scored, fixed at the first validation: validation Δm over ``metrics``
    (those with a usable reference), else the mean relative decrease of the validation loss
    from ``losses`` (the first epoch's), else none (the last epoch is kept)."""

    by: Literal["delta_m", "loss", "last_epoch"]
    metrics: dict[str, dict[str, Direction]] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)


def choose_selection_rule(
    directions: Mapping[str, Mapping[str, Direction]],
    reference: Scores,
    reference_loss: Mapping[str, float],
    *,
    origin: str,
    label: str,
) -> _SelectionRule:
    """How epochs are scored: validation Δm against ``reference`` (``origin`` says what it is)
    over the metrics of ``directions`` with a usable reference; else the mean relative decrease
    of the validation loss from ``reference_loss`` (epoch 1's); else none (the last epoch is
    kept). Warns when it is not plain Δm."""
    metrics: dict[str, dict[str, Direction]] = {}
    left_out = []
    for task, by_metric in directions.items():
        for metric, direction in by_metric.items():
            problem = reference_problem(reference.get(task, {}).get(metric))
            if problem is None:
                metrics.setdefault(task, {})[metric] = direction
            else:
                left_out.append(f"'{task}' {metric} ({problem})")
    losses = {
        task: loss
        for task, loss in reference_loss.items()
        if task in directions and reference_problem(loss) is None
    }
    prefix = f"model selection ({label})"
    if metrics:
        if left_out:
            _warn(
                f"{prefix}: left out of validation Δm, as a relative change from {origin} "
                f"is undefined: {', '.join(left_out)}"
            )
        return _SelectionRule("delta_m", metrics=metrics)
    if losses:
        _warn(
            f"{prefix}: validation Δm is undefined (a relative change from {origin} is "
            f"undefined for {', '.join(left_out) or 'every metric'}); selecting by the mean "
            "validation loss instead (its relative decrease from epoch 1)"
        )
        return _SelectionRule("loss", losses=losses)
    _warn(
        f"{prefix}: neither validation Δm nor the validation loss is defined (no "
        "validation labels?); keeping the last epoch"
    )
    return _SelectionRule("last_epoch")


def selection_score(
    epoch: int,
    evaluation: Evaluation,
    rule: _SelectionRule,
    reference: Scores,
    average: Literal["per_task", "per_metric"] = "per_task",
    *,
    label: str,
) -> float:
    """The epoch's selection score under ``rule`` (higher is better; Δm against ``reference``
    averaged ``average``); NaN, with a warning, when one of its values is undefined."""
    if rule.by == "last_epoch":
        return math.nan
    if rule.by == "loss":
        values = {(task, "loss"): evaluation.loss[task] for task in rule.losses}
    else:
        values = {
            (task, metric): evaluation.metrics[task][metric]
            for task, metrics in rule.metrics.items()
            for metric in metrics
        }
    undefined = [f"'{t}' {m} is {v}" for (t, m), v in values.items() if not _finite(v)]
    if undefined:
        _warn(
            f"model selection ({label}): epoch {epoch} cannot be scored "
            f"({', '.join(undefined)}); it is not selected"
        )
        return math.nan
    if rule.by == "loss":
        decrease = [
            100.0 * (ref - evaluation.loss[task]) / abs(ref) for task, ref in rule.losses.items()
        ]
        return sum(decrease) / len(decrease)
    return delta_m(evaluation.metrics, reference, rule.metrics, average)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


STEP_WEIGHT_SAMPLES = 64
"""Per-step balancer weights kept per epoch (evenly spaced), so logs stay small."""


def _thin(values: list[float], count: int) -> list[float]:
    if len(values) <= count:
        return values
    step = len(values) / count
    return [values[int(i * step)] for i in range(count)]


RANK_STRIDE = 0x9E37_79B9_7F4A_7C15
"""What separates the seeds of two processes' random streams (an odd 64-bit constant)."""


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of torch's global random state (dropout masks) for ``epoch`` on process
    ``rank``, set at the start of every epoch: a function of the three alone, so the random
    state of every process at the start of an epoch is known without storing it, and a run
    resumed from the checkpoint of epoch k draws what an uninterrupted one draws from epoch
    k + 1 on. A single process (and rank 0) gets ``seed·1000003 + epoch``; every other rank a
    stream of its own (the same seed would give row k of every process the same mask)."""
    base = seed * 1_000_003 + epoch
    return base if rank == 0 else (base + rank * RANK_STRIDE) % 2**64


def smallest_batch(source: BatchSource) -> int | None:
    """The fewest rows a batch of ``source`` can hold (the remainder batch of an epoch, or of
    a mixture source's pass); ``None`` for a source of another kind (then every batch is
    checked as it comes, :func:`~polytask.training.step.shard`)."""
    if isinstance(source, ShuffledBatches):
        sizes = [len(source.data)]
    elif isinstance(source, TaskMixture):
        sizes = [len(data) for data in source.sources.values()]
    else:
        return None
    size = source.batch_size
    return min(min(n, size) if n % size == 0 else n % size for n in sizes)
