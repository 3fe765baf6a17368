"""Learning-rate schedules per parameter group (issue 9, section 4): torch's schedulers applied to
one group each, what a plateau monitors, the record in the history, checkpoints and config."""

import json
import math

import pytest
import torch
import yaml

from polytask.config import (
    CosineSchedule,
    PlateauSchedule,
    StepSchedule,
    load_config,
    parse_config,
)
from polytask.data import prepare_data
from polytask.errors import ConfigError, RunError
from polytask.experiment import make_trainer, run_experiment
from polytask.training import Trainer
from polytask.training.optim import parameter_groups
from polytask.training.schedules import LrSchedules, learning_rates, schedules_by_group

from ..conftest import config_dict
from .test_trainer import TASKS, toy_data, toy_model


def plateau(**options) -> PlateauSchedule:
    return PlateauSchedule(type="plateau", **options)


def optimizer(multipliers=None) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    return torch.optim.Adam(parameter_groups(toy_model(), 0.1, multipliers))


def rates(schedules: LrSchedules, opt, epochs: int, val_loss=None, score=math.nan) -> list:
    """Each epoch's learning rates by group, stepping once per epoch as the trainer does."""
    seen = []
    for epoch in range(epochs):
        seen.append(learning_rates(opt))
        losses = val_loss(epoch) if val_loss else {}
        schedules.step(losses, score(epoch) if callable(score) else score)
    return seen


def test_a_plateau_follows_its_own_tasks_validation_loss():
    opt = optimizer()
    schedules = LrSchedules(
        opt,
        {"r": plateau(factor=0.5, patience=2), "b": plateau(factor=0.5, patience=2)},
        epochs=6,
        tasks=["r", "b"],
    )
    # r keeps improving; b stalls after its first epoch
    seen = rates(schedules, opt, 6, val_loss=lambda e: {"r": 1.0 / (e + 1), "b": 0.7})
    assert [lr["b"] for lr in seen] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    assert all(lr["r"] == lr["shared"] == 0.1 for lr in seen)


def test_a_plateau_halves_a_tasks_head_lr_in_training_while_other_groups_keep_theirs():
    torch.manual_seed(0)
    model = toy_model()
    opt = torch.optim.Adam(parameter_groups(model, 0.01))
    # b's validation loss cannot fall below 1 % of its first value: every later epoch is bad
    schedule = plateau(factor=0.5, patience=1, threshold=0.99)
    trainer = Trainer(model, TASKS, optimizer=opt, epochs=4, lr_schedules={"b": schedule})
    history = trainer.fit(toy_data(), toy_data(seed=1))
    assert [log.lr["b"] for log in history] == pytest.approx([0.01, 0.01, 0.01, 0.005])
    assert all(log.lr["shared"] == log.lr["r"] == 0.01 for log in history)


def test_a_run_level_plateau_watches_the_validation_score():
    opt = optimizer()
    schedules = LrSchedules(opt, {"shared": plateau(patience=0)}, epochs=4, tasks=["r", "b"])
    seen = rates(schedules, opt, 4, val_loss=lambda e: {"r": 9.0 - e}, score=lambda e: -e)
    assert [lr["shared"] for lr in seen] == pytest.approx([0.1, 0.1, 0.05, 0.025])


def test_an_undefined_monitored_value_leaves_the_plateau_alone():
    opt = optimizer()
    schedules = LrSchedules(opt, {"b": plateau(patience=0)}, epochs=4, tasks=["r", "b"])
    with pytest.warns(RuntimeWarning, match="task 'b', which is undefined") as caught:
        seen = rates(schedules, opt, 4, val_loss=lambda e: {"b": math.nan})
    assert all(lr["b"] == 0.1 for lr in seen)
    assert len(caught) == 1  # once, not every epoch


def test_cosine_with_warm_up_matches_the_formulas_per_group():
    opt = optimizer({"b": 0.5})
    spec = CosineSchedule(type="cosine", warmup=3, warmup_start=0.2, min_lr=0.004)
    schedules = LrSchedules(opt, {"shared": spec, "b": spec}, epochs=10, tasks=["r", "b"])
    seen = rates(schedules, opt, 10)
    for group, base in (("shared", 0.1), ("b", 0.05)):
        expected = []
        for epoch in range(10):
            if epoch < 3:  # linear from 0.2 × base to base over 3 epochs
                expected.append(base * (0.2 + 0.8 * epoch / 3))
            else:  # cosine over the 7 epochs left
                t = epoch - 3
                expected.append(0.004 + (base - 0.004) * (1 + math.cos(math.pi * t / 7)) / 2)
        assert [lr[group] for lr in seen] == pytest.approx(expected, rel=1e-9), group
    assert all(lr["r"] == 0.1 for lr in seen)


def test_step_decay_and_a_plateau_that_waits_for_its_warm_up():
    opt = optimizer()
    specs = {
        "r": StepSchedule(type="step", step_size=2, gamma=0.5),
        "b": plateau(patience=0, warmup=2, warmup_start=0.5),
    }
    schedules = LrSchedules(opt, specs, epochs=6, tasks=["r", "b"])
    seen = rates(schedules, opt, 6, val_loss=lambda e: {"b": 1.0})  # b never improves
    assert [lr["r"] for lr in seen] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    # warm-up 0.05, 0.075; from epoch 3 the plateau: epoch 3 sets its best, then halves
    assert [lr["b"] for lr in seen] == pytest.approx([0.05, 0.075, 0.1, 0.1, 0.05, 0.025])


def resumable(directory, epochs: int) -> Trainer:
    torch.manual_seed(0)
    model = toy_model()
    schedules = {
        "shared": CosineSchedule(type="cosine", warmup=1),
        "b": plateau(patience=1, threshold=0.99),
    }
    trainer = Trainer(
        model,
        TASKS,
        optimizer=torch.optim.Adam(parameter_groups(model, 0.01)),
        epochs=4,
        batch_size=64,
        checkpoint_dir=directory,
        lr_schedules=schedules,
    )
    trainer.epochs = epochs  # the same schedules; the "interrupted" run stops early
    return trainer


def test_resume_restores_the_schedules_exactly(tmp_path):
    straight = resumable(tmp_path / "a", 4)
    straight.fit(toy_data(), toy_data(seed=1))
    resumable(tmp_path / "b", 2).fit(toy_data(), toy_data(seed=1))
    resumed = resumable(tmp_path / "b", 4)
    resumed.fit(toy_data(), toy_data(seed=1), resume=True)
    lrs = [log.lr for log in straight.history]
    assert lrs == [log.lr for log in resumed.history]
    assert lrs[3]["b"] == pytest.approx(0.005)  # the plateau's count crossed the checkpoint
    assert learning_rates(straight.optimizer) == learning_rates(resumed.optimizer)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_a_checkpoint_with_other_schedules_is_refused(tmp_path):
    Trainer(toy_model(), TASKS, epochs=1, checkpoint_dir=tmp_path).fit(toy_data(64))
    trainer = resumable(tmp_path, 2)
    with pytest.raises(RunError, match="learning-rate schedules"):
        trainer.fit(toy_data(64), toy_data(64, seed=1), resume=True)


def test_schedules_name_groups_that_exist():
    with pytest.raises(ValueError, match="no parameter group named so"):
        LrSchedules(optimizer(), {"nope": plateau()}, epochs=2, tasks=["r", "b"])
    with pytest.raises(ValueError, match="task 'c' has no parameters of its own"):
        schedules_by_group(["shared", "r"], None, {"r": None, "c": plateau()})
    with pytest.raises(ValueError, match="two parameter groups are named 'shared'"):
        schedules_by_group(["shared", "shared"], None, {"shared": plateau()})
    run, own = CosineSchedule(type="cosine"), plateau()
    assert schedules_by_group(["shared", "r", "b", "balancer"], run, {"r": own, "b": None}) == {
        "shared": run,
        "r": own,
        "b": run,
        "balancer": run,
    }


def test_a_plateau_without_validation_data_is_refused():
    trainer = Trainer(toy_model(), TASKS, epochs=1, lr_schedules={"b": plateau()})
    with pytest.raises(ValueError, match="needs validation data"):
        trainer.fit(toy_data(64))


def test_a_run_records_and_plots_the_learning_rates(tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["training"].update(epochs=3, lr_schedule={"type": "step", "step_size": 1, "gamma": 0.5})
    raw["tasks"][2]["lr_schedule"] = {"type": "plateau", "patience": 0, "threshold": 0.99}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_experiment(load_config(path), baselines=False)
    history = json.loads((result.run_dir / "metrics.json").read_text())["multitask"]["history"]
    lrs = [log["lr"] for log in history]
    assert [lr["shared"] for lr in lrs] == pytest.approx([0.01, 0.005, 0.0025])
    assert [lr["clicked"] for lr in lrs] == pytest.approx([0.01, 0.005, 0.0025])
    assert [lr["spend"] for lr in lrs] == pytest.approx([0.01, 0.01, 0.005])
    assert (result.run_dir / "learning_rates.png").is_file()


def test_a_task_named_like_the_shared_group_cannot_have_a_schedule(tmp_path, table):
    raw = config_dict(str(table))
    raw["tasks"][2].update(name="shared", target="spend", lr_schedule="cosine")
    config = parse_config(raw)
    data = prepare_data(config)
    with pytest.raises(ConfigError, match="two parameter groups are named 'shared'"):
        make_trainer(
            config, data, data.tasks, reference=None, progress=False, label="", checkpoint_dir=None
        )


@pytest.mark.parametrize(
    ("where", "schedule", "message"),
    [
        ("training", {"type": "exponential"}, r"training\.lr_schedule\.type: unknown type"),
        ("training", {"factor": 0.5}, r"missing required key 'training\.lr_schedule\.type'"),
        ("training", {"type": "plateau", "factor": -0.5}, r"training\.lr_schedule\.factor: "),
        ("training", {"type": "plateau", "factor": 1.0}, r"training\.lr_schedule\.factor: "),
        ("training", {"type": "plateau", "patience": True}, r"training\.lr_schedule\.patience"),
        ("training", {"type": "plateau", "min_lr": float("nan")}, r"training\.lr_schedule\.min_lr"),
        ("training", {"type": "cosine", "warmup": 4}, r"lr_schedule\.warmup: 4 epochs of warm"),
        ("training", {"type": "cosine", "min_lr": 0.5}, r"lr_schedule\.min_lr: 0\.5 is not"),
        ("training", {"type": "step"}, r"missing required key 'training\.lr_schedule\.step_size"),
        ("task", {"type": "plateau", "patience": 1.5}, r"tasks\[1\] \(segment\)\.lr_schedule\.pa"),
        ("task", {"type": "plateau", "fator": 0.1}, r"'tasks\[1\] \(segment\)\.lr_schedule\.fat"),
        (
            "task",
            {"type": "step", "step_size": 1, "gamma": "inf"},
            r"tasks\[1\] \(segment\)\.lr_schedule\.gamma",
        ),
    ],
)
def test_a_bad_schedule_is_one_line_naming_its_key(tmp_path, where, schedule, message):
    raw = config_dict("t.csv")
    if where == "training":
        raw["training"]["lr_schedule"] = schedule
    else:
        raw["tasks"][1]["lr_schedule"] = schedule
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert "\n" not in str(error.value)


def test_a_config_without_schedules_keeps_its_saved_form():
    config = parse_config(config_dict("t.csv"))
    saved = config.model_dump(mode="json")
    assert "lr_schedule" not in saved["training"]
    assert all("lr_schedule" not in task for task in saved["tasks"])
    raw = config_dict("t.csv")
    raw["training"]["lr_schedule"] = "cosine"  # a bare name: the defaults
    raw["tasks"][0]["lr_schedule"] = {"type": "step", "step_size": 2}
    config = parse_config(raw)
    assert config.training.lr_schedule == CosineSchedule(type="cosine")
    assert parse_config(config.model_dump(mode="json")) == config
