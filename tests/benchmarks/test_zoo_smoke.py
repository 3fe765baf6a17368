"""Smoke test of benchmarks/zoo.py: penguins, one epoch, one seed, two architectures. Asserts on
the structure of the results and of the markdown section, never on metric values."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "zoo.py"


@pytest.fixture(scope="module")
def zoo_module():
    spec = importlib.util.spec_from_file_location("zoo", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("zoo", None)


def test_penguins_zoo_has_the_expected_structure(zoo_module, tmp_path):
    collected = zoo_module.zoo(
        ["penguins"], ["hard", "mmoe"], ["ew"], [0], tmp_path, epochs=1, log=lambda _: None
    )
    files = sorted(p.name for p in (tmp_path / "results" / "penguins").glob("*.json"))
    assert files == ["hard-ew-seed0.json", "mmoe-ew-seed0.json", "single-seed0.json"]
    record = json.loads((tmp_path / "results" / "penguins" / "mmoe-ew-seed0.json").read_text())
    assert record["arch"] == "mmoe" and record["epochs"] == 1
    assert json.loads(Path(record["run_dir"], "config.json").read_text())["model"]["experts"] == 4

    block = collected["penguins"]
    assert [t["name"] for t in block["tasks"]] == ["species", "sex", "body_mass"]
    rows = block["rows"]
    assert [(r["arch"], r["balancer"]) for r in rows] == [
        ("single-task", "—"),
        ("hard", "ew"),
        ("mmoe", "ew"),
    ]
    for row in rows:
        assert set(row["metrics"]) == {"species", "sex", "body_mass"}
        assert row["seeds"] == [0]
        assert all(math.isfinite(mean) for mean, _ in row["metrics"].values())
        assert math.isfinite(row["delta_m"][0]) and math.isfinite(row["seconds_per_epoch"][0])
        assert row["parameters"] > 0

    # a second call finds every run done and trains nothing
    again = zoo_module.zoo(
        ["penguins"], ["hard", "mmoe"], ["ew"], [0], tmp_path, epochs=1, log=pytest.fail
    )
    assert again == collected

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nprose kept\n\n## Other\n\nkept too\n")
    section = zoo_module.markdown(collected, "python benchmarks/zoo.py --datasets penguins")
    zoo_module.SECTION.write(out, section)
    zoo_module.SECTION.write(out, section)  # replaces, does not duplicate
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nprose kept\n\n## Other\n\nkept too\n")
    assert text.count(zoo_module.SECTION.begin) == 1 and text.count(zoo_module.HEADING) == 1
    assert "### penguins" in text and "| mmoe | ew |" in text and "| single-task | — |" in text
