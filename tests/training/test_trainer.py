import math

import pytest
import torch
from torch import nn

from polytask.balancers import EqualWeights, build_balancer
from polytask.config import parse_config
from polytask.data import MultiTaskData, prepare_data
from polytask.errors import RunError
from polytask.models import HardSharing
from polytask.tasks import BinaryTask, RegressionTask
from polytask.training import EarlyStopping, Trainer
from polytask.training.optim import parameter_groups
from polytask.training.trainer import Evaluation

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


SCRIPTED_TASKS = [
    RegressionTask(name="r", mean=(0.0,), std=(1.0,), metrics=("mae",)),
    BinaryTask(name="b", classes=("0", "1"), metrics=("auc",)),
]


class ScriptedValidation(Trainer):
    """A trainer whose validation metrics and losses follow a script, one entry per epoch."""

    def __init__(self, script, **options):
        torch.manual_seed(0)
        super().__init__(toy_model(), SCRIPTED_TASKS, batch_size=64, **options)
        self.script = list(script)
        self.epochs = len(self.script)

    def evaluate(self, data):
        metrics, loss = self.script[len(self.history)]
        return Evaluation(metrics, loss)


def scripted(f1, mae, loss=(0.5, 0.5)):
    return {"b": {"auc": f1}, "r": {"mae": mae}}, {"b": loss[0], "r": loss[1]}


def test_a_zero_reference_metric_leaves_selection_and_the_best_epoch_is_still_chosen():
    # epoch 1 predicts only negatives: its metric is 0 and is the reference (no baselines)
    script = [scripted(0.0, 2.0), scripted(0.5, 1.5), scripted(0.6, 1.0), scripted(0.7, 1.2)]
    trainer = ScriptedValidation(script, early_stopping=EarlyStopping(patience=1))
    with pytest.warns(RuntimeWarning, match=r"model selection.*'b' auc \(reference is 0\)"):
        history = trainer.fit(toy_data(), toy_data(seed=1))
    assert [log.score for log in history] == pytest.approx([0.0, 25.0, 50.0, 40.0])
    assert trainer.best_epoch == 3


def test_a_baseline_with_a_zero_metric_leaves_selection():
    reference = {"r": {"mae": 2.0}, "b": {"auc": 0.0}}
    script = [scripted(0.1, 2.0), scripted(0.5, 1.0), scripted(0.6, 1.5)]
    trainer = ScriptedValidation(script, reference=reference)
    with pytest.warns(RuntimeWarning, match=r"'b' auc \(reference is 0\)"):
        history = trainer.fit(toy_data(), toy_data(seed=1))
    assert [log.score for log in history] == pytest.approx([0.0, 50.0, 25.0])
    assert trainer.best_epoch == 2


def test_selection_falls_back_to_the_validation_loss_when_delta_m_is_undefined():
    reference = {"r": {"mae": 0.0}, "b": {"auc": math.nan}}
    losses = [(1.0, 2.0), (0.5, 1.0), (0.8, 1.6), (0.9, 1.8)]
    script = [scripted(0.5, 1.0, loss) for loss in losses]
    trainer = ScriptedValidation(script, reference=reference, early_stopping=EarlyStopping(2))
    with pytest.warns(RuntimeWarning, match="selecting by the mean validation loss"):
        history = trainer.fit(toy_data(), toy_data(seed=1))
    assert [log.score for log in history] == pytest.approx([0.0, 50.0, 20.0, 10.0])
    assert trainer.best_epoch == 2
    assert len(history) == 4  # two epochs without gain: stopped after the fourth


def test_an_epoch_with_an_undefined_metric_is_never_selected():
    script = [scripted(0.5, 2.0), scripted(math.nan, 0.1), scripted(0.6, 1.5)]
    trainer = ScriptedValidation(script)
    with pytest.warns(RuntimeWarning, match=r"epoch 2.*'b' auc is nan"):
        history = trainer.fit(toy_data(), toy_data(seed=1))
    assert math.isnan(history[1].score)
    assert trainer.best_epoch == 3


def diverging_trainer(**options) -> Trainer:
    torch.manual_seed(0)
    model = toy_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e6)
    return Trainer(model, TASKS, optimizer=optimizer, epochs=3, batch_size=32, **options)


def test_training_that_diverges_raises_naming_the_task_and_step(tmp_path):
    trainer = diverging_trainer(checkpoint_dir=tmp_path)
    with pytest.raises(RunError, match=r"training diverged.*task 'r'.* epoch 1 step \d+"):
        trainer.fit(toy_data(), toy_data(seed=1))
    assert not (tmp_path / "latest.json").exists()  # no checkpoint of non-finite weights


def test_a_finite_loss_with_overflowing_gradients_is_caught_by_the_weight_check():
    trainer = diverging_trainer()
    trainer.batch_size = 256  # one step per epoch: its loss is finite
    for group in trainer.optimizer.param_groups:
        group["lr"] = 3e38  # and it overflows the weights to infinity
    with pytest.raises(
        RunError, match=r"after epoch 1 the weights are not finite.*every training loss was finite"
    ):
        trainer.fit(toy_data())


def test_steps_skipped_for_a_non_finite_loss_do_not_stop_training():
    data = toy_data()
    data.targets["r"][5] = math.inf  # one bad label: its batch is skipped once per epoch
    torch.manual_seed(0)
    balancer = build_balancer("uncertainty", ["r", "b"])
    trainer = Trainer(toy_model(), TASKS, balancer=balancer, epochs=2, batch_size=64)
    with pytest.warns(RuntimeWarning, match="skipping this step"):
        history = trainer.fit(data, toy_data(seed=1))
    assert [log.nonfinite_steps for log in history] == [1, 1]
    assert all(math.isfinite(log.train_loss["r"]) for log in history)  # skipped: not averaged


def test_a_resumed_run_keeps_the_fallback_rule_and_its_reference(tmp_path):
    reference = {"r": {"mae": 0.0}, "b": {"auc": 0.0}}
    losses = [(1.0, 2.0), (0.5, 1.0), (0.8, 1.6), (0.4, 0.8)]
    script = [scripted(0.5, 1.0, loss) for loss in losses]
    with pytest.warns(RuntimeWarning, match="mean validation loss"):
        straight = ScriptedValidation(script, reference=reference).fit(toy_data(), toy_data(seed=1))
        interrupted = ScriptedValidation(script[:2], reference=reference, checkpoint_dir=tmp_path)
        interrupted.fit(toy_data(), toy_data(seed=1))
        resumed = ScriptedValidation(script, reference=reference, checkpoint_dir=tmp_path)
        history = resumed.fit(toy_data(), toy_data(seed=1), resume=True)
    assert [log.score for log in history] == [log.score for log in straight]
    assert resumed.best_epoch == 4


def test_without_any_defined_score_the_last_epoch_is_kept_with_a_warning():
    unlabelled = toy_data(seed=1)
    for mask in unlabelled.masks.values():
        mask[:] = False
    script = [scripted(math.nan, math.nan, (math.nan, math.nan))] * 3
    trainer = ScriptedValidation(script, early_stopping=EarlyStopping(patience=1))
    with pytest.warns(RuntimeWarning, match="keeping the last epoch"):
        history = trainer.fit(toy_data(), unlabelled)
    assert len(history) == 3 and trainer.best_epoch == 3


def test_a_non_finite_validation_loss_is_divergence():
    trainer = ScriptedValidation([scripted(0.5, 1.0, (math.inf, 0.5))])
    with pytest.raises(RunError, match=r"validation loss of task 'b' is inf after epoch 1"):
        trainer.fit(toy_data(), toy_data(seed=1))


def test_an_epoch_in_which_every_step_is_skipped_is_divergence():
    data = toy_data()
    data.targets["r"][:] = math.inf  # every batch has a non-finite loss: all skipped
    torch.manual_seed(0)
    balancer = build_balancer("uncertainty", ["r", "b"])
    trainer = Trainer(toy_model(), TASKS, balancer=balancer, epochs=2, batch_size=64)
    with (
        pytest.warns(RuntimeWarning, match="skipping this step"),
        pytest.raises(RunError, match=r"every step of epoch 1 .*task 'r' .* epoch 1 step 1\b"),
    ):
        trainer.fit(data, toy_data(seed=1))
