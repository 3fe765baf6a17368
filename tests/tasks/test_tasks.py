import numpy as np
import pandas as pd
import pytest
import torch

from polytask.errors import ConfigError, DataError
from polytask.tasks import (
    BinaryTask,
    MulticlassTask,
    MultilabelTask,
    RegressionTask,
    task_from_dict,
)


def test_binary_positive_class_and_missing_labels_are_masked():
    frame = pd.DataFrame({"y": ["no", "yes", None, "", "yes"]})
    task = BinaryTask(name="y").fit(frame)
    assert task.classes == ("no", "yes")
    target, mask = task.encode(frame)
    assert target.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert mask.tolist() == [True, True, False, False, True]


def test_binary_numeric_labels_use_one_as_positive():
    frame = pd.DataFrame({"y": [1.0, 0.0, np.nan, 1.0]})
    task = BinaryTask(name="y").fit(frame)
    assert task.classes == ("0", "1")


def test_binary_with_three_classes_says_to_use_multiclass():
    frame = pd.DataFrame({"y": ["a", "b", "c"]})
    with pytest.raises(DataError, match="3 classes.*multiclass"):
        BinaryTask(name="y").fit(frame, "t.csv")


def test_loss_is_masked_mean_not_zero_filled():
    frame = pd.DataFrame({"y": ["a", "b", None, "c"]})
    task = MulticlassTask(name="y").fit(frame)
    target, mask = task.encode(frame)
    output = torch.randn(4, 3)
    expected = torch.nn.functional.cross_entropy(output[[0, 1, 3]], target[[0, 1, 3]])
    assert torch.allclose(task.loss_value(output, target, mask), expected)


def test_batch_without_labels_gives_no_loss():
    task = RegressionTask(name="r", mean=(0.0,), std=(1.0,))
    target, mask = torch.zeros(3, 1), torch.zeros(3, 1, dtype=torch.bool)
    assert task.loss_value(torch.randn(3, 1), target, mask) is None


def test_unseen_class_names_row_and_column():
    task = MulticlassTask(name="y").fit(pd.DataFrame({"y": ["a", "b"]}))
    with pytest.raises(DataError, match=r"new\.csv: .*'y' row 2 has class 'zebra'.*never saw"):
        task.encode(pd.DataFrame({"y": ["a", "zebra"]}), "new.csv")


def test_regression_target_must_be_numeric():
    frame = pd.DataFrame({"price": ["1.5", "2", "cheap"]})
    with pytest.raises(DataError, match="'price' must be numeric, but row 3 holds 'cheap'"):
        RegressionTask(name="price").fit(frame, "prices.csv")


def test_regression_standardises_for_training_and_reports_in_units():
    frame = pd.DataFrame({"v": [10.0, 20.0, None, 30.0]})
    task = RegressionTask(name="v").fit(frame)
    target, mask = task.encode(frame)
    assert torch.allclose(target[mask].mean(), torch.tensor(0.0), atol=1e-6)
    metrics = task.evaluate(target, target, mask)  # perfect predictions
    assert metrics["mae"] == pytest.approx(0.0, abs=1e-5)
    assert task.decode(target)["v"][[0, 1, 3]] == pytest.approx([10.0, 20.0, 30.0], rel=1e-5)


def test_multilabel_masks_individual_labels():
    frame = pd.DataFrame({"a": [1, 0, None], "b": ["true", "false", "true"]})
    task = MultilabelTask(name="tags", columns=("a", "b")).fit(frame)
    target, mask = task.encode(frame)
    assert target.tolist() == [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    assert mask.tolist() == [[True, True], [True, True], [False, True]]
    with pytest.raises(DataError, match="'a' row 1 holds 'maybe'"):
        task.encode(pd.DataFrame({"a": ["maybe"], "b": [1]}))


def test_unknown_metric_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        BinaryTask(name="y", metrics=("acuracy",))


def test_round_trip_through_dict():
    task = BinaryTask(name="y", positive="b").fit(pd.DataFrame({"y": ["a", "b"]}))
    assert task_from_dict(task.to_dict()) == task


@pytest.mark.parametrize(
    ("task", "metric", "direction"),
    [
        (BinaryTask(name="b"), "auc", "higher"),
        (RegressionTask(name="r"), "rmse", "lower"),
        (MultilabelTask(name="m", columns=("a",)), "hamming_loss", "lower"),
    ],
)
def test_directions(task, metric, direction):
    assert task.direction(metric) == direction


@pytest.mark.parametrize("row_mask", [False, True])
def test_the_masked_loss_is_the_mean_over_labelled_entries_with_a_count_given_or_not(row_mask):
    """The select-based masked mean (no device synchronisation) equals the mean over the
    labelled entries, for a mask shaped like the loss and for a mask of rows over several
    columns (each labelled row's columns summed, divided by the labelled rows)."""
    task = RegressionTask(name="r", columns=("a", "b"), mean=(0.0, 0.0), std=(1.0, 1.0))
    output, target = torch.randn(5, 2), torch.randn(5, 2)
    if row_mask:
        mask = torch.tensor([True, False, True, True, False])
        expected = ((output - target) ** 2)[mask].sum() / 3
    else:
        mask = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1], [1, 1]], dtype=torch.bool)
        expected = ((output - target) ** 2)[mask].mean()
    count = int(mask.sum())
    torch.testing.assert_close(task.loss_value(output, target, mask), expected)
    torch.testing.assert_close(task.loss_value(output, target, mask, count), expected)
    assert task.loss_value(output, target, torch.zeros_like(mask), 0) is None
