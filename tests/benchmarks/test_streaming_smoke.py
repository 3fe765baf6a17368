"""Smoke test of benchmarks/streaming.py on the small synthetic table, both modes in this
process: the structure of the result and of the Markdown section, never the timings."""

from __future__ import annotations

import math

import streaming

from ..conftest import config_dict, synthetic_frame


def test_tiny_run_has_the_expected_structure(tmp_path):
    path = tmp_path / "table.parquet"
    synthetic_frame(300).to_parquet(path, row_group_size=100)
    configs = {}
    for mode in streaming.MODES:
        config = config_dict(str(path), output_dir=str(tmp_path / "runs"))
        config["training"]["epochs"] = 1
        config["data"]["streaming"] = mode == "streaming"
        configs[mode] = config
    result = streaming.measure(configs, path, runner=streaming.child)
    assert result["rows"] == 300 and result["epochs"] == 1
    for mode, found in result["modes"].items():
        assert 100 < found["train_rows"] < 300, mode  # 20 % validation, 20 % test
        assert found["peak_rss_gb"] >= found["rss_prepared_gb"] > 0
        assert all(math.isfinite(found[k]) and found[k] > 0 for k in ("train_rate", "total_rate"))
    assert "streaming / in memory" in streaming.summary(result)

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nprose kept\n")
    section = streaming.markdown([result], "python benchmarks/streaming.py")
    streaming.SECTION.write(out, section)
    streaming.SECTION.write(out, section)  # replaces, does not duplicate
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nprose kept\n") and text.count("## Streaming") == 1
    assert "| 300 | streaming |" in text and "At 300 rows: peak RSS while streaming" in text
