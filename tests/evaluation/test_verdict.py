import math

import pytest
from scipy.stats import ttest_1samp

from polytask.evaluation.verdict import paired_test, task_change, task_verdicts


def test_consistent_gains_help():
    verdict = paired_test([4.0, 5.0, 6.0])
    assert verdict.outcome == "helps"
    assert verdict.mean == pytest.approx(5.0) and verdict.std == pytest.approx(1.0)
    assert verdict.p_value == pytest.approx(ttest_1samp([4.0, 5.0, 6.0], 0.0).pvalue)
    assert verdict.p_value < 0.05
    assert (verdict.better, verdict.worse, verdict.used, verdict.excluded) == (3, 0, 3, 0)


def test_consistent_losses_hurt():
    verdict = paired_test([-10.0, -12.0, -11.0, -9.5])
    assert verdict.outcome == "hurts"
    assert verdict.mean == pytest.approx(-10.625)
    assert (verdict.better, verdict.worse) == (0, 4)


def test_noisy_changes_are_no_clear_difference():
    verdict = paired_test([5.0, -4.0, 1.0])
    assert verdict.outcome == "no clear difference"
    assert verdict.p_value > 0.05
    assert (verdict.better, verdict.worse) == (2, 1)


def test_a_mean_far_from_zero_is_not_enough_with_a_large_spread():
    # mean +20 %, but the seeds disagree wildly: the t-test does not call it
    assert paired_test([60.0, -5.0, 5.0]).outcome == "no clear difference"


def test_one_seed_gives_no_verdict():
    verdict = paired_test([30.0])
    assert verdict.outcome == "no verdict"
    assert verdict.mean == 30.0 and math.isnan(verdict.p_value)


def test_undefined_changes_are_left_out_and_counted():
    verdict = paired_test([4.0, math.nan, 5.0, 6.0])
    assert verdict.excluded == 1 and verdict.used == 3
    assert verdict.mean == pytest.approx(5.0)
    assert verdict.p_value == pytest.approx(paired_test([4.0, 5.0, 6.0]).p_value)
    assert verdict.outcome == "helps"
    # only one defined seed left: no verdict, even with three seeds run
    lonely = paired_test([math.nan, 8.0, math.inf])
    assert lonely.outcome == "no verdict" and lonely.excluded == 2
    nothing = paired_test([math.nan, math.nan])
    assert nothing.outcome == "no verdict" and math.isnan(nothing.mean)


def test_identical_changes_have_no_spread():
    assert paired_test([2.0, 2.0, 2.0]).outcome == "helps"
    assert paired_test([-2.0, -2.0]).outcome == "hurts"
    verdict = paired_test([0.0, 0.0, 0.0])
    assert verdict.outcome == "no clear difference" and verdict.p_value == 1.0


def test_alpha_sets_the_bar():
    changes = [1.0, 2.0, 0.5]  # p ≈ 0.12
    assert paired_test(changes, alpha=0.05).outcome == "no clear difference"
    assert paired_test(changes, alpha=0.2).outcome == "helps"
    with pytest.raises(ValueError, match="alpha"):
        paired_test(changes, alpha=0.0)


def test_a_task_change_averages_its_defined_metrics():
    assert task_change({"auc": 10.0, "acc": -4.0}) == pytest.approx(3.0)
    assert task_change({"auc": 10.0, "f1": math.nan}) == pytest.approx(10.0)
    assert math.isnan(task_change({"f1": math.nan}))
    assert math.isnan(task_change({}))


def test_task_verdicts_pair_the_seeds():
    per_seed = [
        {"a": {"auc": 5.0, "acc": 3.0}, "b": {"mae": -20.0}},
        {"a": {"auc": 6.0, "acc": 4.0}, "b": {"mae": -22.0}},
        {"a": {"auc": 4.0, "acc": 2.0}, "b": {"mae": math.nan}},
    ]
    verdicts = task_verdicts(per_seed, ["a", "b", "c"])
    assert verdicts["a"].changes == (4.0, 5.0, 3.0) and verdicts["a"].outcome == "helps"
    assert verdicts["b"].excluded == 1 and verdicts["b"].mean == pytest.approx(-21.0)
    assert verdicts["b"].outcome == "hurts"  # two seeds: -20 and -22, t = -21, p ≈ 0.03
    assert verdicts["c"].outcome == "no verdict" and verdicts["c"].excluded == 3
