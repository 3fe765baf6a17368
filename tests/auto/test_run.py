"""``polytask auto`` end to end on a small table: the study folder's files, the final stage,
the sealed test split, resume, the deadline and bad input."""

import dataclasses
import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

import polytask.auto.run as auto_run
from polytask.auto import AutoOptions, run_auto
from polytask.auto.study import budget_used
from polytask.config import load_config, parse_config
from polytask.errors import ConfigError, RunError
from polytask.results import load_model_result

from ..conftest import config_dict, synthetic_frame

SPACE = {
    "arch": ["hard", "mmoe", "groups"],
    "balancer": ["equal", "uw", "mgda"],
    "width": [8, 16],
    "depth": [1],
    "trials": 6,
    "top": 2,
    "seeds": [0, 1],
}


def small(tmp_path: Path, **auto) -> object:
    table = tmp_path / "table.csv"
    if not table.exists():
        synthetic_frame().to_csv(table, index=False)
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), auto={**SPACE, **auto})
    raw["training"]["epochs"] = 2
    return parse_config(raw)


def load(folder: Path, name: str = "synthetic") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One whole study with its final stage, shared by the tests that only read it."""
    tmp_path = tmp_path_factory.mktemp("auto")
    config = small(tmp_path)
    return config, run_auto(config, AutoOptions())


def test_a_study_writes_its_leaderboard_pictures_and_final_report(finished):
    config, result = finished
    folder = result.folder
    assert folder == Path(config.output_dir) / "synthetic-auto"
    study = load(folder)
    assert budget_used(study) == 6
    board = pd.read_csv(folder / "leaderboard.csv")
    assert sorted(board["trial"]) == [t.number for t in study.trials]
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        row = board[board["trial"] == trial.number].iloc[0]
        assert row["delta_m_validation"] == pytest.approx(trial.value)
        assert row["param.arch"] == trial.params.get("arch", "hard")
    complete = board[board["state"] == "complete"]["delta_m_validation"].tolist()
    assert complete == sorted(complete, reverse=True)
    for picture in ("history.png", "importances.png", "pareto.png"):
        assert (folder / picture).stat().st_size > 1000, picture


def test_the_winner_has_the_best_mean_validation_delta_m_and_best_yaml_trains_it(finished):
    config, result = finished
    report = json.loads((result.folder / "final.json").read_text())
    means = {c["trial"]: c["delta_m_validation_mean_std"][0] for c in report["candidates"]}
    assert report["winner"]["trial"] == max(means, key=means.get)
    best = load(result.folder).best_trial
    assert best.number in means  # the search's best is among the candidates
    assert len(report["candidates"]) <= 2 and report["seeds"] == [0, 1]
    for candidate in report["candidates"]:
        assert len(candidate["runs"]) == 2
        for run, value in zip(candidate["runs"], candidate["delta_m_validation"], strict=True):
            metrics = json.loads((Path(run) / "metrics.json").read_text())
            assert metrics["delta_m_validation"] == pytest.approx(value)
    winner = report["winner"]
    assert winner["beats_single_task_on_validation"] == (means[winner["trial"]] > 0)
    assert set(winner["tasks"]) == {"clicked", "segment", "spend"}
    assert all(math.isfinite(v) for v in winner["delta_m_test"])
    loaded = load_config(result.folder / "best.yaml")
    chosen = result.final.candidates[result.final.winner].config
    assert loaded.model == chosen.model and loaded.balancer == chosen.balancer
    assert loaded.training == chosen.training and loaded.auto is None
    assert loaded.output_dir == config.output_dir


def test_the_search_never_reads_the_test_split(tmp_path, monkeypatch):
    """The data the search gets has a test split that fails on any use."""
    real = auto_run.prepare_data
    touched = []

    class Sealed:
        def __getattr__(self, name):
            touched.append(name)
            raise AssertionError(f"the search read the test split ({name})")

        def __len__(self):
            touched.append("len")
            raise AssertionError("the search read the test split")

    def poisoned(config):
        return dataclasses.replace(real(config), test=Sealed())

    monkeypatch.setattr(auto_run, "prepare_data", poisoned)
    result = run_auto(small(tmp_path, trials=4), AutoOptions(final=False))
    assert touched == []
    assert budget_used(load(result.folder)) == 4
    for metrics in (result.folder / "baselines").glob("*/metrics.json"):
        assert load_model_result(metrics).test == {}  # the search baselines have no test score


def test_resume_keeps_the_finished_trials_and_runs_up_to_the_new_budget(tmp_path):
    config = small(tmp_path, trials=3)
    first = run_auto(config, AutoOptions(final=False))
    before = {t.number: t.value for t in load(first.folder).trials}
    again = run_auto(config, AutoOptions(trials=5, resume=True, final=False))
    assert again.folder == first.folder
    study = load(first.folder)
    assert budget_used(study) == 5
    assert {t.number: t.value for t in study.trials if t.number in before} == before


def test_the_search_stops_at_the_deadline_within_one_trial(tmp_path):
    """200 trials take several seconds here; none starts after the 1.5 s deadline."""
    result = run_auto(small(tmp_path, trials=200), AutoOptions(timeout=1.5, final=False))
    trials = load(result.folder).trials
    assert 0 < len(trials) < 200
    starts = [t.datetime_start for t in trials]
    assert (max(starts) - min(starts)).total_seconds() <= 1.5


def test_bad_input_is_one_clear_error(tmp_path):
    config = small(tmp_path)
    with pytest.raises(RunError, match="no study to resume"):
        run_auto(config, AutoOptions(resume=True))
    with pytest.raises(ConfigError, match="--storage .*cannot be opened"):
        run_auto(config, AutoOptions(storage="nosuchdb://user:pw@host/x"))
    assert not (Path(config.output_dir) / "synthetic-auto").exists()  # nothing made so far
    with pytest.raises(ConfigError, match="shorter than one training epoch"):
        run_auto(config, AutoOptions(timeout=1e-6))
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        one = config.model_copy(update={"tasks": config.tasks[:1]})
        run_auto(one, AutoOptions())
    with pytest.raises(ConfigError, match="--jobs 0"):
        run_auto(config, AutoOptions(jobs=0))


def test_a_shared_storage_refuses_a_second_new_study_of_the_same_name(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    config = small(tmp_path, trials=1)
    run_auto(config, AutoOptions(storage=url, final=False))
    with pytest.raises(RunError, match="exists already; add --resume"):
        run_auto(config, AutoOptions(storage=url, final=False))
    elsewhere = config.model_copy(update={"output_dir": str(tmp_path / "other-machine")})
    joined = run_auto(elsewhere, AutoOptions(storage=url, resume=True, trials=2, final=False))
    assert joined.folder == tmp_path / "other-machine" / "synthetic-auto"  # its own folder
    study = optuna.load_study(study_name="synthetic", storage=url)
    assert budget_used(study) == 2
    settings = json.loads((joined.folder / "auto.json").read_text())
    assert settings["storage"] == url and settings["space"] == study.user_attrs["space"]


def test_a_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    import polytask.auto.search as search

    real, calls = search.train_candidate, []

    def sometimes_broken(config, *args, **kwargs):
        if config.model.arch == "hard":
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("the solver gave up")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(search, "train_candidate", sometimes_broken)
    # db_mtl works on shared parameters; mtrl shares none: an invalid combination
    config = small(tmp_path, trials=6, arch=["hard", "mtrl"], balancer=["equal", "db_mtl"])
    result = run_auto(config, AutoOptions(final=False))
    board = pd.read_csv(result.folder / "leaderboard.csv", dtype={"note": str}).fillna({"note": ""})
    assert len(board) == 6 and calls
    broken = board[board["note"].str.contains("ValueError: the solver gave up")]
    assert list(broken["state"]) == ["fail"]
    invalid = board[(board["param.arch"] == "mtrl") & (board["param.balancer"] == "db_mtl")]
    assert len(invalid) and all(invalid["state"] == "fail")
    assert all(invalid["note"].str.contains("shares none"))
    assert (board["state"] == "complete").any()
