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
with a finite loss) and ``train/weight/<task>`` (the balancer's mean weight), and on the
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

Precision: ``32-true`` and ``bf16-mixed`` (the balancer runs outside autocast, on float32
losses); ``16-mixed`` hands the precision plugin's loss scale to the balancer
(:meth:`Balancer.backward` ``grad_scale``), whose gradients the plugin unscales before it steps.
Validation and test run in float32, as the Trainer's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

try:
    import lightning as L
except ImportError:  # the extra is not installed
    raise ImportError(
        "polytask.lightning needs PyTorch Lightning: pip install 'polytask[lightning]'"
    ) from None

from polytask.balancers import Balancer, EqualWeights, build_balancer
from polytask.balancers.base import GradientOverflow
from polytask.config import Config, load_config, parse_config
from polytask.data.dataset import Batch, MultiTaskData
from polytask.data.prepare import PreparedData, prepare_data
from polytask.data.sampling import BatchSource
from polytask.distributed import shard_rows, world
from polytask.errors import ConfigError
from polytask.inference import EVAL_BATCH_SIZE, Evaluation, evaluate_outputs
from polytask.models.base import MultiTaskModel
from polytask.models.build import build_network
from polytask.tasks import Task
from polytask.training.optim import build_optimizer, parameter_groups
from polytask.training.step import (
    finish_gradients,
    global_losses,
    labelled_counts,
    masked_losses,
    shard,
)
from polytask.training.trainer import TrainingDiverged, epoch_seed, smallest_batch

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
    so that dropout repeats and each process draws its own masks."""

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
        self._shared = list(model.shared_parameters())
        self._losses: dict[str, list[Tensor]] = {}
        self._loss_steps: dict[str, list[int]] = {}
        self._weights: dict[str, list[float]] = {}
        self._steps = 0
        self._outputs: dict[str, list[Tensor]] = {}
        self._targets: dict[str, list[Tensor]] = {}
        self._masks: dict[str, list[Tensor]] = {}

    def forward(self, inputs: Any) -> dict[str, Tensor]:
        """The model's raw output per task."""
        return self.model(inputs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = parameter_groups(
            self.model, self.lr, self.lr_multipliers, self.balancer.parameters()
        )
        return build_optimizer(
            self.optimizer_name,
            groups,
            lr=self.lr,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
        )

    # -- training ------------------------------------------------------------------------
    def on_fit_start(self) -> None:
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

    def on_train_epoch_start(self) -> None:
        self._losses = {t.name: [] for t in self.tasks}
        self._loss_steps = {t.name: [] for t in self.tasks}
        self._weights = {t.name: [] for t in self.tasks}
        self._steps = 0

    def training_step(self, step: ShardedBatch | Batch, batch_idx: int) -> None:
        """One step on this process's rows: ``step`` comes from :class:`BatchStream`; a plain
        :class:`Batch` (a loader of the user's, which Lightning's DDP gives a distributed
        sampler) is this process's part of the global batch."""
        if isinstance(step, Batch):  # counted on the device: a synchronisation per task
            step = ShardedBatch.local(step)
        if batch_idx == 0:  # dropout draws as the Trainer's (after the loader's own draw)
            torch.manual_seed(epoch_seed(self.seed, self.current_epoch + 1, world().rank))
        batch = step.batch
        outputs, representation = self.model.forward_with_representation(batch.inputs)
        losses = global_losses(masked_losses(outputs, batch, self.tasks, step.labelled))
        optimizer: Any = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        scaler = self._scaler()
        scale = None if scaler is None else scaler.scale(torch.ones((), device=self.device))
        # the balancer's Gramians, norms and solves in float32, never under bf16 autocast
        with torch.autocast(self.device.type, enabled=False):
            try:
                weights = self.balancer.backward(
                    losses, shared_params=self._shared, features=representation,
                    **({} if scale is None else {"grad_scale": scale}),
                )  # fmt: skip
            except GradientOverflow:  # the plugin's scaler skips the step, lowers the scale
                weights = dict.fromkeys(losses, 0.0)
                first = optimizer.param_groups[0]["params"][0]
                first.grad = torch.full_like(first, math.inf)
            finish_gradients(self.model, scale)
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

    def on_train_epoch_end(self) -> None:
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
        for name, value in means.items():
            self._log(f"train/loss/{name}", value)
        for name, weights in self._weights.items():
            if weights:
                self._log(f"train/weight/{name}", sum(weights) / len(weights))

    # -- validation and test ---------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._keep_outputs(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

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

    def _log_evaluation(self, split: str) -> None:
        if not any(self._outputs.values()):
            return
        evaluation = self.evaluation()
        for task in self.tasks:
            self._log(f"{split}/loss/{task.name}", evaluation.loss[task.name])
            for metric, value in evaluation.metrics[task.name].items():
                self._log(f"{split}/{metric}/{task.name}", value)

    def _log(self, name: str, value: float) -> None:
        # every process holds the same global value: the sync averages equal numbers
        self.log(name, value, on_step=False, on_epoch=True, sync_dist=world().size > 1)

    # -- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["polytask_balancer"] = self.balancer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "polytask_balancer" in checkpoint:
            self.balancer.load_state_dict(checkpoint["polytask_balancer"])

    def _scaler(self) -> torch.amp.GradScaler | None:
        """The precision plugin's gradient scaler (``16-mixed``), if any."""
        if self._trainer is None:
            return None
        return getattr(self.trainer.precision_plugin, "scaler", None)


class BatchStream(IterableDataset):
    """The global batches of a polytask :class:`BatchSource`, epoch by epoch, each cut to this
    process's rows (:class:`ShardedBatch`): every process iterates the same global batches
    (Lightning leaves an iterable dataset unsharded). A pass draws the Trainer's batches of
    ``source.epoch(seed, e)``, where ``e`` (from 1) is what ``epoch()`` returns when the pass
    starts (:class:`MultiTaskDataModule`: the Lightning trainer's epoch, restored on resume);
    without ``epoch``, the passes count 1, 2, …"""

    def __init__(
        self, source: BatchSource, seed: int = 0, epoch: Callable[[], int] | None = None
    ) -> None:
        super().__init__()
        self.source = source
        self.seed = seed
        self.epoch = epoch
        self._passes = 0

    def __iter__(self) -> Iterator[ShardedBatch]:
        self._passes += 1
        epoch = self.epoch() if self.epoch is not None else self._passes
        rows, here = smallest_batch(self.source), world()
        if here.size > 1 and rows is not None:  # refused before the first step, not mid-epoch
            shard_rows(rows, here.rank, here.size)
        return (ShardedBatch.of(batch) for batch in self.source.epoch(self.seed, epoch))


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
        return DataLoader(BatchStream(source, self.seed, self._epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._ordered(self.data.validation)

    def test_dataloader(self) -> DataLoader:
        if self.data.test is None:
            raise ValueError("this prepared data has no test split")
        return self._ordered(self.data.test)

    def _epoch(self) -> int:
        """The epoch a training pass draws: the Lightning trainer's, from 1."""
        return self.trainer.current_epoch + 1 if self.trainer is not None else 1

    def _ordered(self, data: MultiTaskData) -> DataLoader:
        return DataLoader(_OrderedBatches(data, self.eval_batch_size), batch_size=None)


def from_config(
    config: Config | Mapping[str, Any] | str | Path,
) -> tuple[MultiTaskModule, MultiTaskDataModule]:
    """The module and data module that ``polytask train`` would train from ``config`` (a
    parsed :class:`Config`, a mapping, or a YAML file): the prepared data, the network
    (``model``), the balancer (``balancer``) and the ``training`` optimizer settings, batch
    size and seed. The epochs, device and precision are the ``lightning.Trainer``'s to set."""
    if isinstance(config, str | Path):
        config = load_config(config)
    elif not isinstance(config, Config):
        config = parse_config(dict(config))
    training = config.training
    left = [
        key
        for key, value in (
            ("training.lr_schedule", training.lr_schedule),
            ("training.early_stopping", training.early_stopping),
            ("evaluation.affinity", config.evaluation.affinity),
            *((f"tasks.{t.name}.lr_schedule", t.lr_schedule) for t in config.tasks),
        )
        if value is not None
    ]
    if left:
        warnings.warn(
            f"from_config: {', '.join(left)} not applied under Lightning (use its callbacks: "
            "LearningRateMonitor with configure_optimizers' schedulers, EarlyStopping)",
            RuntimeWarning,
            stacklevel=2,
        )
    data = prepare_data(config)
    torch.manual_seed(training.seed)  # the network's initial weights, as a run draws them
    model = build_network(config.model, data.preprocessor, data.tasks)
    names = [t.name for t in data.tasks]
    balancer = build_balancer(config.balancer.name, names, **config.balancer.options)
    module = MultiTaskModule(
        model,
        data.tasks,
        balancer,
        optimizer=training.optimizer,
        lr=training.lr,
        weight_decay=training.weight_decay,
        momentum=training.momentum,
        lr_multipliers={t.name: t.lr_multiplier for t in config.tasks},
        grad_clip=training.grad_clip,
        seed=training.seed,
    )
    datamodule = MultiTaskDataModule(
        data,
        batch_size=training.batch_size,
        seed=training.seed,
        sampler=config.data.sampler,
        temperature=config.data.temperature,
    )
    return module, datamodule
