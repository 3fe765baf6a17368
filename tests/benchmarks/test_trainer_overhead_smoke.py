"""Smoke test of benchmarks/trainer_overhead.py on the small synthetic table: the structure of
the result and of the Markdown section, never the timings."""

from __future__ import annotations

import math

import trainer_overhead

from polytask.config import parse_config

from ..conftest import config_dict


def test_tiny_run_has_the_expected_structure(tmp_path, table):
    config = parse_config(config_dict(str(table)))
    result = trainer_overhead.measure(config, epochs=2, batch_size=32)
    assert result["rows"] == 144 and result["epochs"] == 2  # 60% of 240 rows train
    for key in ("trainer", "hand", "ratios"):
        assert len(result[key]) == 2
        assert all(math.isfinite(v) and v > 0 for v in result[key])
    assert "ratio Trainer / hand loop" in trainer_overhead.summary(result)

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nprose kept\n")
    section = trainer_overhead.markdown(result, "python benchmarks/trainer_overhead.py")
    trainer_overhead.SECTION.write(out, section)
    trainer_overhead.SECTION.write(out, section)  # replaces, does not duplicate
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nprose kept\n")
    assert text.count("## Trainer overhead") == 1
    assert "| polytask `Trainer` |" in text and "144 rows per epoch" in text
