"""Task clustering: the partition of the tasks into k groups that maximises the affinity
within groups, for k = 1…K.

The score of a partition P of T tasks, under an affinity matrix M (``M[i, j]``: how much task i
helps task j; the TAG lookahead ``Z_{i→j}`` or a symmetric gradient cosine)::

    score(P) = (1/T) Σ_j s_j,   s_j = mean over the other tasks i of j's group of M[i, j]

and ``s_j = 0`` when j is alone: the mean, over tasks, of what a task gains from its
group-mates. Singletons (no sharing) score 0, so k = T is single-task training; for cosines
it is the mean within-group cosine seen by each task. The score is additive over groups
(``f(g) = Σ_{i≠j ∈ g} M[i, j] / (|g| − 1)``), which makes the exact search a dynamic
programme over subsets: ``best_k(S) = max_{g ∋ min S} f(g) + best_{k−1}(S \\ g)``, O(3^T·K)
vectorised over the (subset, group) pairs, under a second for T = 12. Above
:data:`EXACT_MAX_TASKS` tasks: agglomerative merging from singletons (the best merge each time),
then single-task moves while they improve the score.

Undefined affinities (NaN) count as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

EXACT_MAX_TASKS = 12
"""Up to this many tasks the search is exact; above it, greedy."""


@dataclass(frozen=True)
class Grouping:
    """The best partition found for ``k`` groups: its score, its groups (task indices, each
    sorted, groups ordered by their first task) and whether the search was exact."""

    k: int
    score: float
    groups: tuple[tuple[int, ...], ...]
    exact: bool

    def named(self, names: list[str]) -> list[list[str]]:
        return [[names[i] for i in group] for group in self.groups]


def _matrix(affinity: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(np.asarray(affinity, dtype=np.float64), nan=0.0)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"the affinity must be a square matrix, got shape {m.shape}")
    np.fill_diagonal(m, 0.0)
    return m


def grouping_score(affinity: np.ndarray, groups: list[list[int]] | tuple) -> float:
    """The score of a partition (module docstring)."""
    m = _matrix(affinity)
    total = 0.0
    for group in groups:
        idx = list(group)
        if len(idx) > 1:
            total += m[np.ix_(idx, idx)].sum() / (len(idx) - 1)
    return total / len(m)


def best_groupings(affinity: np.ndarray, max_k: int | None = None) -> list[Grouping]:
    """The best partition into k non-empty groups for k = 1…``max_k`` (default T): exact for
    T ≤ :data:`EXACT_MAX_TASKS`, greedy above."""
    m = _matrix(affinity)
    size = len(m)
    max_k = size if max_k is None else max_k
    if not 1 <= max_k <= size:
        raise ValueError(f"the number of groups must be between 1 and {size}, got {max_k}")
    if size <= EXACT_MAX_TASKS:
        return _exact(m, max_k)
    return _greedy(m, max_k)


@cache
def _pairs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (S, g, S \\ g) with g a non-empty subset of S holding S's lowest task, as
    bitmasks, sorted by S."""
    every = np.arange(1 << size, dtype=np.int64)
    subsets, groups, rests = [], [], []
    for g in range(1, 1 << size):
        low = g & -g
        allowed = ((1 << size) - 1) & ~g & ~(2 * low - 1)
        rest = every[(every & ~allowed) == 0]
        subsets.append(rest | g)
        groups.append(np.full(len(rest), g, dtype=np.int64))
        rests.append(rest)
    s, g, r = np.concatenate(subsets), np.concatenate(groups), np.concatenate(rests)
    order = np.argsort(s, kind="stable")
    return s[order], g[order], r[order]


def _group_values(m: np.ndarray) -> np.ndarray:
    """``f(g)`` for every bitmask g."""
    size = len(m)
    members = (np.arange(1 << size)[:, None] >> np.arange(size)) & 1
    inside = ((members @ m) * members).sum(axis=1)
    count = members.sum(axis=1)
    return np.where(count > 1, inside / np.maximum(count - 1, 1), 0.0)


def _exact(m: np.ndarray, max_k: int) -> list[Grouping]:
    size = len(m)
    full = (1 << size) - 1
    f = _group_values(m)
    s, g, r = _pairs(size)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    best = [np.full(1 << size, -np.inf)]
    best[0][0] = 0.0
    for _ in range(max_k):
        values = f[g] + best[-1][r]
        layer = np.full(1 << size, -np.inf)
        layer[s[starts]] = np.maximum.reduceat(values, starts)
        best.append(layer)
    results = []
    at_full = s == full
    for k in range(1, max_k + 1):
        groups, subset = [], full
        for level in range(k, 0, -1):
            here = (s == subset) if subset != full else at_full
            cand = f[g[here]] + best[level - 1][r[here]]
            pick = int(np.argmax(cand))
            group = int(g[here][pick])
            groups.append(tuple(i for i in range(size) if group >> i & 1))
            subset = int(r[here][pick])
        results.append(Grouping(k, float(best[k][full]) / size, _ordered(groups), True))
    return results


def _ordered(groups: list[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    return tuple(sorted((tuple(sorted(g)) for g in groups), key=lambda g: g[0]))


def _greedy(m: np.ndarray, max_k: int) -> list[Grouping]:
    """From singletons, merge the two groups whose union gains the most; improve each k's
    partition by moving single tasks while the score rises."""
    size = len(m)
    groups: list[list[int]] = [[i] for i in range(size)]
    found: dict[int, list[list[int]]] = {size: [list(g) for g in groups]}
    while len(groups) > 1:
        best, pair = -np.inf, (0, 1)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                gain = (
                    _value(m, groups[a] + groups[b]) - _value(m, groups[a]) - _value(m, groups[b])
                )
                if gain > best:
                    best, pair = gain, (a, b)
        a, b = pair
        groups[a] = groups[a] + groups[b]
        del groups[b]
        found[len(groups)] = [list(g) for g in groups]
    results = []
    for k in range(1, max_k + 1):
        partition = _improve(m, found[k])
        score = sum(_value(m, g) for g in partition) / size
        results.append(Grouping(k, score, _ordered([tuple(g) for g in partition]), False))
    return results


def _value(m: np.ndarray, group: list[int]) -> float:
    return float(m[np.ix_(group, group)].sum() / (len(group) - 1)) if len(group) > 1 else 0.0


def _improve(m: np.ndarray, groups: list[list[int]]) -> list[list[int]]:
    """Move one task to another group while that raises the score (no group left empty)."""
    groups = [list(g) for g in groups]
    improved = True
    while improved:
        improved = False
        for a, source in enumerate(groups):
            if len(source) == 1:
                continue
            for task in list(source):
                rest = [t for t in source if t != task]
                loss = _value(m, source) - _value(m, rest)
                for b, target in enumerate(groups):
                    if b != a and _value(m, [*target, task]) - _value(m, target) > loss + 1e-12:
                        source.remove(task)
                        target.append(task)
                        improved = True
                        break
                if improved:
                    break
            if improved:
                break
    return groups


def cluster_order(groups: tuple[tuple[int, ...], ...]) -> list[int]:
    """Task indices ordered group by group (for the heatmap)."""
    return [i for group in groups for i in group]


def suggested(groupings: list[Grouping]) -> Grouping:
    """The highest-scoring grouping (the fewest groups among ties)."""
    best = max(g.score for g in groupings)
    return next(g for g in groupings if g.score >= best - 1e-12)
