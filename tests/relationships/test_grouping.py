"""Task grouping: the exact search against brute force, planted partitions, the greedy search
above 12 tasks."""

import time

import numpy as np
import pytest

from polytask.relationships.grouping import (
    EXACT_MAX_TASKS,
    _greedy,
    best_groupings,
    grouping_score,
    suggested,
)


def set_partitions(items):
    """Every partition of ``items`` (restricted growth), as lists of lists."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1 :]]


def planted(sizes, seed=0, noise=0.1):
    """Affinity +1 within planted groups, −0.5 across, plus asymmetric noise."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng = np.random.default_rng(seed)
    m = np.where(labels[:, None] == labels[None, :], 1.0, -0.5)
    return m + noise * rng.normal(size=m.shape), labels


def as_labels(groups, size):
    labels = np.empty(size, dtype=int)
    for g, group in enumerate(groups):
        labels[list(group)] = g
    return labels


def same_partition(a, b):
    return {frozenset(np.flatnonzero(a == v)) for v in set(a)} == {
        frozenset(np.flatnonzero(b == v)) for v in set(b)
    }


@pytest.mark.parametrize("size", [2, 3, 4, 5, 6])
def test_the_exact_search_matches_brute_force(size):
    rng = np.random.default_rng(size)
    for _ in range(3):
        m = rng.normal(size=(size, size))  # asymmetric, as TAG's
        found = best_groupings(m)
        assert [g.k for g in found] == list(range(1, size + 1))
        for grouping in found:
            brute = max(
                grouping_score(m, p)
                for p in set_partitions(list(range(size)))
                if len(p) == grouping.k
            )
            assert grouping.exact
            assert grouping.score == pytest.approx(brute, abs=1e-9)
            assert grouping_score(m, grouping.groups) == pytest.approx(grouping.score)
            assert len(grouping.groups) == grouping.k


def test_the_score_is_the_mean_affinity_a_task_receives_from_its_group():
    m = np.array([[0.0, 0.4, 0.1], [0.2, 0.0, -0.3], [0.5, 0.6, 0.0]])
    # {0, 1}: task 0 receives 0.2, task 1 receives 0.4; task 2 alone receives 0
    assert grouping_score(m, [[0, 1], [2]]) == pytest.approx((0.2 + 0.4 + 0.0) / 3)
    # {0, 1, 2}: task 0 receives mean(0.2, 0.5), 1 mean(0.4, 0.6), 2 mean(0.1, -0.3)
    assert grouping_score(m, [[0, 1, 2]]) == pytest.approx((0.35 + 0.5 - 0.1) / 3)
    assert grouping_score(m, [[0], [1], [2]]) == 0.0


def test_the_planted_partition_is_found_and_scores_highest():
    m, labels = planted([3, 3, 3])
    found = best_groupings(m)
    assert same_partition(as_labels(found[2].groups, 9), labels)
    assert suggested(found).k == 3


def test_twelve_tasks_are_searched_exactly_in_well_under_seconds():
    m, labels = planted([4, 3, 3, 2], seed=1)
    started = time.perf_counter()
    found = best_groupings(m, 6)
    assert time.perf_counter() - started < 3.0
    assert all(g.exact for g in found)
    assert same_partition(as_labels(found[3].groups, 12), labels)
    noisy = np.random.default_rng(5).normal(size=(12, 12))
    exact, greedy = best_groupings(noisy, 6), _greedy(noisy, 6)
    for e, g in zip(exact, greedy, strict=True):
        assert e.score >= grouping_score(noisy, g.groups) - 1e-9


def test_above_twelve_tasks_the_greedy_search_returns_valid_partitions():
    size = EXACT_MAX_TASKS + 2
    m, labels = planted([5, 5, 4], seed=2, noise=0.3)
    assert len(m) == size
    found = best_groupings(m, 5)
    for grouping in found:
        assert not grouping.exact
        assert len(grouping.groups) == grouping.k and all(grouping.groups)
        assert sorted(i for g in grouping.groups for i in g) == list(range(size))
        assert grouping_score(m, grouping.groups) == pytest.approx(grouping.score)
    assert same_partition(as_labels(found[2].groups, size), labels)


@pytest.mark.parametrize("max_k", [0, 4])
def test_a_number_of_groups_outside_1_to_t_is_refused(max_k):
    with pytest.raises(ValueError, match="between 1 and 3"):
        best_groupings(np.zeros((3, 3)), max_k)
