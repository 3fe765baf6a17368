"""``run_grid``: the variants × seeds loop that ``polytask compare`` and benchmarks/zoo.py share."""

from __future__ import annotations

import pytest

from polytask.compare import compare_balancers, parse_balancers, run_grid, with_seed
from polytask.config import parse_config
from polytask.errors import ConfigError

from .conftest import config_dict


def test_with_seed_sets_the_seed_and_names_the_run(tmp_path, table):
    config = parse_config(config_dict(str(table), output_dir=str(tmp_path)))
    seeded = with_seed(config, 7)
    assert seeded.training.seed == 7 and seeded.name == "synthetic-seed7"
    assert config.training.seed == 3  # the original is left as it was


def test_grid_runs_every_pair_seed_by_seed_except_the_skipped(tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path / "out"))
    raw["training"]["epochs"] = 1
    variants = {
        "a": parse_config({**raw, "name": "a"}),
        "b": parse_config({**raw, "name": "b", "balancer": {"name": "uw"}}),
    }
    seen = []
    runs = run_grid(
        variants,
        [0, 1],
        baselines=False,
        skip=lambda label, seed: (label, seed) == ("a", 1),
        finished=lambda label, seed, result: seen.append((label, seed, result.run_dir.name)),
    )
    assert seen == [("a", 0, "a-seed0"), ("b", 0, "b-seed0"), ("b", 1, "b-seed1")]
    assert [r.run_dir.name for r in runs["a"]] == ["a-seed0"]
    assert [r.run_dir.name for r in runs["b"]] == ["b-seed0", "b-seed1"]
    assert all(not r.baselines for r in runs["b"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-seed0", "b-seed0", "b-seed1"]


def test_compare_refuses_a_balancer_given_twice(tmp_path, table):
    config = parse_config(config_dict(str(table), output_dir=str(tmp_path / "out")))
    with pytest.raises(ConfigError, match="ew given more than once"):
        compare_balancers(config, parse_balancers("ew,mgda,ew"), [0])
    assert not (tmp_path / "out").exists()
