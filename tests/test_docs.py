"""The README's Python snippets and the examples run as documented."""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "snippet", re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
)
def test_readme_snippet_runs(snippet):
    exec(compile(snippet, "README.md", "exec"), {})


def test_custom_trunk_example_prints_delta_m(capsys):
    runpy.run_path(str(ROOT / "examples" / "custom_trunk.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(r"Δm% = [+-]\d+\.\d\d", out)
