"""``polytask auto`` end to end: search baselines → candidate groupings → search (one or more
worker processes sharing the study) → leaderboard and pictures → final stage → ``best.yaml``.

The study folder ``<output_dir>/<name>-auto`` holds::

    auto.json            the settings: config, study name and storage, budget, search space
    study.db             the optuna study (SQLite), unless --storage names another
    baselines/           the search baselines (validation only; the test split is sealed)
    leaderboard.csv      every trial: state, validation Δm, epochs, seconds, parameters, note
    history.png, importances.png, pareto.png
    final/               the final stage's runs (and their baselines, seed by seed)
    final.json           each candidate's validation Δm over the seeds; the winner's test report
    best.yaml            the winner's config, ready for ``polytask train``
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from polytask.auto.final import FINAL, FinalResult, candidates, run_final, write_best, write_final
from polytask.auto.plots import write_plots
from polytask.auto.search import SearchSettings, search
from polytask.auto.space import SearchSpace, build_space, check_auto
from polytask.auto.study import (
    DIRECTION,
    LeaderboardRow,
    best_trials,
    leaderboard,
    masked,
    open_storage,
    param_names,
    recover_interrupted,
    study_exists,
)
from polytask.auto.trial import measure_groupings
from polytask.checks import check_config
from polytask.config import AutoConfig, Config
from polytask.data.prepare import PreparedData, prepare_data
from polytask.errors import ConfigError, RunError
from polytask.evaluation.delta_m import Scores, reference_problem
from polytask.experiment import train_baseline
from polytask.results import mean_std
from polytask.rundir import (
    AUTO_SETTINGS,
    BEST_CONFIG,
    FINAL_REPORT,
    LEADERBOARD,
    RunDir,
    baselines_folder,
    check_output_dir,
    is_run_of,
    new_run_dir,
)
from polytask.training.checkpoint import atomic_write_json, atomic_write_text

Reporter = Callable[[str], None]

STUDY_DB = "study.db"


@dataclass(frozen=True)
class AutoOptions:
    """The command's options: ``trials`` overrides ``auto.trials``; ``timeout`` (seconds)
    bounds the search stage; ``jobs`` worker processes; ``storage`` an optuna RDB URL;
    ``resume`` continues (or joins) the study; ``final`` runs the final stage."""

    trials: int | None = None
    timeout: float | None = None
    jobs: int = 1
    storage: str | None = None
    resume: bool = False
    final: bool = True


@dataclass
class AutoResult:
    folder: Path
    rows: list[LeaderboardRow]
    notes: list[str]
    final: FinalResult | None


def run_auto(
    config: Config, options: AutoOptions, *, report: Reporter = lambda message: None
) -> AutoResult:
    """Search, report and (unless ``options.final`` is false) retrain the best candidates."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what happens
    auto = config.auto or AutoConfig()
    names = [t.name for t in config.tasks if not t.auxiliary]
    if len(names) < 2:
        raise ConfigError("auto: the search compares multi-task models; give at least 2 tasks")
    check_auto(auto, [t.name for t in config.tasks])
    check_config(config)
    if options.jobs < 1:
        raise ConfigError(f"--jobs {options.jobs}: must be an integer ≥ 1")
    if options.timeout is not None and options.timeout <= 0:
        raise ConfigError(f"--timeout {options.timeout:g}: must be a positive duration")
    trials = options.trials if options.trials is not None else auto.trials
    if trials < 1:
        raise ConfigError(f"--trials {trials}: must be an integer ≥ 1")
    output, name = Path(config.output_dir), config.name or "run"
    check_output_dir(output)
    if options.storage is not None:  # a URL that cannot be opened fails before any folder
        open_storage(options.storage)
    data = prepare_data(config)  # and so do bad data
    joining = False
    try:
        folder = study_folder(output, name, resume=options.resume)
    except RunError:
        if options.storage is None:
            raise
        folder, joining = study_folder(output, name, resume=False), True  # join a shared study
    stored = _read_settings(folder) if options.resume and not joining else {}
    url = options.storage or stored.get("storage") or f"sqlite:///{folder / STUDY_DB}"
    if "***" in url:
        raise ConfigError(
            f"{folder / AUTO_SETTINGS}: the storage URL's password is not kept; give it again "
            "with --storage"
        )
    storage = open_storage(url)
    study_name = config.name or "run"
    exists = study_exists(storage, study_name)
    if options.resume and not exists:
        raise RunError(f"--resume: no study '{study_name}' in {masked(url)}")
    if not options.resume and exists:
        raise RunError(
            f"--storage {masked(url)}: a study '{study_name}' exists already; add --resume to "
            "continue it (or join it from another machine), or rename the config"
        )
    with RunDir(folder).hold():
        return _auto(config, data, auto, options, folder, url, study_name, trials, joining, report)


def _known_space(study: optuna.Study, joining: bool) -> dict | None:
    """The space the study began with (kept in the study, so that every process shares it)."""
    known = study.user_attrs.get("space")
    if joining and known is None:
        raise RunError(
            f"study '{study.study_name}': its first process has not begun the search yet (it "
            "trains the baselines first); join it again in a moment"
        )
    return known


def _auto(
    config: Config,
    data: PreparedData,
    auto: AutoConfig,
    options: AutoOptions,
    folder: Path,
    url: str,
    study_name: str,
    trials: int,
    joining: bool,
    report: Reporter,
) -> AutoResult:
    report(f"study folder: {folder}")
    settings_file = {
        "config": config.name,
        "study": study_name,
        "storage": masked(url),
        "trials": trials,
        "seed": auto.seed,
    }
    atomic_write_json(folder / AUTO_SETTINGS, settings_file)
    if options.resume:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        known = _known_space(study, joining)
    else:
        study = optuna.create_study(
            study_name=study_name, storage=open_storage(url), direction=DIRECTION
        )
        known = None
    sealed = data.without_test()
    reference, epoch_seconds = _search_baselines(config, sealed, folder, report)
    if options.timeout is not None and options.timeout < epoch_seconds:
        raise ConfigError(
            f"--timeout {options.timeout:g}s is shorter than one training epoch here (about "
            f"{epoch_seconds:.1f} s for a single-task baseline); no trial could finish"
        )
    space = _space(config, auto, sealed, known, report)
    if known is None:
        study.set_user_attr("space", space.to_dict())
    atomic_write_json(folder / AUTO_SETTINGS, {**settings_file, "space": space.to_dict()})
    settings = SearchSettings(
        base=config,
        space=space,
        storage=url,
        study=study_name,
        reference=reference,
        trials=trials,
        deadline=None if options.timeout is None else time.time() + options.timeout,
        seed=auto.seed,
    )
    report(
        f"search: {trials} trials"
        + (f", at most {options.timeout:g} s" if options.timeout else "")
        + f", {options.jobs} worker(s); study '{study_name}' in {masked(url)}"
    )
    own_file = options.storage is None  # the folder's SQLite file: only this job uses it
    for number in recover_interrupted(study, every_running=own_file):
        report(f"trial {number}: its process is gone; marked failed and queued again")
    _run_workers(settings, options.jobs, data, report)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    rows = leaderboard(study)
    write_leaderboard(rows, folder / LEADERBOARD)
    notes = write_plots(study, [t.name for t in config.tasks if not t.auxiliary], folder)
    final = None
    if options.final:
        final = _final(config, auto, space, study, folder, report)
    return AutoResult(folder, rows, notes, final)


def study_folder(output: Path, name: str, *, resume: bool) -> Path:
    """A new ``<output>/<name>-auto`` folder, or for ``resume`` the latest one holding a study."""
    check_output_dir(output)
    label = f"{name}-auto"
    if not resume:
        return new_run_dir(output, label).path
    studies = [p for p in output.glob(f"{label}*") if is_run_of(p.name, label)]
    found = sorted(
        (p for p in studies if (p / AUTO_SETTINGS).is_file()), key=lambda p: p.stat().st_mtime
    )
    if not found:
        raise RunError(f"--resume: no study to resume (no {output / label}*/{AUTO_SETTINGS})")
    return found[-1]


def _read_settings(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / AUTO_SETTINGS).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{folder / AUTO_SETTINGS}: cannot be read ({exc})") from exc


def _search_baselines(
    config: Config, sealed: PreparedData, folder: Path, report: Reporter
) -> tuple[Scores, float]:
    """The validation scores of the single-task baselines of ``config`` (trained once, on the
    sealed data) and the fastest baseline's seconds per epoch."""
    reference: Scores = {}
    per_epoch = []
    for task in (t for t in sealed.tasks if not t.auxiliary):
        result = train_baseline(config, sealed, task, baselines_folder(folder), report=report)
        reference[task.name] = result.validation[task.name]
        seconds = [log["seconds"] for log in result.history if log.get("seconds")]
        if seconds:
            per_epoch.append(statistics.median(seconds))
    usable = [
        f"{task}.{metric}"
        for task, metrics in reference.items()
        for metric, value in metrics.items()
        if reference_problem(value) is None
    ]
    if not usable:
        raise ConfigError(
            "auto: validation Δm is undefined: every baseline's validation metric is 0 or "
            "undefined, so no candidate can be compared (too few validation labels?)"
        )
    return reference, min(per_epoch, default=0.0)


def _space(
    config: Config,
    auto: AutoConfig,
    sealed: PreparedData,
    known: dict[str, Any] | None,
    report: Reporter,
) -> SearchSpace:
    """The search space; a resumed or joined study keeps the space it began with (and its
    groupings)."""
    names = [t.name for t in config.tasks]
    searches_groups = auto.groupings is None and (auto.arch is None or "groups" in auto.arch)
    if known is not None:
        groupings = [json.loads(label) for label in known["grouping"]]
    elif searches_groups:
        report("groupings: measuring task affinity (gradient cosines, short hard-sharing run)")
        groupings = measure_groupings(config, sealed)
    else:
        groupings = []
    space = build_space(auto, names, groupings)
    if known is not None and known != space.to_dict():
        raise ConfigError(
            "auto: the search space differs from the one the study began with "
            f"({AUTO_SETTINGS}); resume with the same auto section, or start a new study"
        )
    return space


def _run_workers(settings: SearchSettings, jobs: int, data: PreparedData, report: Reporter) -> None:
    """Search in this process (one job) or in ``jobs`` spawned processes sharing the study."""
    if jobs == 1:
        search(settings, 0, data=data, report=report)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=search, args=(settings, i), kwargs={"threads": threads})
        for i in range(jobs)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise RunError(f"auto: {len(failed)} of {jobs} search workers failed (exit {failed[0]})")


def write_leaderboard(rows: list[LeaderboardRow], path: Path) -> None:
    names = param_names(rows)
    frame = pd.DataFrame([row.to_csv(names) for row in rows])
    atomic_write_text(path, frame.to_csv(index=False))


def _final(
    config: Config,
    auto: AutoConfig,
    space: SearchSpace,
    study: optuna.Study,
    folder: Path,
    report: Reporter,
) -> FinalResult:
    best = best_trials(study, auto.top)
    if not best:
        raise RunError(f"auto: no trial finished with a validation Δm; see {folder / LEADERBOARD}")
    report(
        f"final stage: trials {', '.join(str(t.number) for t in best)} with seeds "
        f"{', '.join(map(str, auto.seeds))}"
    )
    chosen = candidates(config, space, [(t.number, dict(t.params)) for t in best], folder / FINAL)
    result = run_final(config, chosen, auto.seeds, folder / FINAL, report=report)
    write_final(result, folder / FINAL_REPORT)
    write_best(result, config, folder / BEST_CONFIG)
    mean = mean_std(result.validation(result.winner))[0]
    report(f"winner: trial {chosen[result.winner].trial} (validation Δm {mean:+.2f} %)")
    return result
