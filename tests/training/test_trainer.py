import math

import pytest
import torch
from torch import nn

from polytask.balancers import EqualWeights
from polytask.config import parse_config
from polytask.data import MultiTaskData, prepare_data
from polytask.models import HardSharing
from polytask.tasks import BinaryTask, RegressionTask
from polytask.training import EarlyStopping, Trainer
from polytask.training.optim import parameter_groups

from ..conftest import config_dict


def toy_data(n: int = 256, seed: int = 0) -> MultiTaskData:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y_reg = (x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])).reshape(n, 1)
    y_bin = (x[:, 0] > 0).float()
    mask_bin = torch.rand(n, generator=generator) > 0.3
    return MultiTaskData(
        x,
        {"r": y_reg, "b": y_bin},
        {"r": torch.ones(n, 1, dtype=torch.bool), "b": mask_bin},
    )


def toy_model() -> HardSharing:
    trunk = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
    return HardSharing(trunk, {"r": nn.Linear(16, 1), "b": nn.Linear(16, 1)})


TASKS = [
    RegressionTask(name="r", mean=(0.0,), std=(1.0,)),
    BinaryTask(name="b", classes=("0", "1")),
]


def test_training_reduces_validation_loss():
    torch.manual_seed(0)
    model = toy_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    trainer = Trainer(model, TASKS, optimizer=optimizer, epochs=8, batch_size=32)
    before = trainer.evaluate(toy_data(seed=1)).loss
    trainer.fit(toy_data(), toy_data(seed=1))
    after = trainer.evaluate(toy_data(seed=1)).loss
    assert after["r"] < 0.5 * before["r"]
    assert after["b"] < before["b"]
    assert trainer.best_epoch is not None


def test_a_task_without_labels_in_a_batch_gets_no_gradient():
    torch.manual_seed(0)
    model = toy_model()
    trainer = Trainer(model, TASKS)
    data = toy_data(8)
    data.masks["b"][:] = False
    trainer.optimizer.zero_grad()
    _, weights = trainer.step(data.batch(slice(None)))
    assert set(weights) == {"r"}
    assert model.heads["b"].weight.grad is None


def test_selection_uses_validation_and_restores_the_best_epoch():
    torch.manual_seed(0)
    trainer = Trainer(toy_model(), TASKS, epochs=5, batch_size=32)
    history = trainer.fit(toy_data(), toy_data(seed=1))
    scores = [log.score for log in history]
    assert trainer.best_epoch == 1 + max(range(len(scores)), key=scores.__getitem__)
    assert history[0].score == 0.0  # first epoch is its own reference


def test_early_stopping_stops_after_patience():
    torch.manual_seed(0)
    reference = {"r": {"mae": 1e-9, "rmse": 1e-9}, "b": {"auc": 1.0, "accuracy": 1.0}}
    trainer = Trainer(
        toy_model(),
        TASKS,
        epochs=20,
        batch_size=64,
        reference=reference,
        early_stopping=EarlyStopping(patience=2, min_delta=1e12),
    )
    history = trainer.fit(toy_data(), toy_data(seed=1))
    assert len(history) == 3  # the first epoch sets the best, two more without gain


def test_per_task_learning_rate_multipliers_make_groups():
    model = toy_model()
    groups = parameter_groups(model, 0.1, {"b": 3.0})
    by_name = {g["name"]: g for g in groups}
    assert by_name["b"]["lr"] == pytest.approx(0.3)
    assert by_name["r"]["lr"] == pytest.approx(0.1)
    assert by_name["shared"]["lr"] == pytest.approx(0.1)
    count = sum(len(g["params"]) for g in groups)
    assert count == len(list(model.parameters()))


def test_balancer_weights_and_losses_are_logged():
    torch.manual_seed(0)
    trainer = Trainer(toy_model(), TASKS, balancer=EqualWeights(["r", "b"]), epochs=2)
    history = trainer.fit(toy_data())
    assert history[-1].weights == {"r": 1.0, "b": 1.0}
    assert all(math.isfinite(v) for v in history[-1].train_loss.values())


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, table):
    config = parse_config(config_dict(str(table)))
    data = prepare_data(config)

    def run(epochs: int, directory, resume: bool) -> Trainer:
        from polytask.experiment import make_trainer

        trainer = make_trainer(
            config,
            data,
            data.tasks,
            reference=None,
            progress=False,
            label="t",
            checkpoint_dir=directory,
        )
        trainer.epochs = epochs
        trainer.fit(data.train_source(32, "proportional", 2.0), data.validation, resume=resume)
        return trainer

    straight = run(4, tmp_path / "a", resume=False)
    run(2, tmp_path / "b", resume=False)  # "interrupted" after two epochs
    resumed = run(4, tmp_path / "b", resume=True)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert [log.score for log in straight.history] == [log.score for log in resumed.history]
