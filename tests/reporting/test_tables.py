import math
from pathlib import Path

from rich.console import Console

from polytask.experiment import ModelResult, RunResult
from polytask.reporting.tables import results_table, summary_table
from polytask.tasks import BinaryTask


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_an_undefined_delta_m_or_change_prints_a_dash_never_nan():
    task = BinaryTask(name="clicked", classes=("no", "yes"), metrics=("f1",))
    model = ModelResult({"clicked": {"f1": 0.4}}, {"clicked": {"f1": 0.5}}, 10, 1.0, 2)
    baseline = ModelResult({"clicked": {"f1": 0.0}}, {"clicked": {"f1": 0.0}}, 10, 1.0, 1)
    result = RunResult(
        Path("run"),
        [task],
        model,
        {"clicked": baseline},
        {},
        delta_m_test=math.nan,
        delta_m_validation=math.nan,
        changes_test={"clicked": {"f1": math.nan}},
    )
    text = render(summary_table(result)) + render(results_table(result))
    assert "nan" not in text.lower()
    assert "— (undefined) (—)" in text
