"""polytask.lightning: MultiTaskModule trains as the polytask Trainer does, under
``lightning.Trainer``, in one process and under its DDP strategy."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import os
import subprocess
import sys
import warnings
from typing import ClassVar

import pytest
import torch
from torch.utils.data import DataLoader

L = pytest.importorskip("lightning")

from polytask.balancers import build_balancer  # noqa: E402
from polytask.balancers.equal import EqualWeights  # noqa: E402
from polytask.config import (  # noqa: E402
    CosineSchedule,
    PlateauSchedule,
    StepSchedule,
    parse_config,
)
from polytask.data.builtin import get_builtin  # noqa: E402
from polytask.data.prepare import prepare_data  # noqa: E402
from polytask.data.sampling import ShuffledBatches  # noqa: E402
from polytask.distributed import World  # noqa: E402
from polytask.errors import ConfigError, RunError  # noqa: E402
from polytask.inference import evaluate  # noqa: E402
from polytask.lightning import (  # noqa: E402
    BatchStream,
    MultiTaskDataModule,
    MultiTaskModule,
    from_config,
)
from polytask.models.build import build_network  # noqa: E402
from polytask.training import Trainer  # noqa: E402
from polytask.training.optim import parameter_groups  # noqa: E402
from polytask.training.schedules import learning_rates  # noqa: E402

from .test_layers import SRC  # noqa: E402

QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "logger": False,
}
BATCH = 32


def penguins(balancer="equal", dropout=0.1, lr_schedule=None, **options):
    """The penguins config (with dropout, whose draws are then compared too)."""
    schedule = {} if lr_schedule is None else {"lr_schedule": lr_schedule}
    return parse_config(
        get_builtin("penguins").config(
            model={"trunk": [16], "head": [8], "dropout": dropout},
            training={"batch_size": BATCH, "seed": 3, **schedule},
            balancer={"name": balancer, **options},
        )
    )


def flat(state, prefix=""):
    """A balancer's state as ``{dotted key: value}`` (nested dicts and lists unfolded)."""
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, list | tuple):
        items = enumerate(state)
    else:
        return {prefix: state}
    return {k: v for key, value in items for k, v in flat(value, f"{prefix}.{key}").items()}


def same(a, b):
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.fixture(scope="module")
def data():
    return prepare_data(penguins())


def fit(module, datamodule, epochs=2, ckpt_path=None, **options):
    trainer = L.Trainer(max_epochs=epochs, **{**QUIET, **options})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own notices
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("method", ["uncertainty", "famo", "gradnorm", "mgda", "pcgrad"])
def test_the_module_trains_exactly_as_the_polytask_trainer(data, method):
    names = [t.name for t in data.tasks]
    options = {"seed": 5} if method == "pcgrad" else {}  # its random task orders
    torch.manual_seed(0)
    model = build_network(penguins().model, data.preprocessor, data.tasks)
    twin = copy.deepcopy(model)
    clip = 0.05 if method == "mgda" else None  # clipped after the balancer, as the Trainer
    module = MultiTaskModule(
        model, data.tasks, build_balancer(method, names, **options), lr=1e-2, grad_clip=clip, seed=3
    )
    datamodule = MultiTaskDataModule(data, batch_size=BATCH, seed=3)
    trainer = fit(module, datamodule)

    balancer = build_balancer(method, names, **options)
    reference = Trainer(
        twin,
        data.tasks,
        balancer=balancer,
        optimizer=torch.optim.Adam(parameter_groups(twin, 1e-2, extra=balancer.parameters())),
        epochs=2,
        batch_size=BATCH,
        seed=3,
        grad_clip=clip,
    )
    history = reference.fit(data.train["shared"])  # no validation: no epoch selection
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q), name
    # the balancer's own state (parameters, logits, optimizer moments, generator) alike
    before = flat(build_balancer(method, names, **options).state_dict())
    state, expected = flat(module.balancer.state_dict()), flat(balancer.state_dict())
    assert state.keys() == expected.keys()
    assert all(same(state[k], expected[k]) for k in state)
    if method in ("uncertainty", "famo", "gradnorm"):  # their learned values moved
        assert not all(same(before[k], expected[k]) for k in before)

    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    last = history[-1]
    for name in names:
        assert logged[f"train/loss/{name}"] == pytest.approx(last.train_loss[name], rel=1e-6)
        assert logged[f"train/weight/{name}"] == pytest.approx(last.weights[name], rel=1e-6)
    recomputed = evaluate(model, data.tasks, data.validation)
    for task in data.tasks:
        assert logged[f"val/loss/{task.name}"] == pytest.approx(
            recomputed.loss[task.name], rel=1e-6
        )
        for metric, value in recomputed.metrics[task.name].items():
            assert math.isfinite(logged[f"val/{metric}/{task.name}"])
            assert logged[f"val/{metric}/{task.name}"] == pytest.approx(value, rel=1e-6)
    if method == "mgda":  # a gradient method's weights moved away from equal
        assert max(last.weights.values()) - min(last.weights.values()) > 0.01


class _AutocastSpy(EqualWeights):
    """Equal weights that record whether autocast was on while they backpropagated."""

    seen: ClassVar[list[bool]] = []

    def step(self, step):
        _AutocastSpy.seen.append(torch.is_autocast_enabled("cpu"))
        return super().step(step)


def test_under_bf16_the_balancer_and_validation_run_in_float32(data):
    module, datamodule = from_config(penguins(dropout=0.0))
    module.balancer = _AutocastSpy([t.name for t in data.tasks])
    _AutocastSpy.seen = []
    trainer = fit(module, datamodule, epochs=1, precision="bf16-mixed")
    assert trainer.global_step > 0 and _AutocastSpy.seen == [False] * trainer.global_step
    recomputed = evaluate(module.model, data.tasks, data.validation)  # float32
    for task in data.tasks:  # validation ran in float32 too
        logged = float(trainer.callback_metrics[f"val/loss/{task.name}"])
        assert logged == pytest.approx(recomputed.loss[task.name], rel=1e-6)


def test_16_mixed_hands_its_loss_scale_to_the_balancer():
    """fp16 autocast on the CPU with a GradScaler (the plugin Lightning builds for
    ``16-mixed`` on CUDA): the balancer writes scaled gradients that the plugin unscales (with
    SGD, which is not scale-invariant, the run stays next to fp32's); overflowing steps are
    skipped and lower the scale."""
    from lightning.pytorch.plugins import MixedPrecision

    config = penguins("mgda", dropout=0.0)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"optimizer": "sgd", "lr": 0.05})}
    )
    trained = {}
    for init_scale in (None, 2.0**12, 2.0**24):
        module, datamodule = from_config(config)
        start = [p.detach().clone() for p in module.model.parameters()]
        options = {}
        if init_scale is not None:
            scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
            options["plugins"] = [MixedPrecision("16-mixed", "cpu", scaler=scaler)]
        fit(module, datamodule, epochs=2, limit_val_batches=0, **options)
        trained[init_scale] = torch.cat([p.detach().flatten() for p in module.model.parameters()])
        moved = [
            not torch.equal(p, q) for p, q in zip(module.model.parameters(), start, strict=True)
        ]
        assert trained[init_scale].isfinite().all() and any(moved)
    torch.testing.assert_close(trained[2.0**12], trained[None], atol=2e-3, rtol=0)
    assert scaler.get_scale() < 2.0**24  # the overflowing steps lowered it


def test_a_checkpoint_resumes_the_run_exactly(data, tmp_path):
    names = [t.name for t in data.tasks]

    def module_and_data():
        torch.manual_seed(0)
        model = build_network(penguins().model, data.preprocessor, data.tasks)
        return (
            MultiTaskModule(model, data.tasks, build_balancer("famo", names), lr=1e-2, seed=3),
            MultiTaskDataModule(data, batch_size=BATCH, seed=3),
        )

    straight, datamodule = module_and_data()
    fit(straight, datamodule, epochs=2, limit_val_batches=0)
    first, datamodule = module_and_data()
    trainer = fit(first, datamodule, epochs=1, limit_val_batches=0)
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed, datamodule = module_and_data()
    trainer = L.Trainer(max_epochs=2, limit_val_batches=0, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "epoch1.ckpt")
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p, q)
    state, expected = flat(resumed.balancer.state_dict()), flat(straight.balancer.state_dict())
    assert all(same(state[k], expected[k]) for k in expected)


def test_the_test_split_is_logged_and_from_config_takes_the_config(data):
    module, datamodule = from_config(penguins(dropout=0.0))
    assert isinstance(module.balancer, EqualWeights) and datamodule.batch_size == BATCH
    trainer = fit(module, datamodule, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.test(module, datamodule=datamodule, verbose=False)
    recomputed = evaluate(module.model, datamodule.tasks, datamodule.data.test)
    logged = trainer.callback_metrics
    for task in datamodule.tasks:
        for metric, value in recomputed.metrics[task.name].items():
            assert float(logged[f"test/{metric}/{task.name}"]) == pytest.approx(value, rel=1e-6)


def test_from_config_names_the_settings_it_does_not_apply_and_takes_the_schedules():
    raw = copy.deepcopy(  # config() hands out the built-in's own task list
        get_builtin("penguins").config(
            training={"lr_schedule": "cosine", "early_stopping": {"patience": 2}}
        )
    )
    raw["tasks"][0]["lr_schedule"] = {"type": "step", "step_size": 2}
    with pytest.warns(RuntimeWarning, match="from_config: training.early_stopping not") as seen:
        module, _ = from_config(raw)
    assert not any("lr_schedule" in str(w.message) for w in seen)
    first = raw["tasks"][0]["name"]
    assert isinstance(module.lr_schedules.pop(first), StepSchedule)
    assert module.lr_schedules.keys() == {"shared", *(t.name for t in module.tasks)} - {first}
    assert all(isinstance(s, CosineSchedule) for s in module.lr_schedules.values())


EPOCH_SCHEDULES = {  # a warm-up then a cosine, and a task's own step schedule
    "shared": CosineSchedule(type="cosine", warmup=1),
    "species": StepSchedule(type="step", step_size=1, gamma=0.5),
}
PLATEAU_SCHEDULES = {  # on penguins both lower their rate after epoch 2 (and 3)
    "shared": PlateauSchedule(type="plateau", patience=0, threshold=100.0),  # Δm, in points
    "body_mass": PlateauSchedule(type="plateau", patience=0, threshold=0.5),  # its val loss
}


class RateLog(L.Callback):
    """Each epoch's learning rate per parameter group, as the Trainer's ``EpochLog.lr``."""

    def __init__(self):
        self.rates = []

    def on_train_epoch_start(self, trainer, module):
        self.rates.append(learning_rates(trainer.optimizers[0]))


class EpochLogs(L.Callback):
    """The values logged at each epoch's end (read when the next epoch, or the fit, starts)."""

    def __init__(self):
        self.logs = []

    def on_train_epoch_start(self, trainer, module):
        if trainer.callback_metrics:
            self.logs.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    def on_train_end(self, trainer, module):
        self.on_train_epoch_start(trainer, module)


@pytest.mark.parametrize(
    "schedules", [EPOCH_SCHEDULES, PLATEAU_SCHEDULES], ids=["epoch", "plateau"]
)
def test_learning_rate_schedules_follow_the_polytask_trainer(data, schedules):
    """The schedules step at the end of each epoch, a plateau reading the validation loss of
    its task or the validation score, as the Trainer's: the same rates epoch by epoch, then
    the same parameters, with DWA, whose epoch end comes before the validation."""
    names = [t.name for t in data.tasks]
    torch.manual_seed(0)
    model = build_network(penguins().model, data.preprocessor, data.tasks)
    twin = copy.deepcopy(model)
    module = MultiTaskModule(
        model, data.tasks, build_balancer("dwa", names), lr=1e-2, seed=3, lr_schedules=schedules
    )
    rates = RateLog()
    fit(module, MultiTaskDataModule(data, batch_size=BATCH, seed=3), epochs=3, callbacks=[rates])

    balancer = build_balancer("dwa", names)
    last = {}  # the Trainer restores its best epoch at the end: its weights after epoch 3
    reference = Trainer(
        twin,
        data.tasks,
        balancer=balancer,
        optimizer=torch.optim.Adam(parameter_groups(twin, 1e-2, extra=balancer.parameters())),
        epochs=3,
        batch_size=BATCH,
        seed=3,
        lr_schedules=schedules,
        on_epoch=lambda log: last.update(twin.state_dict(keep_vars=False)),
    )
    history = reference.fit(data.train["shared"], data.validation)
    assert rates.rates == [log.lr for log in history]
    # and the rates after the last epoch's step; the schedules moved the rates of their groups
    final = learning_rates(module.trainer.optimizers[0])
    assert final == learning_rates(reference.optimizer)
    assert all(final[g] < 1e-2 for g in schedules) and final["sex"] == 1e-2
    for name, value in model.state_dict().items():
        assert torch.equal(value, last[name]), name
    assert module.balancer.state_dict() == balancer.state_dict()


@pytest.mark.parametrize("on_train_epoch_end", [False, True], ids=["after_val", "epoch_end"])
def test_a_checkpoint_resumes_dwa_and_the_schedules_exactly(data, tmp_path, on_train_epoch_end):
    """DWA's epoch update and the schedules' step are in a checkpoint taken at the end of the
    epoch's validation (``ModelCheckpoint`` with ``save_on_train_epoch_end=False``) as in one
    taken at the end of the epoch: a run resumed from epoch 2's ends as the uninterrupted one,
    and the epoch-2 end is not done twice; resumed after epoch 2's validation, it logs the
    epoch's training values at the epoch's end, as the uninterrupted run."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    names = [t.name for t in data.tasks]
    schedules = {  # the score rises every epoch, from epoch 1's metrics, and body_mass's loss
        "shared": PlateauSchedule(type="plateau", patience=0, threshold=0.0),  # falls slowly
        "body_mass": PLATEAU_SCHEDULES["body_mass"],
        "species": CosineSchedule(type="cosine", warmup=1),
    }

    def run(callbacks=(), resume=None):
        torch.manual_seed(0)
        model = build_network(penguins().model, data.preprocessor, data.tasks)
        balancer = build_balancer("dwa", names)
        ends, end = [], balancer.epoch_end
        balancer.epoch_end = lambda means: (ends.append(means), end(means))
        module = MultiTaskModule(
            model, data.tasks, balancer, lr=1e-2, seed=3, lr_schedules=schedules
        )
        logs = EpochLogs()
        options = {"enable_checkpointing": bool(callbacks), "callbacks": [*callbacks, logs]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(max_epochs=3, **{**QUIET, **options}).fit(
                module, datamodule=MultiTaskDataModule(data, batch_size=BATCH, seed=3),
                ckpt_path=resume,
            )  # fmt: skip
        return module, ends, logs.logs

    saving = ModelCheckpoint(
        tmp_path, "{epoch}", save_top_k=-1, save_on_train_epoch_end=on_train_epoch_end
    )
    straight, ends, logs = run([saving])
    resumed, resumed_ends, resumed_logs = run(resume=tmp_path / "epoch=1.ckpt")
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert resumed.balancer.state_dict() == straight.balancer.state_dict()
    assert len(ends) == 3 and resumed_ends == ends[2:]  # the resumed run: epoch 3's only
    rates = learning_rates(straight.trainer.optimizers[0])
    assert learning_rates(resumed.trainer.optimizers[0]) == rates
    assert rates["shared"] == 1e-2 and rates["body_mass"] < 1e-2
    assert len(logs) == 3 and resumed_logs[-1] == logs[2]
    if not on_train_epoch_end:  # epoch 2's training values (its validation ran before)
        train = {k: v for k, v in logs[1].items() if k.startswith("train/")}
        assert len(resumed_logs) == 2 and resumed_logs[0] == train


@pytest.mark.parametrize(
    ("method", "options"), [("dwa", {}), ("pcgrad", {"seed": 5})], ids=["dwa", "pcgrad"]
)
def test_a_checkpoint_taken_mid_epoch_resumes_exactly(data, tmp_path, method, options):
    """A checkpoint after step 3 of epoch 2 (``every_n_train_steps``): the resumed run, in a
    fresh module and trainer with the random state disturbed, continues with batch 4 of epoch
    2, the dropout masks it would have drawn and the epoch's losses and weights so far, and
    ends as the uninterrupted run: parameters, balancer state, learning rates, and the values
    logged for epochs 2 and 3 (DWA's weights, from epoch 3 on, read epoch 2's mean losses)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    names = [t.name for t in data.tasks]
    per_epoch = math.ceil(len(data.train["shared"]) / BATCH)
    assert per_epoch > 4

    def run(callbacks=(), resume=None):
        torch.manual_seed(0)
        model = build_network(penguins(dropout=0.3).model, data.preprocessor, data.tasks)
        module = MultiTaskModule(
            model, data.tasks, build_balancer(method, names, **options), lr=1e-2, seed=3,
            lr_schedules=EPOCH_SCHEDULES,
        )  # fmt: skip
        logs = EpochLogs()
        options_ = {"enable_checkpointing": bool(callbacks), "callbacks": [*callbacks, logs]}
        torch.rand(5)  # the random state a resumed run starts from is not the saving run's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(max_epochs=3, **{**QUIET, **options_}).fit(
                module, datamodule=MultiTaskDataModule(data, batch_size=BATCH, seed=3),
                ckpt_path=resume,
            )  # fmt: skip
        return module, logs.logs

    step = per_epoch + 3  # epoch 2, batch 3
    saving = ModelCheckpoint(tmp_path, "{step}", save_top_k=-1, every_n_train_steps=step)
    straight, logs = run([saving])
    resumed, resumed_logs = run(resume=tmp_path / f"step={step}.ckpt")
    for p, q in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p, q)
    state, expected = flat(resumed.balancer.state_dict()), flat(straight.balancer.state_dict())
    assert state.keys() == expected.keys() and all(same(state[k], expected[k]) for k in state)
    rates = learning_rates(straight.trainer.optimizers[0])
    assert learning_rates(resumed.trainer.optimizers[0]) == rates and rates["species"] < 1e-2
    assert resumed.trainer.global_step == straight.trainer.global_step == 3 * per_epoch
    assert len(logs) == 3 and resumed_logs == logs[1:]  # epochs 2 and 3, every value alike
    if method == "dwa":  # its weights moved in epoch 3
        assert len({logs[2][f"train/weight/{name}"] for name in names}) == len(names)


@pytest.mark.parametrize("users_loader", [False, True], ids=["after_last_step", "users_loader"])
def test_a_checkpoint_that_cannot_resume_exactly_is_refused(data, tmp_path, users_loader):
    """Taken after an epoch's last step, before its end (validation, ``on_train_epoch_end``),
    a checkpoint would resume past that end, which Lightning never runs; taken mid-epoch with
    a loader of the user's that keeps no position, the epoch would start again: refused."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    per_epoch = math.ceil(len(data.train["shared"]) / BATCH)
    step = per_epoch + 2 if users_loader else per_epoch
    batches = list(ShuffledBatches(data.train["shared"], BATCH).epoch(3, 1))

    def run(callbacks=(), resume=None):
        module, datamodule = from_config(penguins(dropout=0.0))
        loader = DataLoader(batches, batch_size=None)
        source = {"train_dataloaders": loader} if users_loader else {"datamodule": datamodule}
        options = {"enable_checkpointing": bool(callbacks), "callbacks": list(callbacks)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(max_epochs=2, **{**QUIET, **options}).fit(module, **source, ckpt_path=resume)

    run([ModelCheckpoint(tmp_path, "{step}", save_top_k=-1, every_n_train_steps=step)])
    message = (
        "after step 2 of epoch 2, but the training loader cannot continue from there"
        if users_loader
        else "after the last step of epoch 1, before the epoch's end"
    )
    with pytest.raises(ValueError, match=message):
        run(resume=tmp_path / f"step={step}.ckpt")


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        (PLATEAU_SCHEDULES, "a plateau learning-rate schedule needs validation data"),
        (EPOCH_SCHEDULES, "the 1 warm-up epochs of 'shared' leave none of"),  # 1 epoch
    ],
)
def test_a_schedule_that_cannot_run_is_an_error(data, schedules, message):
    names = [t.name for t in data.tasks]
    model = build_network(penguins().model, data.preprocessor, data.tasks)
    module = MultiTaskModule(model, data.tasks, EqualWeights(names), lr_schedules=schedules)
    with pytest.raises(ValueError, match=message):
        fit(module, MultiTaskDataModule(data, batch_size=BATCH), epochs=1, limit_val_batches=0)


def test_a_loader_of_batches_of_the_users_trains_as_the_stream(data):
    names = [t.name for t in data.tasks]
    batches = list(ShuffledBatches(data.train["shared"], BATCH).epoch(3, 1))
    trained = []
    for loader in (None, DataLoader(batches, batch_size=None)):
        torch.manual_seed(0)
        model = build_network(penguins().model, data.preprocessor, data.tasks)
        module = MultiTaskModule(model, data.tasks, build_balancer("mgda", names), seed=3)
        trainer = L.Trainer(max_epochs=1, limit_val_batches=0, **QUIET)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if loader is None:
                trainer.fit(module, datamodule=MultiTaskDataModule(data, batch_size=BATCH, seed=3))
            else:
                trainer.fit(module, train_dataloaders=loader)
        trained.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(trained[0], trained[1])


class Unsummed(EqualWeights):
    """A method declaring it is not exact under data-parallel training."""

    name = "unsummed"
    data_parallel = False


def test_a_balancer_that_is_not_data_parallel_is_refused_under_ddp(data, monkeypatch):
    names = [t.name for t in data.tasks]
    model = build_network(penguins().model, data.preprocessor, data.tasks)
    module = MultiTaskModule(model, data.tasks, Unsummed(names))
    module.on_fit_start()  # one process: fine
    monkeypatch.setattr("polytask.lightning.world", lambda: World(0, 2))
    with pytest.raises(ConfigError, match="balancer 'unsummed' is not exact under data-parallel"):
        module.on_fit_start()


def test_a_global_batch_without_a_row_for_every_process_is_refused_before_training(
    data, monkeypatch
):
    train = data.train["shared"]
    monkeypatch.setattr("polytask.lightning.world", lambda: World(0, 2))
    stream = BatchStream(ShuffledBatches(train, len(train) - 1), seed=3)  # the last batch: 1 row
    with pytest.raises(RunError, match="a global batch of 1 row.s. cannot be split over 2"):
        iter(stream)


def test_the_module_checks_its_arguments(data):
    names = [t.name for t in data.tasks]
    model = build_network(penguins().model, data.preprocessor, data.tasks)
    with pytest.raises(ValueError, match="balancer 'equal' has no task 'sex'"):
        MultiTaskModule(model, data.tasks, EqualWeights(["species", "body_mass"]))
    with pytest.raises(ValueError, match="lr_multipliers: no task 'sexx'"):
        MultiTaskModule(model, data.tasks, lr_multipliers={"sexx": 2.0})
    with pytest.raises(ValueError, match="no output for task 'extra'"):
        MultiTaskModule(model, [*data.tasks, dataclasses.replace(data.tasks[0], name="extra")])
    with pytest.raises(ValueError, match="lr_schedules: no parameter group named 'trunk'"):
        MultiTaskModule(model, data.tasks, lr_schedules={"trunk": EPOCH_SCHEDULES["shared"]})
    assert [t.name for t in MultiTaskModule(model, data.tasks).tasks] == names


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # import lightning raises ImportError
    monkeypatch.delitem(sys.modules, "polytask.lightning")
    with pytest.raises(ImportError) as caught:
        importlib.import_module("polytask.lightning")
    message = str(caught.value)
    assert "pip install 'polytask[lightning]'" in message and "\n" not in message


DDP_METHODS = {  # a loss weighting with parameters; Gramians in features and params mode;
    "equal": {},  # its loss values summed with the gradients (one collective a step)
    "uncertainty": {},  # DB-MTL's own collectives (its per-task gradient averages)
    "mgda": {"mode": "features"},
    "pcgrad": {"mode": "params", "seed": 1},
    "db_mtl": {"mode": "params"},
    "graddrop": {"mode": "params", "seed": 2},  # its masks from the global T×P blocks
}
DDP_SCHEDULE = {"type": "plateau", "patience": 0, "threshold": 0.5}  # some rates fall
DDP_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import lightning as L
from safetensors.torch import save_file
import torch
from polytask.lightning import from_config
from polytask.training.schedules import learning_rates
from tests.test_lightning import DDP_METHODS, DDP_SCHEDULE, QUIET, penguins

for method, options in DDP_METHODS.items():
    config = penguins(method, dropout=0.0, lr_schedule=DDP_SCHEDULE, **options)
    module, datamodule = from_config(config)
    trainer = L.Trainer(max_epochs=2, **{**QUIET, "devices": 2, "strategy": "ddp"})
    trainer.fit(module, datamodule=datamodule)
    tensors = {f"model.{k}": v.contiguous() for k, v in module.model.state_dict().items()}
    tensors |= {f"logged.{k}": v.reshape(1) for k, v in trainer.callback_metrics.items()}
    rates = learning_rates(trainer.optimizers[0])
    tensors |= {f"lr.{k}": torch.tensor([v], dtype=torch.float64) for k, v in rates.items()}
    save_file(tensors, f"{sys.argv[1]}/{method}.{trainer.global_rank}.safetensors")
"""


@pytest.mark.slow
def test_ddp_on_two_processes_equals_one_process(tmp_path):
    """Lightning's DDP strategy on 2 CPU processes (started together, as a launcher would:
    LOCAL_RANK set) ends with the parameters, logged values and learning rates (a plateau
    schedule on every group) of one process."""
    from safetensors.torch import load_file

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    _on_two_processes(script, str(tmp_path))
    for method, options in DDP_METHODS.items():
        saved = [load_file(tmp_path / f"{method}.{r}.safetensors") for r in (0, 1)]
        assert saved[0].keys() == saved[1].keys()
        for key in saved[0]:  # the processes agree exactly
            assert torch.equal(saved[0][key], saved[1][key]), (method, key)
        config = penguins(method, dropout=0.0, lr_schedule=DDP_SCHEDULE, **options)
        module, datamodule = from_config(config)
        trainer = fit(module, datamodule)
        for key, value in module.model.state_dict().items():
            torch.testing.assert_close(saved[0][f"model.{key}"], value, atol=1e-5, rtol=1e-5)
        rates = learning_rates(trainer.optimizers[0])
        assert {k: float(saved[0][f"lr.{k}"]) for k in rates} == rates
        assert min(rates.values()) < config.training.lr  # a plateau lowered a rate
        assert len(trainer.callback_metrics) == (
            len(saved[0]) - len(module.model.state_dict()) - len(rates)
        )
        for key, value in trainer.callback_metrics.items():
            torch.testing.assert_close(
                saved[0][f"logged.{key}"], value.reshape(1), atol=1e-5, rtol=1e-5
            )


DDP_RESUME_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import save_file
import torch
from polytask.lightning import from_config
from tests.test_lightning import QUIET, penguins

out, run, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
module, datamodule = from_config(penguins("dwa", dropout=0.3))
saving = [ModelCheckpoint(out, "{step}", save_top_k=-1, every_n_train_steps=step)]
callbacks = saving if run == "straight" else []
resume = None if run == "straight" else f"{out}/step={step}.ckpt"
torch.manual_seed(len(run))  # the resumed run's random state is not the saving run's
trainer = L.Trainer(
    max_epochs=3, **{**QUIET, "devices": 2, "strategy": "ddp", "callbacks": callbacks,
    "enable_checkpointing": bool(callbacks)},
)
trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
tensors = {f"model.{k}": v.contiguous() for k, v in module.model.state_dict().items()}
tensors |= {f"logged.{k}": v.reshape(1) for k, v in trainer.callback_metrics.items()}
save_file(tensors, f"{out}/{run}.{trainer.global_rank}.safetensors")
"""


@pytest.mark.slow
def test_ddp_resumes_a_checkpoint_taken_mid_epoch_exactly(data, tmp_path):
    """On 2 processes, each drawing its own dropout masks: resumed from a checkpoint after
    step 3 of epoch 2 (which holds every process's random state), each process ends with the
    parameters and logged values of the uninterrupted run."""
    from safetensors.torch import load_file

    script = tmp_path / "resume.py"
    script.write_text(DDP_RESUME_SCRIPT)
    step = str(math.ceil(len(data.train["shared"]) / BATCH) + 3)
    for run in ("straight", "resumed"):
        _on_two_processes(script, str(tmp_path), run, step)
    for rank in (0, 1):
        straight = load_file(tmp_path / f"straight.{rank}.safetensors")
        resumed = load_file(tmp_path / f"resumed.{rank}.safetensors")
        assert straight.keys() == resumed.keys()
        for key, value in straight.items():
            assert torch.equal(resumed[key], value), (rank, key)


def _on_two_processes(script, *args: str) -> None:
    """Run ``script`` with ``args`` on 2 CPU processes, started together as a launcher would
    (``LOCAL_RANK`` set)."""
    root = SRC.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(root)]),
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": "2",
        "NODE_RANK": "0",
    }
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=root,
            env={**env, "LOCAL_RANK": str(r), "RANK": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    for process in ranks:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
