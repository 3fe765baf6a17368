"""polytask.inference: outputs and metrics of a model on data, with no trainer or optimizer."""

import math

import torch
from torch import nn

from polytask.inference import evaluate, predict_outputs
from polytask.models import HardSharing
from polytask.training import Trainer

from .training.test_trainer import TASKS, toy_data


def dropout_model() -> HardSharing:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5))
    return HardSharing(trunk, {"r": nn.Linear(16, 1), "b": nn.Linear(16, 1)})


def test_outputs_are_the_eval_mode_forward_pass_in_row_order_whatever_the_batch_size():
    model, data = dropout_model(), toy_data(50)
    model.train()
    small = predict_outputs(model, TASKS, data, batch_size=7)
    assert not model.training  # dropout off, so outputs are repeatable
    with torch.no_grad():
        whole = model(data.inputs)
    for task in TASKS:
        assert small[task.name].shape[0] == 50 and not small[task.name].requires_grad
        assert torch.allclose(small[task.name], whole[task.name], atol=1e-6)
        assert torch.allclose(predict_outputs(model, TASKS, data)[task.name], whole[task.name])


def test_only_the_given_tasks_are_returned():
    assert list(predict_outputs(dropout_model(), TASKS[1:], toy_data(10))) == ["b"]


def test_metrics_and_losses_are_each_tasks_own_on_its_labelled_rows():
    model, data = dropout_model(), toy_data(40)
    result = evaluate(model, TASKS, data, batch_size=9)
    with torch.no_grad():
        outputs = model(data.inputs)
    for task in TASKS:
        target, mask = data.targets[task.name], data.masks[task.name]
        assert result.metrics[task.name] == task.evaluate(outputs[task.name], target, mask)
        expected = float(task.loss_value(outputs[task.name], target, mask))
        assert math.isclose(result.loss[task.name], expected, rel_tol=1e-6)


def test_a_task_without_labels_gets_a_nan_loss():
    data = toy_data(20)
    data.masks["b"][:] = False
    result = evaluate(dropout_model(), TASKS, data)
    assert math.isnan(result.loss["b"]) and math.isfinite(result.loss["r"])


def test_the_trainer_evaluates_with_the_same_functions():
    model, data = dropout_model(), toy_data(30)
    trainer = Trainer(model, TASKS, eval_batch_size=4)
    assert trainer.evaluate(data) == evaluate(model, TASKS, data, batch_size=4)
    direct = predict_outputs(model, TASKS, data, batch_size=4)
    assert all(torch.equal(trainer.predict(data)[n], direct[n]) for n in direct)
