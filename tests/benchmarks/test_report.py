"""The benchmarks' shared Markdown helper: tables, ± cells and generated sections."""

from __future__ import annotations

import math

import pytest
from _report import Section, pm, table


def test_table_aligns_the_last_columns_right_and_checks_row_widths():
    text = table(["name", "x", "y"], [["a", "1", "2"], ["b", "3", "4"]], right=2)
    assert text.splitlines() == [
        "| name | x | y |",
        "|---|---:|---:|",
        "| a | 1 | 2 |",
        "| b | 3 | 4 |",
    ]
    with pytest.raises(ValueError, match="2 cells"):
        table(["name", "x", "y"], [["a", "1"]])


def test_pm_signs_and_missing_values():
    assert pm((0.5, 0.25)) == "0.500 ± 0.250"
    assert pm((1.5, 0.25), 2, sign=True) == "+1.50 ± 0.25"
    assert pm((-1.5, 0.25), 2, sign=True) == "-1.50 ± 0.25"
    assert pm((math.nan, math.nan)) == "–"


def test_section_is_replaced_in_place_or_appended(tmp_path):
    section = Section("demo", "benchmarks/demo.py")
    path = tmp_path / "docs" / "bench.md"
    section.write(path, section.wrap("first"))  # no file yet: created
    assert path.read_text() == f"{section.begin}\n\nfirst\n\n{section.end}\n"
    path.write_text("# Title\n\n" + path.read_text() + "\n## Reading\n\nkept\n")
    section.write(path, section.wrap("| a |\n"))
    assert path.read_text() == (
        f"# Title\n\n{section.begin}\n\n| a |\n\n{section.end}\n\n## Reading\n\nkept\n"
    )
    other = Section("other", "benchmarks/other.py")
    other.write(path, other.wrap("second"))  # another script's section is appended
    text = path.read_text()
    assert text.count(section.begin) == 1 and text.endswith(f"{other.end}\n")
    with pytest.raises(ValueError, match="wrap"):
        section.write(path, "no markers")
