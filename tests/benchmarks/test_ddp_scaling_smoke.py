"""Smoke test of benchmarks/ddp_scaling.py: two tiny processes run every case and the section
has the expected structure. Never asserts on timings."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ddp_scaling.py"


def test_two_tiny_processes_run_every_case():
    spec = importlib.util.spec_from_file_location("ddp_scaling", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["ddp_scaling"] = bench  # spawned processes import it by name
    try:
        spec.loader.exec_module(bench)
        result = bench.run([2], steps=1, warmup=1, rows=16)
    finally:
        sys.modules.pop("ddp_scaling", None)
    assert list(result) == [2] and len(result[2]) == len(bench.CASES)
    assert all(math.isfinite(v) and v > 0 for v in result[2])
    text = bench.markdown(result, 16, ["--batch", "16"])
    assert text.startswith(bench.SECTION.begin) and "| upgrad (params) |" in text
