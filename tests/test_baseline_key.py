"""Baselines are cached by a hash of what determines them: a ``groups`` split does not enter
it (a one-task ``groups`` model is its task's trunk alone), the trunk does."""

from __future__ import annotations

from polytask.config import parse_config
from polytask.experiment import baseline_key
from polytask.tasks import RegressionTask

from .conftest import config_dict


def key(**model):
    config = parse_config(config_dict("t.csv", model={"trunk": [8], "head": [4], **model}))
    return baseline_key(config, RegressionTask(name="spend", mean=(0.0,), std=(1.0,)))


def test_the_groups_split_does_not_change_a_baseline_but_the_trunk_does():
    one = key(arch="groups", groups=[["clicked", "segment", "spend"]])
    two = key(arch="groups", groups=[["clicked", "segment"], ["spend"]])
    assert one == two
    assert key(arch="groups", groups=[["clicked", "segment", "spend"]], trunk=[16]) != one
