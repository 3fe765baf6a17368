"""Smoke test of benchmarks/ddp_scaling.py: every case runs (in this process: the two-process
path is tested in tests/training/test_distributed.py) and the section reports the speed-up of
the figures it is given. Never asserts on timings."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ddp_scaling.py"


def test_every_case_runs_and_the_section_holds_its_figures(tmp_path):
    spec = importlib.util.spec_from_file_location("ddp_scaling", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench._worker(0, 1, str(tmp_path / "store"), str(tmp_path / "seconds"), 1, 1, 16)
    seconds = [float(v) for v in (tmp_path / "seconds.0").read_text().split()]
    assert len(seconds) == len(bench.CASES)
    assert all(math.isfinite(v) and v > 0 for v in seconds)
    result = {1: [16 / s for s in seconds], 2: [2 * 16 / s for s in seconds]}
    text = bench.markdown(result, 16, ["--batch", "16"])
    assert text.startswith(bench.SECTION.begin) and "| upgrad (params) |" in text
    assert text.count("2.00×") == len(bench.CASES)
