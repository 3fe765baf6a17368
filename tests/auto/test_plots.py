"""The study's pictures: the Pareto front is exactly the non-dominated trials."""

import random

import optuna
import pytest

from polytask.auto.plots import pareto_front, plot_pareto


def dominates(a, b):
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_the_front_is_every_non_dominated_point_and_only_those(dims, seed):
    rng = random.Random(seed)
    points = [[rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0]) for _ in range(dims)] for _ in range(30)]
    front = set(pareto_front(points))
    for i, p in enumerate(points):
        assert (i in front) == (not any(dominates(q, p) for q in points))


def test_equal_points_are_both_on_the_front():
    assert pareto_front([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]) == [0, 1]


@pytest.mark.parametrize("tasks", [["a", "b"], ["a", "b", "c"]])
def test_the_pareto_picture_is_written_for_two_and_three_tasks(tmp_path, tasks):
    points = [(n, [float(n % 3), float(-n), 1.0][: len(tasks)]) for n in range(6)]
    path = plot_pareto(points, tasks, tmp_path / "pareto.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_optuna_s_style_does_not_leak_into_later_figures(tmp_path):
    import matplotlib.pyplot as plt

    from polytask.auto.plots import write_plots

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=4)
    before = dict(plt.rcParams)
    assert write_plots(study, ["a"], tmp_path) == []
    assert (tmp_path / "history.png").is_file() and (tmp_path / "importances.png").is_file()
    assert dict(plt.rcParams) == before
