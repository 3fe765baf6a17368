"""One experiment end to end: data → single-task baselines → multi-task model → test report →
run directory. The CLI's ``train`` and ``demo`` are thin wrappers around :func:`run_experiment`.

The files it writes and where they go are described in :mod:`polytask.rundir`; what they hold,
in :mod:`polytask.results`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from polytask.balancers import build_balancer
from polytask.checks import check_config
from polytask.config import BalancerConfig, Config
from polytask.data.prepare import PreparedData, prepare_data
from polytask.data.sampling import BatchSource, ShuffledBatches
from polytask.device import check_precision, resolve_device
from polytask.distributed import broadcast_object, world
from polytask.errors import ConfigError, FailedOnRankZero, RunError
from polytask.evaluation.delta_m import delta_m, metric_directions, relative_changes
from polytask.models.base import MultiTaskModel
from polytask.models.build import build_network, count_parameters
from polytask.predict import network_shapes
from polytask.relationships.affinity import affinity_csv, build_affinity, run_affinity
from polytask.relationships.grouping import best_groupings, cluster_order, suggested
from polytask.reporting.plots import (
    plot_affinity,
    plot_learning_rates,
    plot_loss_curves,
    plot_weights,
    write_relationships,
)
from polytask.results import (
    ModelResult,
    RunResult,
    load_model_result,
    save_model_result,
    save_run_result,
)
from polytask.rundir import (
    RunDir,
    baseline_dir,
    baselines_folder,
    check_output_dir,
    check_run_name,
    run_dir_for,
)
from polytask.tasks import Task
from polytask.tracking import Tracking, TrackingSetup, prepare_tracking, run_files
from polytask.tracking.values import epoch_images, epoch_scalars, final_scalars, flat_params
from polytask.training.checkpoint import (
    atomic_write_json,
    atomic_write_text,
    save_weights,
)
from polytask.training.optim import build_optimizer, parameter_groups
from polytask.training.schedules import group_names, schedules_by_group
from polytask.training.trainer import EarlyStopping, EpochLog, Trainer, TrainingDiverged

Reporter = Callable[[str], None]


def run_experiment(
    config: Config,
    *,
    baselines: bool = True,
    baseline_config: Config | None = None,
    resume: bool = False,
    progress: bool = False,
    report: Reporter = lambda message: None,
) -> RunResult:
    """Train baselines (or reuse them) and the multi-task model; write and return the results.
    The baselines follow ``baseline_config`` (default: ``config``) for their model and budget:
    ``polytask auto`` compares every candidate with the baselines of the user's config.

    The run folder is held by this process while it is written (a second process resuming it
    gets a RunError naming this one); a baseline being trained by another run is waited for,
    then reused.

    Under ``torchrun`` every process reads the data and trains (baselines included) on its
    shard of each global batch; only rank 0 chooses, holds and writes the run folder (the
    others learn its path by broadcast) and reports. Rank 0 alone tracks the run
    (``logging``: TensorBoard, MLflow; :mod:`polytask.tracking`), whose trackers are checked
    before the run folder is made."""
    output = Path(config.output_dir)
    check_config(config)  # a balancer typo (or a missing device) fails before the data are read
    check_output_dir(output)  # a bad output folder or run name fails before any work
    check_run_name(config.name or "run")
    here = world()  # under torchrun, each process reads its share of a streamed first pass
    data = prepare_data(config, here)  # bad data fails here, before any folder is made
    make_trainer(  # so does a model/balancer mismatch
        config, data, data.tasks, reference=None, progress=False, label="", checkpoint_dir=None
    )
    if data.streamed is not None:  # and streamed shards that cannot keep the processes in step
        data.streamed.batches(config.training.batch_size, here.rank, here.size)
    with contextlib.ExitStack() as stack:
        run: RunDir | None = None
        tracking = TrackingSetup()
        problem: Exception | None = None
        if here.is_main:
            try:
                tracking = prepare_tracking(config)  # an unreachable store: before any folder
                run = run_dir_for(output, config.name or "run", resume=resume)
                stack.enter_context(run.hold())
                if run.finished:  # it finished while this process was looking for it
                    raise RunError(f"{run.path}: the run finished meanwhile; nothing to resume")
            except Exception as exc:  # the other processes must not wait for a folder
                problem = exc
        path, message = broadcast_object(
            (run.path if run is not None else None, None if problem is None else str(problem))
        )
        if problem is not None:
            raise problem
        if message is not None:
            raise FailedOnRankZero(f"rank 0: {message}")
        if run is None:
            run = RunDir(path)
        return _run(
            config,
            data,
            run,
            baselines=baselines,
            baseline_config=baseline_config or config,
            resume=resume,
            progress=progress and here.is_main,
            report=report if here.is_main else _silent,
            tracking=tracking,
        )


def _silent(message: str) -> None:
    """The reporter of the processes other than rank 0 under ``torchrun``."""


def _run(
    config: Config,
    data: PreparedData,
    run: RunDir,
    *,
    baselines: bool,
    baseline_config: Config,
    resume: bool,
    progress: bool,
    report: Reporter,
    tracking: TrackingSetup,
) -> RunResult:
    main = world().is_main  # under torchrun, only rank 0 writes (run_experiment)
    report(f"run directory: {run.path}")
    if main:
        atomic_write_json(run.config, config.model_dump(mode="json"))
        atomic_write_json(
            run.data,
            {"features": data.preprocessor.to_dict(), "tasks": [t.to_dict() for t in data.tasks]},
        )
    counts = data.label_counts()
    report(
        "labelled rows per task (train / validation / test): "
        + ", ".join(
            f"{t.name} {counts['train'][t.name]}/{counts['validation'][t.name]}"
            f"/{counts['test'][t.name]}"
            for t in data.tasks
        )
    )
    here = world()  # under torchrun, streamed data: this process's shard
    source = data.train_source(
        config.training.batch_size,
        config.data.sampler,
        config.data.temperature,
        here.rank,
        here.size,
    )
    report(source.describe())
    tracker = tracking.start(run.path, resume=resume) if main else Tracking()
    tracker.log_params(flat_params(config))
    try:
        result = _train(
            config, data, run, source, counts, baselines=baselines,
            baseline_config=baseline_config, resume=resume, progress=progress, report=report,
            tracker=tracker,
        )  # fmt: skip
    except BaseException:
        if main:
            tracker.finish({}, run_files(run.path), failed=True)
        raise
    if main:
        tracker.finish(final_scalars(result), run_files(run.path))
    return result


def _train(
    config: Config,
    data: PreparedData,
    run: RunDir,
    source: BatchSource,
    counts: dict[str, dict[str, int]],
    *,
    baselines: bool,
    baseline_config: Config,
    resume: bool,
    progress: bool,
    report: Reporter,
    tracker: Tracking,
) -> RunResult:
    """Baselines (not tracked), the multi-task model (tracked per epoch) and the run's files."""
    output = Path(config.output_dir)
    main = world().is_main
    baseline_results = {}
    with _failure_recorded(run.failed, main):
        if baselines:
            for task in (t for t in data.tasks if not t.auxiliary):  # no Δm for auxiliary tasks
                baseline_results[task.name] = train_baseline(
                    baseline_config,
                    data,
                    task,
                    baselines_folder(output),
                    progress=progress,
                    report=report,
                )
    reference = _scores(baseline_results, "validation") or None
    directions = metric_directions(data.tasks)

    def track(log: EpochLog) -> None:
        scalars = epoch_scalars(log, reference, directions, config.evaluation.delta_m)
        tracker.log_epoch(log.epoch, scalars, epoch_images(log) if tracker.trackers else {})

    trainer = make_trainer(
        config,
        data,
        data.tasks,
        reference=reference,
        progress=progress,
        label="multi-task",
        checkpoint_dir=run.checkpoint,
        on_epoch=track if tracker.trackers else None,
    )
    started = time.perf_counter()
    with _failure_recorded(run.failed, main):
        history = trainer.fit(source, data.validation, resume=resume)
    seconds = sum(log.seconds for log in history) if resume else time.perf_counter() - started
    multitask = _result(trainer, data, history, seconds)
    result = RunResult(run.path, data.tasks, multitask, baseline_results, counts)
    if not main:
        return result
    save_weights(trainer.model.state_dict(), run.model)

    if baseline_results:
        average = config.evaluation.delta_m
        result.delta_m_test = delta_m(
            multitask.test, _scores(baseline_results, "test"), directions, average
        )
        result.delta_m_validation = delta_m(
            multitask.validation, _scores(baseline_results, "validation"), directions, average
        )
        result.changes_test = relative_changes(
            multitask.test, _scores(baseline_results, "test"), directions
        )
    baseline_histories = {
        f"single-task {name}": [EpochLog(**log) for log in baseline.history]
        for name, baseline in baseline_results.items()
    }
    plot_loss_curves(
        {"multi-task": history, **baseline_histories},
        [t.name for t in data.tasks],
        run.loss_curves,
    )
    plot_weights(history, run.balancer_weights)
    write_affinity(run, history, config)
    plot_learning_rates(history, run.learning_rates)
    if (relationships := trainer.model.relationships()) is not None:
        write_relationships(*relationships, run.task_relationships_csv, run.task_relationships_png)
    save_run_result(result, run.metrics)  # written last: it marks the run finished
    run.failed.unlink(missing_ok=True)  # a resumed run that failed before
    return result


def write_affinity(run: RunDir, history: list[EpochLog], config: Config) -> None:
    """``affinity.csv`` and the heatmap ``affinity.png`` (tasks ordered by the best-scoring
    grouping) when the run recorded task affinity."""
    found = run_affinity(history)
    if found is None or config.evaluation.affinity is None:
        return
    names, matrix = found
    order = cluster_order(suggested(best_groupings(matrix.numpy())).groups)
    atomic_write_text(run.affinity_csv, affinity_csv(names, matrix))
    plot_affinity(names, matrix, order, config.evaluation.affinity.method, run.affinity_png)


@contextlib.contextmanager
def _failure_recorded(failed: Path, write: bool = True) -> Iterator[None]:
    """Training that diverges leaves ``failed.json`` with the error (checkpoints stay), never
    weights or metrics as if it had succeeded (``write``: this process writes files)."""
    try:
        yield
    except TrainingDiverged as exc:
        if write:
            atomic_write_json(failed, {"error": str(exc)})
        raise


def make_trainer(
    config: Config,
    data: PreparedData,
    tasks: list[Task],
    *,
    reference: dict[str, dict[str, float]] | None,
    progress: bool,
    label: str,
    checkpoint_dir: Path | None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> Trainer:
    """Model, balancer, optimizer and trainer for ``tasks`` as the config describes them."""
    training = config.training
    device = resolve_device(training.device)
    check_precision(training.precision, device)
    torch.manual_seed(training.seed)
    model = _build_network(config, data, tasks).to(device)
    names = [t.name for t in tasks]
    balancer = build_balancer(config.balancer.name, names, **config.balancer.options)
    multipliers = {t.name: t.lr_multiplier for t in config.tasks}
    optimizer = build_optimizer(
        training.optimizer,
        parameter_groups(model, training.lr, multipliers, balancer.parameters()),
        lr=training.lr,
        weight_decay=training.weight_decay,
        momentum=training.momentum,
    )
    try:
        schedules = schedules_by_group(
            group_names(optimizer),
            training.lr_schedule,
            {t.name: t.lr_schedule for t in config.tasks if t.name in names},
        )
    except ValueError as exc:
        raise ConfigError(f"lr_schedule: {exc}") from exc
    stopping = training.early_stopping
    if balancer.needs_shared_params and not list(model.shared_parameters()):
        raise ConfigError(
            f"balancer '{config.balancer.name}' works on gradients of the shared parameters, "
            f"but model.arch '{config.model.arch}' shares none; set balancer.mode: features "
            "or choose another architecture"
        )
    affinity = config.evaluation.affinity
    observers = [build_affinity(affinity, names, balancer)] if affinity is not None else []
    on_params = affinity is not None and (affinity.method == "tag" or affinity.mode == "params")
    if on_params and not list(model.shared_parameters()):
        assert affinity is not None
        what = "tag" if affinity.method == "tag" else "cosine in mode params"
        raise ConfigError(
            f"evaluation.affinity: {what} works on the shared parameters, but model.arch "
            f"'{config.model.arch}' shares none; use method cosine with mode features"
        )
    if affinity is not None and affinity.mode == "features" and model.per_task_representation:
        raise ConfigError(
            f"evaluation.affinity: model.arch '{config.model.arch}' gives each task its own slice "
            "of the representation, so representation gradients never meet (every cosine would "
            "be 0); measure on the shared parameters (mode: params) where the model has any"
        )
    return Trainer(
        model,
        tasks,
        optimizer=optimizer,
        balancer=balancer,
        epochs=training.epochs,
        batch_size=training.batch_size,
        seed=training.seed,
        early_stopping=EarlyStopping(stopping.patience, stopping.min_delta) if stopping else None,
        reference=reference,
        delta_m_average=config.evaluation.delta_m,
        grad_clip=training.grad_clip,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        label=label,
        observers=observers,
        lr_schedules=schedules,
        on_epoch=on_epoch,
        device=device,
        precision=training.precision,
    )


TRAINING_BYTES_PER_PARAMETER = 16
"""float32 weights, gradients and two optimizer moments (Adam)."""


def _build_network(config: Config, data: PreparedData, tasks: list[Task]) -> MultiTaskModel:
    """The configured network; layer sizes the machine cannot hold are a ConfigError, found
    before any memory is allocated where the network can be built on the ``meta`` device."""
    advice = "reduce model.trunk / model.head"
    skeleton = network_shapes(config, data.preprocessor, tasks)
    memory = _physical_memory()
    if skeleton is not None and memory is not None:
        needed = count_parameters(skeleton) * TRAINING_BYTES_PER_PARAMETER
        if needed > memory:
            raise ConfigError(
                f"model: {count_parameters(skeleton):,} parameters need about "
                f"{needed / 2**30:,.0f} GiB to train, more than this machine's "
                f"{memory / 2**30:,.0f} GiB; {advice}"
            )
    try:
        return build_network(config.model, data.preprocessor, tasks)
    except (RuntimeError, MemoryError) as exc:
        raise ConfigError(f"model: the network cannot be built ({exc}); {advice}") from exc


def _physical_memory() -> int | None:
    """Bytes of RAM, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def train_baseline(
    config: Config,
    data: PreparedData,
    task: Task,
    folder: Path,
    *,
    progress: bool = False,
    report: Reporter = lambda message: None,
) -> ModelResult:
    """The single-task network for ``task`` with the same trunk, budget and seed; reused when
    the same baseline was already trained in the baselines ``folder``."""
    baseline = baseline_dir(folder, task.name, baseline_key(config, task))
    if not world().is_main:  # under torchrun: rank 0 decides, every process trains
        reused = broadcast_object(None)
        if reused is not None:
            return reused
        return _fit_baseline(config, data, task, baseline, progress=False)[0]
    with baseline.hold(
        wait=True,
        on_wait=lambda holder: report(
            f"baseline '{task.name}': waiting for {holder}, which is training it"
        ),
    ):
        return _train_baseline(config, data, task, baseline, progress=progress, report=report)


def _train_baseline(
    config: Config,
    data: PreparedData,
    task: Task,
    baseline: RunDir,
    *,
    progress: bool,
    report: Reporter,
) -> ModelResult:
    reused = None
    if baseline.finished:
        try:
            reused = load_model_result(baseline.metrics)
            report(f"baseline '{task.name}': reused {baseline.path}")
        except (ValueError, TypeError):
            report(f"baseline '{task.name}': {baseline.metrics} is unreadable, training it again")
    reused = broadcast_object(reused)  # the other processes' decision too (torchrun)
    if reused is not None:
        return reused
    result, model = _fit_baseline(config, data, task, baseline, progress=progress)
    save_weights(model, baseline.model)
    save_model_result(result, baseline.metrics)
    return result


def _fit_baseline(
    config: Config, data: PreparedData, task: Task, baseline: RunDir, *, progress: bool
) -> tuple[ModelResult, dict[str, torch.Tensor]]:
    """Train the single-task network of ``task``; its result and weights."""
    spec = next(s for s in config.tasks if s.name == task.name)
    single = config.model_copy(  # one task: nothing to balance, no affinity
        update={
            "balancer": BalancerConfig(),
            "evaluation": config.evaluation.model_copy(update={"affinity": None}),
        }
    )
    trainer = make_trainer(
        single,
        data,
        [task],
        reference=None,
        progress=progress,
        label=f"baseline {task.name}",
        checkpoint_dir=baseline.checkpoint,
    )
    here = world()  # under torchrun, streamed data: this process's shard
    source = data.train_source(
        config.training.batch_size, "proportional", 1.0, here.rank, here.size
    )
    if spec.data is not None:
        source = ShuffledBatches(data.train[task.name], config.training.batch_size)
    started = time.perf_counter()
    history = trainer.fit(source, data.validation, resume=True)
    result = _result(trainer, data, history, time.perf_counter() - started)
    return result, trainer.model.state_dict()


def baseline_key(config: Config, task: Task) -> str:
    """A hash of everything that determines a task's baseline (data, features, task, model,
    training budget and precision); the device, the balancer, the other tasks and how
    ``groups`` splits them (a one-task ``groups`` model is its task's trunk alone) do not
    enter it."""
    spec = next(s for s in config.tasks if s.name == task.name)
    model = config.model.model_dump(mode="json")
    model.pop("groups", None)
    training = config.training.model_dump(mode="json")
    training.pop("device", None)  # where it trains is not what it is; precision is
    relevant = {
        "data": config.data.model_dump(mode="json"),
        "features": config.features.model_dump(mode="json"),
        "task": spec.model_dump(mode="json"),
        "model": model,
        "training": training,
    }
    text = json.dumps(relevant, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _result(
    trainer: Trainer, data: PreparedData, history: list[EpochLog], seconds: float
) -> ModelResult:
    validation = trainer.evaluate(data.validation).metrics
    test = trainer.evaluate(data.test).metrics if data.test is not None else {}  # sealed
    return ModelResult(
        validation=validation,
        test=test,
        parameters=count_parameters(trainer.model),
        seconds=seconds,
        best_epoch=trainer.best_epoch,
        history=[asdict(log) for log in history],
    )


def _scores(results: dict[str, ModelResult], split: str) -> dict[str, dict[str, float]]:
    return {name: getattr(result, split)[name] for name, result in results.items()}
