"""Smoke test of benchmarks/auto.py: a tiny planted config (4 tasks, 600 rows), 2 trials of 1
epoch, seed 0. Asserts that the record holds what the runs measured, that hard / equal and a zoo
configuration reused the final stage's baselines, that the tables show those numbers, and that a
rerun trains nothing."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from polytask.config import parse_config
from polytask.results import load_run_result

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "auto.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("auto_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["auto_bench"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("auto_bench", None)


def tiny_planted():
    tasks = [{"name": f"c{c}_t{t}", "type": "regression"} for c in range(2) for t in range(2)]
    return parse_config(
        {
            "name": "planted",
            "data": {
                "source": "planted",
                "planted": {
                    "clusters": 2,
                    "tasks_per_cluster": 2,
                    "rows": 600,
                    "features": 8,
                    "seed": 0,
                },
                "split": {"validation": 0.2, "test": 0.2},
            },
            "tasks": tasks,
            "model": {"arch": "hard", "trunk": [16], "head": [8]},
            "training": {"epochs": 3, "batch_size": 64, "lr": 0.003},
        },
        source="test",
    )


def test_planted_record_and_tables_hold_what_was_measured(bench, tmp_path, monkeypatch):
    budget = bench.Budget(
        epochs=1, trials=2, auto={"arch": ["hard", "mmoe"], "balancer": ["equal"], "top": 2}
    )
    config = bench.bench_config("planted", budget, [0], tmp_path, base=tiny_planted())
    assert config.training.epochs == 1 and config.auto.trials == 2 and config.auto.seeds == [0]

    record = bench.run_dataset("planted", config, budget, tmp_path, log=lambda _: None)
    cached = tmp_path / "results" / "planted.json"
    assert json.loads(cached.read_text()) == json.loads(json.dumps(record))

    # the record's numbers are those of the runs on disk
    final = json.loads((Path(record["study"]) / "final.json").read_text())
    assert record["winner"]["trial"] == final["winner"]["trial"]
    assert record["winner"]["delta_m_test"] == final["winner"]["delta_m_test"]
    (hard_dir,) = record["hard_equal"]["runs"]
    hard = load_run_result(Path(hard_dir) / "metrics.json")
    assert record["hard_equal"]["delta_m_test"] == [hard.delta_m_test]
    assert record["hard_equal"]["delta_m_validation"] == [hard.delta_m_validation]
    assert json.loads((Path(hard_dir) / "config.json").read_text())["balancer"]["name"] == "equal"
    assert record["search"]["trials"] == 2 and sum(record["search"]["states"].values()) == 2
    assert record["baselines"] == {"reused": 4, "trained": 0, "expected": 4, "same_scores": True}
    assert sum(record["winner"]["verdict_counts"].values()) == 4
    assert all(math.isfinite(v) for v in record["winner"]["delta_m_validation"])

    # a zoo configuration is trained against the final stage's baselines (the config's, not
    # single-task networks of its own architecture), then added to the cached record
    zoo = bench.ZooRow("mmoe / dwa", (1.0, 0.5), (-1.0, 0.5), 1, "mmoe", {"experts": 2}, "dwa")
    monkeypatch.setitem(bench.ZOO, "planted", zoo)
    record = bench.run_dataset("planted", config, budget, tmp_path, log=lambda _: None)
    block = record["zoo_config"]
    assert block["baselines"] == {"reused": 4, "trained": 0, "expected": 4, "same_scores": True}
    (zoo_dir,) = block["runs"]
    zoo_run = load_run_result(Path(zoo_dir) / "metrics.json")
    assert block["delta_m_test"] == [zoo_run.delta_m_test]
    zoo_config = json.loads((Path(zoo_dir) / "config.json").read_text())
    assert zoo_config["model"]["arch"] == "mmoe" and zoo_config["balancer"]["name"] == "dwa"
    assert json.loads(cached.read_text())["zoo_config"] == json.loads(json.dumps(block))

    text = bench.markdown([record], "python benchmarks/auto.py --datasets planted")
    assert "| planted | zoo's best config, mmoe / dwa, here | " in text
    assert f"{zoo_run.delta_m_test:+.2f} ± 0.00" in text
    auto_val = record["winner"]["delta_m_validation"][0]
    hard_test = hard.delta_m_test
    assert f"| planted | auto (winner) | {auto_val:+.2f} ± 0.00 |" in text
    assert f"| planted | hard / equal | {hard.delta_m_validation:+.2f} ± 0.00 | " in text
    assert f"{hard_test:+.2f} ± 0.00" in text
    assert f"Winner (trial {record['winner']['trial']})" in text
    assert "4 of 4" in text

    # a rerun reads the record back and trains nothing
    assert bench.run_dataset("planted", config, budget, tmp_path, log=lambda _: None) == record

    # --report-only rebuilds the section from the cache, keeping the hand-written text
    out = tmp_path / "auto.md"
    out.write_text("# Auto\n\nhand-written intro\n")
    argv = ["--datasets", "planted", "--output", str(tmp_path), "--report-only"]
    for _ in range(2):
        assert bench.main([*argv, "--markdown", str(out)]) == 0
    written = out.read_text()
    assert written.startswith("# Auto\n\nhand-written intro\n")
    assert written.count(bench.SECTION.begin) == 1
    assert f"| planted | auto (winner) | {auto_val:+.2f} ± 0.00 |" in written
    assert f"--datasets planted --output {tmp_path} --markdown {out}`" in written


def test_entries_name_a_dataset_its_trials_and_a_space(bench):
    assert bench.parse_entry("yeast") == ("yeast", None, None)
    assert bench.parse_entry("qm9_small:48") == ("qm9_small", 48, None)
    assert bench.parse_entry("qm9_small:16@experts") == ("qm9_small", 16, "experts")
    with pytest.raises(SystemExit, match="unknown dataset 'qm9'"):
        bench.parse_entry("qm9:16")
    with pytest.raises(SystemExit, match="unknown space 'fast'"):
        bench.parse_entry("yeast@fast")
