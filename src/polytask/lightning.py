"""polytask under PyTorch Lightning: :class:`MultiTaskModule` and :class:`MultiTaskDataModule`.

:class:`MultiTaskModule` trains a :class:`~polytask.models.MultiTaskModel` with a
:class:`~polytask.balancers.Balancer` under ``lightning.Trainer``. It uses manual optimisation,
so every balancer works, gradient methods included: a step is the
:class:`~polytask.training.Trainer`'s step, built from the same pieces
(:mod:`polytask.training.step`): the masked task losses, the balancer's own backward (features
or params mode), the model's regularisation penalty, then the optimizer step. A balancer's own
parameters (uncertainty weighting's log-variances) are in the optimizer, as in the Trainer;
those with optimizers of their own (FAMO, GradNorm) update them in their backward. Given the
same global batches, seed and optimizer settings, the module trains exactly as the Trainer does.

Logged (``self.log``, once per epoch): ``train/loss/<task>`` (the mean over the epoch's steps
with a finite loss), ``train/weight/<task>`` (the balancer's mean weight) and
``train/lr/<group>`` (each parameter group's learning rate during the epoch), and on the
validation and test data, computed on the whole split at the epoch's end (as metrics such as
AUC need), ``val/loss/<task>`` and ``val/<metric>/<task>`` (``test/...`` for the test data).

Data-parallel training (``lightning.Trainer(strategy="ddp")``) equals one process on the same
global batches, as under ``torchrun`` (README, "Distributed training"): the data module gives
every process the same global batches (an iterable that Lightning does not shard), and the
module keeps its rows ``rank::world_size``; losses are divided by the global labelled counts
and carry the global values; the balancers sum their Gramians (or GradNorm's blocks) over the
processes; after the balancer's backward the model's gradients are summed with one
all-reduce. The module never calls ``manual_backward``, so DDP's own gradient reducer, which
would average the gradients of every backward pass a gradient method takes, is never armed.
Every process evaluates the whole validation data (identical weights, identical metrics).
A loader of the user's that yields :class:`Batch` objects works too: under DDP, Lightning gives
it a distributed sampler, and each process's batch is its part of the global batch (the
labelled counts are summed over the processes); its validation metrics are then each
process's, averaged by Lightning (exact for none of the non-additive metrics, such as AUC).

Learning-rate schedules (``lr_schedules``, by parameter-group name, as the Trainer's
``lr_schedules``: :mod:`polytask.training.schedules`) step once per epoch, as the Trainer steps
them: after the validation that follows the epoch's last step (in ``on_validation_epoch_end``,
before a ``ModelCheckpoint`` taken at the validation's end), or at the epoch's end when no
validation follows it (a plateau then leaves its rate, with a warning). A task's plateau reads
its validation loss, any other the validation score of model selection (Δm against the first
epoch's validation metrics, or ``reference``). The epoch's own end (the balancer's
``epoch_end``, as DWA's) runs after its last step, before that validation. Both are done once
per epoch, and a checkpoint records which epoch they were done for, with the schedules' and
the score's state, so resuming from a checkpoint taken at the end of an epoch (after
validation or after ``on_train_epoch_end``) continues exactly. So does one taken mid-epoch:
:class:`MultiTaskDataModule`'s training loader is one Lightning checkpoints (the epoch and the
batches trained), and the checkpoint holds the epoch's losses, weights, step count and rates so
far and every process's random state, restored at the first step after the resume (dropout
draws on). A checkpoint that cannot continue exactly is refused when the fit resumes: one
taken after an epoch's last step, before its end (Lightning resumes it past that end), or
mid-epoch with a loader that keeps no position.

Precision: ``32-true`` and ``bf16-mixed`` (the balancer runs outside autocast, on float32
losses); ``16-mixed`` hands the precision plugin's loss scale to the balancer
(:meth:`Balancer.backward` ``grad_scale``), whose gradients the plugin unscales before it steps.
Validation and test run in float32, as the Trainer's.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

try:
    import lightning as L
    from lightning.fabric.utilities.types import _Stateful
    from lightning.pytorch.trainer.states import TrainerFn
    from lightning.pytorch.utilities.combined_loader import CombinedLoader
except ImportError:  # the extra is not installed
    raise ImportError(
        "polytask.lightning needs PyTorch Lightning: pip install 'polytask[lightning]'"
    ) from None

from polytask.balancers import Balancer, EqualWeights, build_balancer
from polytask.balancers.base import GradientOverflow
from polytask.config import (
    Config,
    CosineSchedule,
    PlateauSchedule,
    load_config,
    parse_config,
)
from polytask.data.dataset import Batch, MultiTaskData
from polytask.data.prepare import PreparedData, prepare_data
from polytask.data.sampling import BatchSource
from polytask.distributed import all_gather_object, broadcast_object, shard_rows, world
from polytask.errors import ConfigError
from polytask.evaluation.delta_m import Scores, metric_directions
from polytask.inference import EVAL_BATCH_SIZE, Evaluation, evaluate_outputs
from polytask.models.base import MultiTaskModel
from polytask.models.build import build_network
from polytask.tasks import Task
from polytask.training.optim import build_optimizer, parameter_groups
from polytask.training.schedules import (
    LrScheduleConfig,
    LrSchedules,
    learning_rates,
    schedules_by_group,
)
from polytask.training.step import (
    finish_gradients,
    global_losses,
    labelled_counts,
    masked_losses,
    shard,
    skip_unless_finite,
    sums_losses_late,
)
from polytask.training.trainer import (
    TrainingDiverged,
    choose_selection_rule,
    epoch_seed,
    selection_score,
    smallest_batch,
)

__all__ = ["BatchStream", "MultiTaskDataModule", "MultiTaskModule", "ShardedBatch", "from_config"]


@dataclass
class ShardedBatch:
    """This process's rows of a global training batch and each task's labelled count in the
    whole global batch (counted on the host, before the batch moves to the device)."""

    batch: Batch
    labelled: dict[str, int]

    @staticmethod
    def of(batch: Batch) -> ShardedBatch:
        """This process's rows of the global ``batch`` (all of them in one process)."""
        here = world()
        if here.size <= 1:
            return ShardedBatch.local(batch)
        labelled = labelled_counts(batch, list(batch.masks), whole=True)  # no collective
        return ShardedBatch(shard(batch, here.rank, here.size), labelled)

    @staticmethod
    def local(batch: Batch) -> ShardedBatch:
        """``batch`` as this process's rows, the others' being theirs (the global batch is
        the union of the processes' batches)."""
        return ShardedBatch(batch, labelled_counts(batch, list(batch.masks)))


class MultiTaskModule(L.LightningModule):
    """A multi-task model trained with a balancer under ``lightning.Trainer`` (module docstring).

    ``model``: a :class:`MultiTaskModel` with an output for every task; ``tasks``: the fitted
    :class:`Task` objects (losses, masks, metrics); ``balancer``: a :class:`Balancer` for
    those tasks (``None``: equal weights). The optimizer (``adam``, ``adamw`` or ``sgd``) has
    one parameter group per task head at ``lr × lr_multipliers[task]`` (default 1), the shared
    parameters at ``lr`` and the balancer's parameters at ``lr`` without weight decay.
    ``grad_clip``: the largest norm of the model's gradients (no clipping when ``None``).
    ``seed``: each epoch reseeds torch before its first step from the seed, the epoch (from 1)
    and the process's rank, as the Trainer does (:func:`~polytask.training.trainer.epoch_seed`),
    so that dropout repeats and each process draws its own masks.
    ``lr_schedules``: a learning-rate schedule per parameter-group name (``shared``, a task's
    name, ``balancer``), stepped once per epoch (module docstring); a cosine without ``epochs``
    lasts the ``lightning.Trainer``'s ``max_epochs``. ``reference`` (validation metrics per
    task, such as single-task baselines'; default: the first epoch's) and ``delta_m_average``
    define the validation score that a plateau schedule of a group other than a task's reads."""

    def __init__(
        self,
        model: MultiTaskModel,
        tasks: Sequence[Task],
        balancer: Balancer | None = None,
        *,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        lr_multipliers: Mapping[str, float] | None = None,
        grad_clip: float | None = None,
        seed: int = 0,
        lr_schedules: Mapping[str, LrScheduleConfig] | None = None,
        reference: Scores | None = None,
        delta_m_average: Literal["per_task", "per_metric"] = "per_task",
    ) -> None:
        super().__init__()
        names = [t.name for t in tasks]
        missing = [n for n in names if n not in model.task_names]
        if missing:
            raise ValueError(f"the model has no output for task {missing[0]!r}")
        balancer = balancer or EqualWeights(names)
        unknown = [n for n in names if n not in balancer.task_names]
        if unknown:
            raise ValueError(f"balancer '{balancer.name}' has no task {unknown[0]!r}")
        if balancer.needs_shared_params and not list(model.shared_parameters()):
            raise ValueError(
                f"balancer '{balancer.name}' needs shared parameters (params mode), but "
                f"{type(model).__name__} shares none; use mode 'features' or another architecture"
            )
        unknown = [n for n in (lr_multipliers or {}) if n not in names]
        if unknown:
            raise ValueError(f"lr_multipliers: no task {unknown[0]!r}; tasks are {names}")
        groups = [
            g["name"] for g in parameter_groups(model, lr, lr_multipliers, balancer.parameters())
        ]
        unknown = [n for n in (lr_schedules or {}) if groups.count(n) != 1]
        if unknown:
            raise ValueError(
                f"lr_schedules: no parameter group named {unknown[0]!r} (or several); the "
                f"optimizer's groups are {groups}"
            )
        self.automatic_optimization = False  # the balancer does the backward pass
        self.model = model
        self.tasks = list(tasks)
        self.balancer = balancer
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.lr_multipliers = dict(lr_multipliers or {})
        self.grad_clip = grad_clip
        self.seed = seed
        self.lr_schedules = dict(lr_schedules or {})
        self.reference = reference
        self.delta_m_average = delta_m_average
        self._shared = list(model.shared_parameters())
        self._schedules: LrSchedules | None = None  # built with the optimizer
        self._reset_fit_state()
        self._losses: dict[str, list[Tensor]] = {}
        self._loss_steps: dict[str, list[int]] = {}
        self._weights: dict[str, list[float]] = {}
        self._steps = 0
        self._outputs: dict[str, list[Tensor]] = {}
        self._targets: dict[str, list[Tensor]] = {}
        self._masks: dict[str, list[Tensor]] = {}
        self._epoch_log: dict[str, float] = {}
        self._lr: dict[str, float] = {}

    def _reset_fit_state(self) -> None:
        """What a fit carries from epoch to epoch besides the weights, the optimizer's and the
        balancer's state; a checkpoint holds it (:meth:`on_save_checkpoint`)."""
        self._trained_epoch = -1  # the last epoch (Lightning's, from 0) whose end has run
        self._scheduled_epoch = -1  # the last epoch whose schedules have stepped
        self._resumed_schedules: dict[str, Any] | None = None  # loaded at on_train_start
        self._reference: Scores | None = self.reference  # the validation score's reference
        self._reference_loss: dict[str, float] | None = None
        self._rule: Any = None  # the score's rule, chosen at the first validation
        self._resumed_epoch: dict[str, Any] | None = None  # the epoch so far, from a checkpoint
        self._resumed_rng: dict[str, Tensor] | None = None  # set at the first step after it

    def forward(self, inputs: Any) -> dict[str, Tensor]:
        """The model's raw output per task."""
        return self.model(inputs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = parameter_groups(
            self.model, self.lr, self.lr_multipliers, self.balancer.parameters()
        )
        optimizer = build_optimizer(
            self.optimizer_name,
            groups,
            lr=self.lr,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
        )
        self._schedules = LrSchedules(
            optimizer, self.lr_schedules, epochs=self._epochs(), tasks=[t.name for t in self.tasks]
        )
        return optimizer

    def _epochs(self) -> int:
        """The training's epochs (the ``lightning.Trainer``'s ``max_epochs``): a cosine
        schedule's default length."""
        epochs = self.trainer.max_epochs if self._trainer is not None else None
        if epochs is not None and epochs >= 1:
            for name, spec in self.lr_schedules.items():
                if spec.warmup >= epochs:
                    raise ValueError(
                        f"lr_schedules: the {spec.warmup} warm-up epochs of '{name}' leave none "
                        f"of lightning.Trainer's {epochs} epochs (max_epochs) to the schedule"
                    )
            return epochs
        endless = [
            name
            for name, spec in self.lr_schedules.items()
            if isinstance(spec, CosineSchedule) and spec.epochs is None
        ]
        if endless:
            raise ValueError(
                f"lr_schedules: the cosine schedule of '{endless[0]}' lasts the training's "
                "epochs, but lightning.Trainer has no max_epochs; give it one, or the schedule "
                "its epochs"
            )
        return 1

    # -- training ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":  # before a checkpoint is restored: a new fit starts afresh
            self._reset_fit_state()

    def on_fit_start(self) -> None:
        schedules = self._schedules
        if (
            schedules is not None
            and schedules.needs_validation
            and not self.trainer.enable_validation
        ):
            raise ValueError("a plateau learning-rate schedule needs validation data")
        here = world()
        if here.size > 1 and not self.balancer.data_parallel:
            raise ConfigError(
                f"balancer '{self.balancer.name}' is not exact under data-parallel training "
                f"({here.size} processes): train it in one process"
            )
        if self._scaler() is not None:  # GradScaler's unscale_ must not mix devices
            with torch.no_grad():
                for p in self.balancer.parameters():  # in place: the optimizer keeps them
                    p.data = p.data.to(self.device)

    def on_train_start(self) -> None:
        self._check_resumable()
        if self._resumed_schedules is not None:  # after the optimizer's restored rates
            assert self._schedules is not None
            self._schedules.load_state_dict(self._resumed_schedules)
            self._resumed_schedules = None
        if self._resumed_epoch is not None:  # on the device; a new epoch starts afresh
            state, self._resumed_epoch = self._resumed_epoch, None
            self._losses = {
                n: [v.to(self.device) for v in kept] for n, kept in state["losses"].items()
            }
            self._loss_steps = {n: list(steps) for n, steps in state["loss_steps"].items()}
            self._weights = {n: list(weights) for n, weights in state["weights"].items()}
            self._steps = state["steps"]
            self._lr = dict(state["lr"])
            self._epoch_log = dict(state["log"])

    def _check_resumable(self) -> None:
        """Refuse what a resume from the checkpoint could not continue exactly (the restart
        stages of Lightning 2.5 and later)."""
        loop = self.trainer.fit_loop
        progress = loop.epoch_loop.batch_progress
        after_step = getattr(loop.epoch_loop, "restarted_on_train_batch_end", False)
        if after_step and progress.is_last_batch:
            raise ValueError(
                f"this checkpoint was taken after the last step of epoch {self.current_epoch}, "
                "before the epoch's end: Lightning would resume it without that end (its "
                "validation and on_train_epoch_end); resume from a checkpoint taken at the "
                "epoch's end or mid-epoch"
            )
        mid_epoch = getattr(loop, "restarted_mid_epoch", False)
        if mid_epoch and progress.current.processed and not progress.is_last_batch:
            loaders = CombinedLoader(self.trainer.train_dataloader).flattened
            if not all(isinstance(loader, _Stateful) for loader in loaders):
                raise ValueError(
                    f"this checkpoint was taken after step {progress.current.processed} of epoch "
                    f"{self.current_epoch + 1}, but the training loader cannot continue from "
                    "there (it has no state_dict and load_state_dict): the epoch would draw its "
                    "batches again; use MultiTaskDataModule's loader, or resume from a "
                    "checkpoint taken at the end of an epoch"
                )

    def on_train_epoch_start(self) -> None:
        self._losses = {t.name: [] for t in self.tasks}
        self._loss_steps = {t.name: [] for t in self.tasks}
        self._weights = {t.name: [] for t in self.tasks}
        self._steps = 0
        self._lr = learning_rates(self.trainer.optimizers[0])  # the rates during the epoch

    def training_step(self, step: ShardedBatch | Batch, batch_idx: int) -> None:
        """One step on this process's rows: ``step`` comes from :class:`BatchStream`; a plain
        :class:`Batch` (a loader of the user's, which Lightning's DDP gives a distributed
        sampler) is this process's part of the global batch."""
        if isinstance(step, Batch):  # counted on the device: a synchronisation per task
            step = ShardedBatch.local(step)
        if batch_idx == 0:  # dropout draws as the Trainer's (after the loader's own draw)
            torch.manual_seed(epoch_seed(self.seed, self.current_epoch + 1, world().rank))
        elif self._resumed_rng is not None:  # resumed mid-epoch: the draws continue
            _set_rng_state(self._resumed_rng, self.device)
        self._resumed_rng = None
        batch = step.batch
        outputs, representation = self.model.forward_with_representation(batch.inputs)
        losses = masked_losses(outputs, batch, self.tasks, step.labelled)
        late = sums_losses_late(self.balancer, observed=False)  # then summed with the gradients
        if not late:
            losses = global_losses(losses)
        optimizer: Any = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        scaler = self._scaler()
        scale = None if scaler is None else scaler.scale(torch.ones((), device=self.device))
        # the balancer's Gramians, norms and solves in float32, never under bf16 autocast
        with torch.autocast(self.device.type, enabled=False):
            try:
                weights = self.balancer.backward(
                    losses, shared_params=self._shared, features=representation, summed=not late,
                    **({} if scale is None else {"grad_scale": scale}),
                )  # fmt: skip
            except GradientOverflow:  # the plugin's scaler skips the step, lowers the scale
                weights = dict.fromkeys(losses, 0.0)
                first = optimizer.param_groups[0]["params"][0]
                first.grad = torch.full_like(first, math.inf)
            totals = finish_gradients(self.model, scale, losses if late else None)
            if totals is not None:
                losses = totals
                weights = skip_unless_finite(totals, weights, self.model, self.balancer)
        optimizer.step()  # clipping: on_before_optimizer_step, after any unscaling
        self._steps += 1
        for name, loss in losses.items():  # kept on the device: read back once per epoch
            self._losses[name].append(loss.detach())
            self._loss_steps[name].append(self._steps)
        for name, weight in weights.items():
            self._weights[name].append(weight)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        progress = self.trainer.fit_loop.epoch_loop.batch_progress
        if progress.is_last_batch or progress.current.ready == self.trainer.num_training_batches:
            self._end_training_epoch()  # before the validation (and a checkpoint) that follows

    def on_train_epoch_end(self) -> None:
        self._end_training_epoch()  # unless the last step did (an epoch cut short: max_steps)
        if self._scheduled_epoch != self.current_epoch:  # no validation followed the epoch
            self._step_schedules(None)
        for name, value in self._epoch_log.items():  # restored if it ended before a resume
            self._log(name, value)
        self._epoch_log = {}

    def _end_training_epoch(self) -> None:
        """The epoch's training losses and weights, and the balancer's ``epoch_end``: once per
        epoch, after its last step."""
        if self._trained_epoch == self.current_epoch:
            return
        means: dict[str, float] = {}
        bad_steps: set[int] = set()
        for name, kept in self._losses.items():
            if not kept:
                means[name] = math.nan
                continue
            values = torch.stack(kept)
            finite = values.isfinite()
            bad_steps.update(
                self._loss_steps[name][k] for k in (~finite).nonzero().flatten().tolist()
            )
            # the mean over the steps that were not skipped, as the Trainer's
            means[name] = float(values[finite].mean()) if bool(finite.any()) else math.nan
        if self._steps and len(bad_steps) == self._steps:
            raise TrainingDiverged(
                f"training diverged: every step of epoch {self.current_epoch + 1} had a "
                "non-finite loss. Lower the learning rate or clip the gradients (grad_clip)"
            )
        self.balancer.epoch_end({n: v for n, v in means.items() if math.isfinite(v)})
        self._trained_epoch = self.current_epoch
        self._epoch_log = {f"train/loss/{name}": value for name, value in means.items()}
        for name, weights in self._weights.items():
            if weights:
                self._epoch_log[f"train/weight/{name}"] = sum(weights) / len(weights)
        self._epoch_log |= {f"train/lr/{name}": lr for name, lr in self._lr.items()}

    def _step_schedules(self, evaluation: Evaluation | None) -> None:
        """Step the learning-rate schedules at the end of the epoch, with the validation that
        followed it (``None``: none did); once per epoch."""
        assert self._schedules is not None
        val_loss = {} if evaluation is None else dict(evaluation.loss)
        score = math.nan
        if evaluation is not None and self._reads_score():
            score = self._score(evaluation)
        if world().size > 1:  # every process steps alike: rank 0's values
            val_loss, score = broadcast_object((val_loss, score))
        self._schedules.step(val_loss, score)
        self._scheduled_epoch = self.current_epoch

    def _reads_score(self) -> bool:
        """Whether a plateau schedule watches the validation score (a group not a task's)."""
        names = {t.name for t in self.tasks}
        return any(
            isinstance(spec, PlateauSchedule) and group not in names
            for group, spec in self.lr_schedules.items()
        )

    def _score(self, evaluation: Evaluation) -> float:
        """The epoch's validation score, as the Trainer's model selection computes it."""
        if self._reference is None:
            self._reference = evaluation.metrics
        if self._reference_loss is None:
            self._reference_loss = dict(evaluation.loss)
        if self._rule is None:
            self._rule = choose_selection_rule(
                metric_directions(self.tasks), self._reference, self._reference_loss,
                origin="the reference" if self.reference is not None else "epoch 1",
                label="lightning",
            )  # fmt: skip
        return selection_score(
            self.current_epoch + 1, evaluation, self._rule, self._reference,
            self.delta_m_average, label="lightning",
        )  # fmt: skip

    # -- validation and test ---------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._keep_outputs(batch)

    def on_validation_epoch_end(self) -> None:
        evaluation = self._log_evaluation("val")
        trainer = self.trainer
        if (
            trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and self._trained_epoch == self.current_epoch  # the epoch's last step was taken
            and self._scheduled_epoch != self.current_epoch
        ):
            self._step_schedules(evaluation)  # before a checkpoint at the validation's end

    def on_test_epoch_start(self) -> None:
        self._start_evaluation()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._keep_outputs(batch)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self.model(batch.inputs)

    def evaluation(self) -> Evaluation:
        """Metrics and mean loss per task on the rows seen since the evaluation epoch
        started (every batch of the validation or test data)."""
        return evaluate_outputs(
            self.tasks,
            {n: torch.cat(v) for n, v in self._outputs.items()},
            {n: torch.cat(v) for n, v in self._targets.items()},
            {n: torch.cat(v) for n, v in self._masks.items()},
        )

    def _start_evaluation(self) -> None:
        self._outputs = {t.name: [] for t in self.tasks}
        self._targets = {t.name: [] for t in self.tasks}
        self._masks = {t.name: [] for t in self.tasks}

    def _keep_outputs(self, batch: Batch) -> None:
        with torch.autocast(self.device.type, enabled=False):  # evaluated in float32
            outputs = self.model(batch.inputs)
        for task in self.tasks:
            self._outputs[task.name].append(outputs[task.name].float().cpu())
            self._targets[task.name].append(batch.targets[task.name].cpu())
            self._masks[task.name].append(batch.masks[task.name].cpu())

    def _log_evaluation(self, split: str) -> Evaluation | None:
        if not any(self._outputs.values()):
            return None
        evaluation = self.evaluation()
        for task in self.tasks:
            self._log(f"{split}/loss/{task.name}", evaluation.loss[task.name])
            for metric, value in evaluation.metrics[task.name].items():
                self._log(f"{split}/{metric}/{task.name}", value)
        return evaluation

    def _log(self, name: str, value: float) -> None:
        # every process holds the same global value: the sync averages equal numbers
        self.log(name, value, on_step=False, on_epoch=True, sync_dist=world().size > 1)

    # -- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["polytask_balancer"] = self.balancer.state_dict()
        schedules = self._resumed_schedules
        if self._schedules is not None and schedules is None:
            schedules = self._schedules.state_dict()
        checkpoint["polytask_fit"] = {
            "trained_epoch": self._trained_epoch,
            "scheduled_epoch": self._scheduled_epoch,
            "schedules": schedules or {},
            "reference": self._reference,
            "reference_loss": self._reference_loss,
            "epoch": {  # the epoch so far, for a checkpoint taken mid-epoch
                "losses": {n: [v.cpu() for v in kept] for n, kept in self._losses.items()},
                "loss_steps": self._loss_steps,
                "weights": self._weights,
                "steps": self._steps,
                "lr": self._lr,
                "log": self._epoch_log,  # the values the epoch's end logs, once ended
            },
            # the dropout draws continue from here: every process's state (each draws its own)
            "rng": all_gather_object(_rng_state(self.device)),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "polytask_balancer" in checkpoint:
            self.balancer.load_state_dict(checkpoint["polytask_balancer"])
        state = checkpoint.get("polytask_fit", {})
        self._trained_epoch = state.get("trained_epoch", -1)
        self._scheduled_epoch = state.get("scheduled_epoch", -1)
        self._resumed_schedules = dict(state.get("schedules", {}))  # once the optimizer is
        if state.get("reference") is not None:
            self._reference = state["reference"]
        self._reference_loss = state.get("reference_loss")
        self._resumed_epoch = state.get("epoch")
        states, here = state.get("rng"), world()
        self._resumed_rng = None
        if states is not None and len(states) == here.size:
            self._resumed_rng = states[here.rank]
        elif states is not None:
            warnings.warn(
                f"the checkpoint holds the random states of {len(states)} process(es), not "
                f"{here.size}: resumed mid-epoch, the epoch's dropout masks are drawn afresh",
                RuntimeWarning,
                stacklevel=2,
            )

    def _scaler(self) -> torch.amp.GradScaler | None:
        """The precision plugin's gradient scaler (``16-mixed``), if any."""
        if self._trainer is None:
            return None
        return getattr(self.trainer.precision_plugin, "scaler", None)


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    """The random states that dropout on ``device`` draws from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class BatchStream(IterableDataset):
    """The global batches of a polytask :class:`BatchSource`, epoch by epoch, each cut to this
    process's rows (:class:`ShardedBatch`): every process iterates the same global batches
    (Lightning leaves an iterable dataset unsharded). A pass draws the Trainer's batches of
    ``source.epoch(seed, e)``, where ``e`` (from 1) is what ``epoch()`` returns when the pass
    starts (:class:`MultiTaskDataModule`: the Lightning trainer's epoch, restored on resume);
    without ``epoch``, the passes count 1, 2, …

    Its position is a state (:meth:`state_dict`): the pass's epoch and the batches of it
    trained so far, ``trained()`` (:class:`MultiTaskDataModule`: the Lightning trainer's count;
    without ``trained``, the batches yielded). After :meth:`load_state_dict`, a pass of that
    epoch continues with the next batch."""

    def __init__(
        self,
        source: BatchSource,
        seed: int = 0,
        epoch: Callable[[], int] | None = None,
        trained: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.seed = seed
        self.epoch = epoch
        self.trained = trained
        self._passes = 0
        self._pass_epoch = 0  # the current pass's
        self._yielded = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches trained) to continue

    def __iter__(self) -> Iterator[ShardedBatch]:
        self._passes += 1
        epoch = self.epoch() if self.epoch is not None else self._passes
        rows, here = smallest_batch(self.source), world()
        if here.size > 1 and rows is not None:  # refused before the first step, not mid-epoch
            shard_rows(rows, here.rank, here.size)
        resume, self._resume = self._resume, None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        self._pass_epoch, self._yielded = epoch, skip
        batches = itertools.islice(self.source.epoch(self.seed, epoch), skip, None)
        return (self._yield(batch) for batch in batches)

    def _yield(self, batch: Batch) -> ShardedBatch:
        self._yielded += 1
        return ShardedBatch.of(batch)

    def state_dict(self) -> dict[str, int]:
        """The current pass's epoch and the batches of it trained so far."""
        trained = self.trained() if self.trained is not None else self._yielded
        return {"epoch": self._pass_epoch, "batches": trained}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """The next pass, if of ``state["epoch"]``, skips the ``state["batches"]`` trained."""
        self._resume = (int(state["epoch"]), int(state["batches"]))


class _ResumableLoader(DataLoader):
    """A loader of a :class:`BatchStream` whose position Lightning checkpoints and restores
    (its ``_Stateful`` loaders: the fit loop's ``combined_loader`` state, loaded when a fit
    resumes mid-epoch)."""

    def state_dict(self) -> dict[str, int]:
        assert isinstance(self.dataset, BatchStream)
        return self.dataset.state_dict()

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        assert isinstance(self.dataset, BatchStream)
        self.dataset.load_state_dict(state)


class _OrderedBatches(IterableDataset):
    """Consecutive batches of a dataset, in row order (validation and test)."""

    def __init__(self, data: MultiTaskData, batch_size: int) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[Batch]:
        return self.data.batches(self.batch_size)


class MultiTaskDataModule(L.LightningDataModule):
    """Lightning data loaders over polytask's prepared data (:func:`~polytask.data.prepare_data`):
    the training batches of ``data.train_source`` (one shared table: shuffled batches of
    ``batch_size`` rows; several tables: the ``sampler`` mixture, with ``temperature``),
    reshuffled by ``(seed, epoch)`` as the Trainer's; the validation and test splits in
    batches of ``eval_batch_size`` rows. Batches are :class:`Batch` objects, already
    collated (the loaders have ``batch_size=None``)."""

    def __init__(
        self,
        data: PreparedData,
        *,
        batch_size: int = 256,
        seed: int = 0,
        eval_batch_size: int = EVAL_BATCH_SIZE,
        sampler: str = "proportional",
        temperature: float = 2.0,
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self.sampler = sampler
        self.temperature = temperature

    @property
    def tasks(self) -> list[Task]:
        """The fitted tasks of the data."""
        return self.data.tasks

    def train_dataloader(self) -> DataLoader:
        source = self.data.train_source(self.batch_size, self.sampler, self.temperature)
        stream = BatchStream(source, self.seed, self._epoch, self._trained)
        return _ResumableLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._ordered(self.data.validation)

    def test_dataloader(self) -> DataLoader:
        if self.data.test is None:
            raise ValueError("this prepared data has no test split")
        return self._ordered(self.data.test)

    def _epoch(self) -> int:
        """The epoch a training pass draws, from 1: the epochs the Lightning trainer has
        finished training, plus one. Not ``current_epoch + 1``: resumed from a checkpoint taken
        at ``on_train_epoch_end``, the trainer opens the first pass before it counts that epoch
        as completed (its ``current_epoch``) but after it was counted as processed."""
        if self.trainer is None:
            return 1
        return self.trainer.fit_loop.epoch_progress.current.processed + 1

    def _trained(self) -> int:
        """The batches of the current epoch trained so far: the training loop's processed
        batches, not the loader's, which Lightning's fetcher draws one batch ahead. (When a
        checkpoint is taken after a step, ``on_train_batch_end``, and when it is restored,
        before the loop counts that step completed, both are the steps taken.)"""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _ordered(self, data: MultiTaskData) -> DataLoader:
        return DataLoader(_OrderedBatches(data, self.eval_batch_size), batch_size=None)


def from_config(
    config: Config | Mapping[str, Any] | str | Path,
) -> tuple[MultiTaskModule, MultiTaskDataModule]:
    """The module and data module that ``polytask train`` would train from ``config`` (a
    parsed :class:`Config`, a mapping, or a YAML file): the prepared data, the network
    (``model``), the balancer (``balancer``) and the ``training`` optimizer settings, batch
    size and seed, and the learning-rate schedules (``training.lr_schedule``, each task's
    ``lr_schedule``). The epochs, device and precision are the ``lightning.Trainer``'s to set;
    early stopping is its ``EarlyStopping`` callback's."""
    if isinstance(config, str | Path):
        config = load_config(config)
    elif not isinstance(config, Config):
        config = parse_config(dict(config))
    training = config.training
    left = [
        key
        for key, value in (
            ("training.early_stopping", training.early_stopping),
            ("evaluation.affinity", config.evaluation.affinity),
        )
        if value is not None
    ]
    if left:
        warnings.warn(
            f"from_config: {', '.join(left)} not applied under Lightning (for early stopping, "
            "use its EarlyStopping callback on a logged metric)",
            RuntimeWarning,
            stacklevel=2,
        )
    data = prepare_data(config)
    torch.manual_seed(training.seed)  # the network's initial weights, as a run draws them
    model = build_network(config.model, data.preprocessor, data.tasks)
    names = [t.name for t in data.tasks]
    balancer = build_balancer(config.balancer.name, names, **config.balancer.options)
    multipliers = {t.name: t.lr_multiplier for t in config.tasks}
    groups = parameter_groups(model, training.lr, multipliers, balancer.parameters())
    try:
        schedules = schedules_by_group(
            [g["name"] for g in groups],
            training.lr_schedule,
            {t.name: t.lr_schedule for t in config.tasks if t.name in names},
        )
    except ValueError as exc:
        raise ConfigError(f"lr_schedule: {exc}") from exc
    module = MultiTaskModule(
        model,
        data.tasks,
        balancer,
        optimizer=training.optimizer,
        lr=training.lr,
        weight_decay=training.weight_decay,
        momentum=training.momentum,
        lr_multipliers=multipliers,
        grad_clip=training.grad_clip,
        seed=training.seed,
        lr_schedules=schedules,
        delta_m_average=config.evaluation.delta_m,
    )
    datamodule = MultiTaskDataModule(
        data,
        batch_size=training.batch_size,
        seed=training.seed,
        sampler=config.data.sampler,
        temperature=config.data.temperature,
    )
    return module, datamodule
