"""Regression targets whose standardisation would overflow are errors naming column and row."""

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.errors import DataError
from polytask.tasks import RegressionTask


@pytest.mark.parametrize("huge", [1e308, -1e308, 1e200, 1e39])
def test_target_whose_scaling_overflows_names_task_column_and_row(huge):
    frame = pd.DataFrame({"spend": [1.0, 2.0, np.nan, huge, 3.0]})
    with pytest.raises(
        DataError, match=r"t\.csv: task 'spend' column 'spend' row 4 holds .*too large"
    ):
        RegressionTask(name="spend").fit(frame, "t.csv")


def test_overflow_row_is_the_row_of_the_table_not_of_the_training_subset():
    frame = pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0, 1e308]}).iloc[[1, 4, 2]]
    with pytest.raises(DataError, match="row 5 holds"):
        RegressionTask(name="v").fit(frame, "t.csv")


def test_encoded_target_beyond_float32_names_the_row():
    task = RegressionTask(name="v").fit(pd.DataFrame({"v": [0.0, 1.0, 2.0]}))
    with pytest.raises(DataError, match=r"new\.csv: task 'v' column 'v' row 2 holds 1e\+39"):
        task.encode(pd.DataFrame({"v": [1.0, 1e39]}), "new.csv")


def test_large_representable_targets_train_and_decode_finitely():
    frame = pd.DataFrame({"v": [1e30, 2e30, 3e30]})
    task = RegressionTask(name="v").fit(frame)
    target, _ = task.encode(frame)
    assert torch.isfinite(target).all()
    assert task.decode(target)["v"] == pytest.approx([1e30, 2e30, 3e30], rel=1e-5)


def test_a_constant_target_is_an_error_like_a_binary_task_with_one_class():
    """Nothing to learn, and Δm would compare noise around the constant (a tiny baseline MAE
    makes its relative change explode): one line naming the task, column and value."""
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, np.nan, 0.0]})
    with pytest.raises(DataError, match=r"t\.csv: regression task 'ab' column 'b' has a single "):
        RegressionTask(name="ab", columns=("a", "b")).fit(frame, "t.csv")
    assert RegressionTask(name="a", columns=("a",)).fit(frame).std == (
        pytest.approx(0.8165, abs=1e-4),
    )
