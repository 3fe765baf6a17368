"""Smoke test of benchmarks/relationships.py: planted clusters at a tiny size, one seed, one
epoch, recovery only (no Δm runs). Asserts on the ARI table's shape and range, on the ARI of
known partitions, and on the markdown section; not on how well the clusters are recovered."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "relationships.py"


@pytest.fixture(scope="module")
def rel():
    spec = importlib.util.spec_from_file_location("relationships_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["relationships_bench"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("relationships_bench", None)


def test_ari_of_known_partitions(rel):
    truth = [["a", "b"], ["c", "d"]]
    assert rel.ari([["d", "c"], ["b", "a"]], truth) == pytest.approx(1.0)  # same, relabelled
    assert rel.ari([["a", "c"], ["b", "d"]], truth) == pytest.approx(-0.5)  # crossed
    assert rel.ari([["a", "b", "c", "d"]], truth) == pytest.approx(0.0)  # one group
    with pytest.raises(ValueError, match="not a partition"):
        rel.ari([["a", "b"], ["c"]], truth)


@pytest.fixture
def no_png(monkeypatch):
    """The runs' heatmaps and loss curves are drawn but not rendered to PNG (most of the time
    of a tiny run); the CSV files the script reads are still written."""
    import matplotlib.pyplot as plt

    from polytask.reporting import plots

    def close(fig, path):
        plt.close(fig)
        return path

    monkeypatch.setattr(plots, "save_figure", close)


def test_planted_recovery_gives_an_ari_table(rel, tmp_path, no_png):
    results = rel.planted([0], tmp_path, rows=300, epochs=1, compare=False, log=lambda _: None)
    assert list(results) == ["0"]
    seed = results["0"]
    assert seed["truth"] == [[f"c{k}_t{t}" for t in range(3)] for k in range(3)]
    for measure in ("cosine", "tag", "mtrl"):
        matrix = seed["measured"][measure]["matrix"]
        assert len(matrix) == 9 and all(len(row) == 9 for row in matrix)
        found = seed["found"][measure]
        assert len(found["groups"]) == 3  # k = 3 groups of the 9 tasks
        assert sorted(n for g in found["groups"] for n in g) == sorted(
            seed["measured"][measure]["tasks"]
        )
    rows = rel.ari_rows(results)
    assert [(r["measure"], r["rule"][:6]) for r in rows] == [
        (m, rule) for m in ("cosine", "tag", "mtrl") for rule in ("k = 3", "best k")
    ]
    for row in rows:
        value = row["ari"]["0"]
        assert math.isfinite(value) and -1.0 <= value <= 1.0
        assert row["mean_std"] == (value, 0.0)
    text = rel.ari_table(results)
    assert text.count("\n") == 1 + len(rows)  # header, rule, one line per row
    assert "| MTRL Ω correlations | k = 3 |" in text

    # every step is on disk: a second call trains nothing
    again = rel.planted([0], tmp_path, rows=300, epochs=1, compare=False, log=_no_step)
    assert rel.ari_rows(again) == rows

    out = tmp_path / "relationships.md"
    out.write_text("# Task relationships\n\nprose kept\n")
    section = rel.markdown({"planted": results}, "python benchmarks/relationships.py", "budget")
    rel.SECTION.write(out, section)
    rel.SECTION.write(out, section)
    written = out.read_text()
    assert written.startswith("# Task relationships\n\nprose kept\n")
    assert written.count(rel.SECTION.begin) == 1 and "Δm%" not in written  # no Δm runs


def _no_step(message: str) -> None:
    if message.startswith("  "):  # a step being computed (seed headers are fine)
        pytest.fail(f"recomputed: {message.strip()}")


def test_candidates_leave_out_duplicates_and_hard_sharing(rel):
    found = {
        "cosine": {
            "best_groups": [["a", "b"], ["c"]],
            "by_k": {1: [["a", "b", "c"]], 2: [["c"], ["b", "a"]], 3: [["a"], ["b"], ["c"]]},
        },
        "tag": {"best_groups": [["a", "b", "c"]], "by_k": {}},
    }
    listed = rel.candidates(found, "cosine", [1, 2, 3])
    # tag's best is one group (hard), cosine k=1 too; cosine k=2 repeats cosine's best
    assert listed == {"cosine-best": [["a", "b"], ["c"]], "cosine-k3": [["a"], ["b"], ["c"]]}


def test_picked_takes_the_best_validation_run_of_each_seed(rel):
    runs = {
        "x": {
            "0": {"delta_m": 1.0, "delta_m_validation": 2.0},
            "1": {"delta_m": 5.0, "delta_m_validation": math.nan},
        },
        "y": {
            "0": {"delta_m": 3.0, "delta_m_validation": 1.0},
            "1": {"delta_m": -1.0, "delta_m_validation": -4.0},
        },
    }
    chosen = rel.picked(runs, ["x", "y"])
    assert {s: (r["picked"], r["delta_m"]) for s, r in chosen.items()} == {
        "0": ("x", 1.0),
        "1": ("y", -1.0),
    }
