"""Smoke test of benchmarks/step_overhead.py: one tiny configuration runs and the result has the
expected structure. Never asserts on timings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_overhead.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("step_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_overhead"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("step_overhead", None)


def test_tiny_run_has_the_expected_structure(bench, tmp_path):
    result = bench.run(
        [2],
        repeats=1,
        methods=["equal", "uw", "mgda"],
        libraries=("polytask",),
        shape=bench.Shape(in_dim=8, width=16, depth=1, batch=4),
        warmup=1,
        memory=True,
        log=lambda _: None,
    )
    assert set(result) == {"meta", "rows", "records"}
    assert result["meta"]["tasks"] == [2]
    assert {(row.method, row.mode) for row in result["rows"]} == {
        ("equal", None),
        ("uncertainty", None),
        ("mgda", "features"),
        ("mgda", "params"),
    }
    records = result["records"]
    assert records[0]["method"] == bench.BASELINE and records[0]["ratio"] == 1.0
    measured = {(r["method"], r["mode"]) for r in records[1:]}
    assert measured == {(row.method, row.mode) for row in result["rows"]}
    for r in records:
        assert r["library"] == "polytask" and r["tasks"] == 2
        assert r["status"] == "ok", r
        assert r["samples"] == 1
        for key in ("ratio", "ms", "peak_mib"):
            assert isinstance(r[key], float) and r[key] >= 0
    for r in records[1:]:
        assert r["ratio_min"] <= r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"] <= r["ratio_max"]

    table = bench.plain_table(result)
    assert "mgda" in table and "params" in table
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nprose kept\n")
    section = bench.markdown(result, "python benchmarks/step_overhead.py --tasks 2")
    bench.SECTION.write(out, section)
    bench.SECTION.write(out, section)  # replaces, does not duplicate
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nprose kept\n")
    assert text.count(bench.SECTION.begin) == 1 and text.count(bench.SECTION.end) == 1
    assert "| mgda | params |" in text


def test_a_failing_case_is_reported_not_raised(bench):
    def broken(problem):
        raise ValueError("refused")

    cases = [bench.baseline_case(), bench.Case("LibMTL", "mgda", "params", "MGDA", broken)]
    measured = bench.measure_tasks(
        cases, 2, bench.Shape(8, 16, 1, 4), 1, warmup=1, memory=False, log=lambda _: None
    )
    records = bench.summarise(measured, 2)
    assert records[1]["status"].startswith("ValueError") and "ratio" not in records[1]
