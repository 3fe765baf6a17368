import math
from pathlib import Path

from rich.console import Console

from polytask.evaluation.verdict import paired_test
from polytask.reporting.tables import (
    comparison_markdown,
    comparison_verdict_summary,
    comparison_verdict_table,
    verdict_markdown,
    verdict_summary,
    verdict_table,
)
from polytask.results import BalancerSummary, ModelResult, RunResult
from polytask.tasks import RegressionTask


def render(renderable) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return " ".join(console.export_text().split())


VERDICTS = {
    "income": paired_test([4.0, 5.0, 6.0]),
    "married": paired_test([-10.0, -12.0, -11.0]),
    "degree": paired_test([5.0, -4.0, 1.0]),
    "f1_task": paired_test([math.nan, 2.0, 3.0]),
}


def test_the_summary_names_the_tasks_that_suffer_and_points_to_affinity():
    text = render("\n".join(verdict_summary(VERDICTS, 3, "census.yaml")))
    assert "Sharing hurts: married." in text
    assert "Sharing helps: income." in text
    assert "No clear difference: degree" in text
    assert "'f1_task': 1 of 3 seeds left out" in text
    assert "polytask affinity census.yaml" in text
    assert "two-sided one-sample t-test" in text and "alpha = 0.05" in text


def test_without_a_hurt_task_there_is_no_pointer():
    text = render("\n".join(verdict_summary({"income": VERDICTS["income"]}, 3, "c.yaml")))
    assert "No task is clearly hurt by sharing." in text
    assert "affinity" not in text


def test_one_seed_says_no_verdict_is_possible():
    one = {"income": paired_test([40.0])}
    text = render("\n".join(verdict_summary(one, 1, "c.yaml")))
    assert "One seed: no verdict is possible" in text
    assert "Sharing" not in text


def test_the_verdict_table_shows_changes_agreement_and_dashes_for_undefined():
    text = render(verdict_table(VERDICTS, [0, 1, 2]))
    assert "nan" not in text.lower()
    assert "married │ -10.00 │ -12.00 │ -11.00 │ -11.00 ± 1.00 │ 0/3 better" in text
    assert "f1_task │ — │ +2.00 │ +3.00 │ +2.50 ± 0.71 │ 2/2 better │ 1 │" in text
    md = verdict_markdown(VERDICTS, [0, 1, 2])
    assert (
        "| income | +4.00 | +5.00 | +6.00 | +5.00 ± 1.00 | 3/3 better | 0 | 0.013 | helps |" in md
    )


def run(changes: dict[str, float], seed: int) -> RunResult:
    tasks = [RegressionTask(name=name, metrics=("mae",)) for name in changes]
    scores = {name: {"mae": 1.0} for name in changes}
    model = ModelResult(scores, scores, 10, 1.0, 1)
    return RunResult(
        Path(f"run-seed{seed}"),
        tasks,
        model,
        {name: model for name in changes},
        {},
        delta_m_test=sum(changes.values()) / len(changes),
        changes_test={name: {"mae": change} for name, change in changes.items()},
    )


def test_the_comparison_shows_each_balancers_verdicts():
    hurting = BalancerSummary(
        "mgda",
        [
            run({"a": -10.0, "b": 3.0}, 0),
            run({"a": -11.0, "b": -3.0}, 1),
            run({"a": -12.0, "b": 1.0}, 2),
        ],
    )
    fine = BalancerSummary(
        "ew",
        [run({"a": 1.0, "b": 3.0}, 0), run({"a": -1.0, "b": 4.0}, 1), run({"a": 0.5, "b": 5.0}, 2)],
    )
    text = render(comparison_verdict_table([fine, hurting]))
    # each cell: mean ± std (sign agreement), then the verdict on the cell's second line
    assert "ew │ +0.17 ± 1.04 (2/3 better) │ +4.00 ± 1.00 (3/3 better) │" in text
    assert "│ │ no clear difference │ helps │" in text
    assert "mgda │ -11.00 ± 1.00 (0/3 better) │ +0.33 ± 3.06 (2/3 better) │" in text
    assert "│ │ hurts │ no clear difference │" in text
    summary = render("\n".join(comparison_verdict_summary([fine, hurting], "c.yaml")))
    assert "mgda: sharing hurts a." in summary and "ew: sharing" not in summary
    assert "polytask affinity c.yaml" in summary
    md = comparison_markdown([fine, hurting], {}).splitlines()
    assert md[0].endswith("| verdict |")
    assert md[3].endswith("| helps: b |") and md[4].endswith("| hurts: a |")
