"""Smoke test of benchmarks/qm9_graph.py on the qm9pack sample (fake index): one seed, one
epoch, two tasks, equal weights. Asserts on the structure of the results and of the markdown
section, never on metric values."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from ..data.fake_pypi import fake_pypi  # noqa: F401  (the fixture)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "qm9_graph.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("qm9_graph_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("fake_pypi")
def test_graph_and_descriptor_runs_share_molecules_and_are_compared(bench, tmp_path, monkeypatch):
    import polytask.experiment

    for plot in ("plot_loss_curves", "plot_weights", "plot_learning_rates"):  # not tested here
        monkeypatch.setattr(polytask.experiment, plot, lambda *args: None)
    collected = bench.run(
        [0], tmp_path, epochs=1, train_rows=60, dim=4, balancers=["ew"], tasks=["mu", "alpha"],
        log=lambda _: None,
    )  # fmt: skip
    for name in (bench.GRAPH, bench.DESCRIPTORS):
        files = sorted(p.name for p in (tmp_path / "results" / name).glob("*.json"))
        assert files == ["hard-ew-seed0.json", "single-seed0.json"]
        rows = collected["inputs"][name]["rows"]
        assert [(r["arch"], r["balancer"]) for r in rows] == [("single-task", "—"), ("hard", "ew")]
        assert all(math.isfinite(r["delta_m"][0]) for r in rows)
    graph_run = json.loads((tmp_path / "results" / bench.GRAPH / "hard-ew-seed0.json").read_text())
    config = json.loads(Path(graph_run["run_dir"], "config.json").read_text())
    assert config["model"]["encoder"]["type"] == "graph" and config["model"]["encoder"]["dim"] == 4
    import pandas as pd

    copies = [pd.read_parquet(p) for p in sorted((tmp_path / "data").glob("*.parquet"))]
    assert len(copies) == 2 and copies[0]["index"].tolist() == copies[1]["index"].tolist()
    assert (copies[0]["split"] == "train").sum() == 60
    versus = collected["versus"]
    assert [r["model"] for r in versus] == ["single-task", "hard / ew"]
    assert all(math.isfinite(r["delta_m"][0]) and r["tasks"] == 2 for r in versus)
    section = bench.markdown(collected, "python benchmarks/qm9_graph.py", "Budget: tiny.")
    assert section.count(bench.HEADING) == 1 and "### graphs vs descriptors" in section
    assert "| hard / ew |" in section and "### qm9_graph_small" in section
