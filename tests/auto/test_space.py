"""The search space: what a trial samples, the config it trains, and bad ``auto:`` sections."""

import json

import optuna
import pytest

from polytask.auto.space import (
    DEFAULT_BALANCERS,
    build_space,
    check_auto,
    default_archs,
    grouping_label,
)
from polytask.config import AutoConfig, parse_config
from polytask.errors import ConfigError

from ..conftest import config_dict

TASKS = ["clicked", "segment", "spend"]


def base(**auto):
    return parse_config(config_dict("table.csv", auto=auto))


def test_defaults_search_the_issue_s_architectures_and_balancers():
    space = build_space(AutoConfig(), TASKS, [[["clicked", "spend"], ["segment"]]])
    assert set(space.archs) == {
        "hard", "mmoe", "ple", "cgc", "cross_stitch", "soft", "mtrl", "groups"
    }  # fmt: skip
    assert space.balancers == DEFAULT_BALANCERS
    assert "cross_stitch" not in default_archs(5) and "soft" not in default_archs(5)
    assert space.groupings == (grouping_label([["clicked", "spend"], ["segment"]]),)


def test_every_sampled_point_is_a_valid_config_with_the_sampled_values():
    config = base(arch=["hard", "mmoe", "groups"], balancer=["equal", "mgda", "uw"])
    groupings = [[["clicked", "spend"], ["segment"]], [[t] for t in TASKS]]
    space = build_space(config.auto, TASKS, groupings)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = space.suggest(trial)
        candidate = space.candidate(config, params)
        seen.add(candidate.model.arch)
        assert candidate.model.arch == params["arch"]
        assert candidate.balancer.name == params["balancer"]
        assert candidate.training.lr == pytest.approx(params["lr"])
        assert 1e-4 <= candidate.training.lr <= 1e-2
        assert candidate.model.trunk == [params["width"]] * params["depth"]
        assert candidate.auto is None and candidate.tasks == config.tasks
        if params["arch"] == "groups":
            groups = candidate.model.options["groups"]
            assert [list(g) for g in groups] == json.loads(params["grouping"])
        else:
            assert "grouping" not in params
        study.tell(trial, 0.0)
    assert seen == {"hard", "mmoe", "groups"}


def test_a_fixed_dimension_is_not_a_parameter():
    config = base(arch=["mmoe"], balancer=["famo"], lr=0.005, width=[32], depth=[2])
    space = build_space(config.auto, TASKS, [])
    params = space.suggest(optuna.create_study().ask())
    assert set(params) == {"weight_decay", "dropout"}
    candidate = space.candidate(config, params)
    assert (candidate.model.arch, candidate.balancer.name) == ("mmoe", "famo")
    assert candidate.training.lr == 0.005 and candidate.model.trunk == [32, 32]


def test_the_users_options_of_the_sampled_architecture_carry_over():
    raw = config_dict("table.csv", auto={"arch": ["mmoe", "hard"]})
    raw["model"] = {**raw["model"], "arch": "mmoe", "experts": 7}
    config = parse_config(raw)
    space = build_space(config.auto, TASKS, [])
    assert space.candidate(config, {"arch": "mmoe"}).model.options == {"experts": 7}
    assert space.candidate(config, {"arch": "hard"}).model.options == {}


@pytest.mark.parametrize(
    ("auto", "fragment"),
    [
        ({"arch": []}, "auto.arch: the search space is empty"),
        ({"balancer": []}, "auto.balancer: the search space is empty"),
        ({"width": []}, "auto.width: the search space is empty"),
        ({"lr": [0.1, 0.01]}, "auto.lr: [0.1, 0.01]: the low end is above the high end"),
        ({"weight_decay": [0, 0.1]}, "auto.weight_decay"),
        ({"dropout": [0.1, 1.0]}, "auto.dropout"),
        ({"arch": ["hard", "hard"]}, "given twice"),
        ({"trials": 0}, "auto.trials"),
        ({"tirals": 3}, "tirals"),
    ],
)
def test_a_bad_auto_section_is_one_error_naming_its_key(auto, fragment):
    with pytest.raises(ConfigError, match="auto") as caught:
        base(**auto)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("auto", "fragment"),
    [
        ({"arch": ["hard", "mmeo"]}, "auto.arch.1: unknown architecture 'mmeo' (did you mean"),
        ({"arch": ["tied"]}, "auto.arch.0: 'tied' needs the layers to tie"),
        ({"balancer": ["equal", "pcgard"]}, "auto.balancer.1: unknown balancer 'pcgard'"),
        ({"groupings": [[["clicked"], ["segmnt", "spend"]]]}, "unknown task 'segmnt'"),
        ({"groupings": [[["clicked", "spend"], ["spend", "segment"]]]}, "'spend' is in two"),
        ({"groupings": [[["clicked", "spend"]]]}, "task 'segment' is in no group"),
        ({"arch": ["hard"], "groupings": [[["clicked"], ["segment", "spend"]]]}, "not search"),
    ],
)  # fmt: skip
def test_unknown_names_and_bad_groupings_are_refused(auto, fragment):
    with pytest.raises(ConfigError) as caught:
        check_auto(base(**auto).auto, TASKS)
    assert fragment in str(caught.value)
