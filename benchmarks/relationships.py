"""Task relationships, verified: do task affinity (gradient cosine, TAG lookahead) and MTRL's
learned task covariance Ω recover planted task clusters, and does the ``groups`` model built
from the clusters found beat hard sharing?

Planted clusters (``planted``: 3 clusters × 3 regression tasks): for each seed s the generator
(``data.planted.seed``) and the training both use s. Each affinity measure is recorded during one
``hard`` run; the grouping search (:func:`polytask.relationships.best_groupings`) partitions the
affinity matrix into k = 3 groups and into its best-scoring k; the adjusted Rand index (ARI)
compares each partition with ``planted_clusters``. An ``mtrl`` run gives Ω, whose correlations go
through the same grouping search. Then ``hard`` and ``groups`` (the groups of the cosine affinity
at k = 3, or ``--group-by tag``) are trained and scored by Δm% against the seed's single-task
networks (``hard`` with one head: same trunk, budget and seed; the reference, Δm = 0).

Real data (``--datasets``: ``yeast``, ``qm9_small``, and ``census_kdd_3``, the census_kdd table
with income, never married and college degree; the example configs' budgets with ``hard``
sharing, epochs capped by ``--real-epochs``, training rows by ``--subsample``): affinity maps
and groupings from one run with the first seed; then, on every seed, ``hard`` and each candidate
grouping (:func:`candidates`: each measure's best-scoring grouping and ``--group-by``'s at each
k of ``--ks``) against the seed's single-task networks; per seed, the candidate with the best
validation Δm is "picked" (k chosen by validation) and scored on the test set.

Every finished step is written as JSON under ``OUTPUT/results/`` and skipped when found, so an
interrupted run continues and a second call with the same options only rebuilds the tables.
``--markdown FILE`` writes or replaces the generated section (``--section``) of FILE; another
planted setting (``--within``, ``--between``) goes to its own results folder and section.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/relationships.py --output runs/relationships \
        --markdown docs/relationships.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/relationships.py --between 0.5 --datasets '' \
        --output runs/relationships-between05 --markdown docs/relationships.md \
        --section planted-between-0.5
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one thread unless told otherwise, before torch loads
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import Section, machine, pm, table
from sklearn.metrics import adjusted_rand_score
from zoo import per_dataset, subsampled_source

from polytask.compare import with_seed
from polytask.config import Config, PlantedConfig, load_config, parse_config
from polytask.data.builtin import get_builtin
from polytask.data.builtin.planted import planted_clusters
from polytask.data.prepare import prepare_data
from polytask.evaluation.delta_m import delta_m, metric_directions
from polytask.experiment import run_experiment, train_baseline
from polytask.relationships import best_groupings, run_affinity
from polytask.relationships.grouping import Grouping, cluster_order, suggested
from polytask.results import mean_std
from polytask.rundir import RunDir
from polytask.training.checkpoint import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "configs"
METHODS = ("cosine", "tag")
PLANTED_MODEL: dict[str, Any] = {"trunk": [64, 32], "head": [16], "dropout": 0.0}
PLANTED_TRAINING: dict[str, Any] = {
    "batch_size": 128,
    "lr": 0.003,
    "early_stopping": {"patience": 5},
}
"""The budget of ``examples/configs/planted.yaml`` (its epochs: ``--epochs``)."""
SECTION = Section("relationships", "benchmarks/relationships.py")
HEADING = "## Generated results"

Log = Callable[[str], None]


# -- configs -----------------------------------------------------------------------------------
def planted_config(
    seed: int,
    rows: int,
    epochs: int,
    output: Path,
    within: float = 0.9,
    between: float = 0.0,
) -> Config:
    """The planted 3 × 3 clusters generated with ``seed`` (cosine ``within`` inside a cluster,
    ``between`` across) and trained with ``seed`` (``hard``)."""
    options = PlantedConfig(seed=seed, rows=rows, within=within, between=between)
    dataset = get_builtin("planted").with_options(options)
    raw = dataset.config(
        model={"arch": "hard", **PLANTED_MODEL},
        training={"epochs": epochs, **PLANTED_TRAINING},
        output_dir=str(output),
        name=f"planted-g{seed}",
    )
    return with_seed(parse_config(raw, source=f"planted seed {seed}"), seed)


CENSUS_THREE: dict[str, Any] = {
    "name": "census_kdd_3",
    "data": {"source": "census_kdd", "split": {"column": "split", "validation": 0.1}},
    # marital and tax-filer status give never_married away, education the college degree
    "features": {"drop": ["marital_stat", "instance_weight", "tax_filer_stat", "education"]},
    "tasks": [
        {"name": "income", "type": "binary", "target": "income", "positive": ">50K"},
        {"name": "never_married", "type": "binary", "target": "never_married", "positive": "yes"},
        {"name": "college", "type": "binary", "target": "college", "positive": "yes"},
    ],
    "model": {"arch": "hard", "trunk": [64, 32], "head": [16]},
    "training": {
        "epochs": 5,
        "batch_size": 1024,
        "lr": 0.002,
        "early_stopping": {"patience": 2},
    },
}
"""``census_kdd_3``: income, never married and college degree from one census_kdd table (the
example configs have two of them each); the examples' budget, with ``hard`` sharing."""


def real_config(
    dataset: str, epochs: int, output: Path, rows: int | None = None, log: Log = print
) -> Config:
    """The dataset's example config (or :data:`CENSUS_THREE`) with ``hard`` sharing, epochs
    capped at ``epochs`` and at most ``rows`` training rows (a seeded Parquet subsample)."""
    if dataset == CENSUS_THREE["name"]:
        config = parse_config(CENSUS_THREE, source=dataset)
    else:
        config = load_config(EXAMPLES / f"{dataset}.yaml")
    if config.model.arch != "hard":
        config = with_model(config, "hard", "hard")
        config = config.model_copy(update={"name": dataset})
    training = config.training.model_copy(update={"epochs": min(epochs, config.training.epochs)})
    data = config.data
    if rows is not None:
        source = subsampled_source(config, rows, output / "data", log)
        if source is not None:
            data = data.model_copy(update={"source": source})
    return config.model_copy(update={"training": training, "data": data, "output_dir": str(output)})


def with_model(config: Config, arch: str, suffix: str, **options: Any) -> Config:
    """``config`` with architecture ``arch`` (the trunk, head and dropout kept; another
    architecture's options left out), named ``<name>-<suffix>``."""
    model = config.model.model_dump()
    for key in config.model.options:
        model.pop(key)
    model.update(arch=arch, **options)
    raw = {**config.model_dump(), "model": model, "name": f"{config.name}-{suffix}"}
    return parse_config(raw, source=f"{config.name} {arch}")


def with_affinity(config: Config, method: str, every: int) -> Config:
    raw = config.model_dump(mode="json")
    raw["evaluation"]["affinity"] = {"method": method, "every": every, "mode": "features"}
    raw["name"] = f"{config.name}-{method}"
    return parse_config(raw, source=f"{config.name} affinity {method}")


# -- measurements ------------------------------------------------------------------------------
def measure_affinity(config: Config, method: str, every: int) -> dict[str, Any]:
    """One multi-task run recording ``method``; the run's mean affinity matrix."""
    result = run_experiment(with_affinity(config, method, every), baselines=False)
    found = run_affinity(result.multitask.history)
    if found is None:
        raise RuntimeError(f"{config.name}: no step measured the {method} affinity")
    names, matrix = found
    return {"tasks": names, "matrix": matrix.tolist(), "run_dir": str(result.run_dir)}


def learned_relationships(config: Config, strength: float) -> dict[str, Any]:
    """One ``mtrl`` run; Ω as correlations, read back from its ``task_relationships.csv``."""
    result = run_experiment(with_model(config, "mtrl", "mtrl", strength=strength), baselines=False)
    with RunDir(result.run_dir).task_relationships_csv.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return {
        "tasks": rows[0][1:],
        "matrix": [[float(v) for v in row[1:]] for row in rows[1:]],
        "run_dir": str(result.run_dir),
    }


def partition_labels(groups: Sequence[Sequence[str]], names: Sequence[str]) -> list[int]:
    """Each task's group index, in ``names`` order (every name must be in exactly one group)."""
    where = {name: i for i, group in enumerate(groups) for name in group}
    if sorted(where) != sorted(names) or sum(map(len, groups)) != len(names):
        raise ValueError(f"{groups} is not a partition of {list(names)}")
    return [where[name] for name in names]


def ari(found: Sequence[Sequence[str]], truth: Sequence[Sequence[str]]) -> float:
    """Adjusted Rand index between two partitions of the same task names."""
    names = sorted(name for group in truth for name in group)
    return float(
        adjusted_rand_score(partition_labels(truth, names), partition_labels(found, names))
    )


def recovery(
    measured: dict[str, Any], truth: Sequence[Sequence[str]], k: int | None
) -> dict[str, Any]:
    """The grouping of a measured matrix at ``k`` groups and at its best-scoring k, with the
    ARI of each against ``truth`` (``k`` None: the best-scoring k only)."""
    names = measured["tasks"]
    groupings = best_groupings(np.asarray(measured["matrix"], dtype=np.float64))
    best = suggested(groupings)
    record: dict[str, Any] = {
        "best_k": best.k,
        "best_groups": best.named(names),
        "best_ari": ari(best.named(names), truth) if truth else math.nan,
        "scores": {g.k: g.score for g in groupings},
        "by_k": {g.k: g.named(names) for g in groupings},
    }
    if k is not None:
        at_k = next(g for g in groupings if g.k == k)
        record.update(groups=at_k.named(names), ari=ari(at_k.named(names), truth))
    return record


def single_task(config: Config, folder: Path) -> dict[str, Any]:
    """The seed's single-task networks (``hard`` with one head), their test and validation
    metrics: the reference of Δm."""
    reference = with_model(config, "hard", "single")
    data = prepare_data(reference)
    results = {
        t.name: train_baseline(reference, data, t, folder / "baselines")
        for t in data.tasks
        if not t.auxiliary
    }
    return {
        "test": {name: r.test[name] for name, r in results.items()},
        "validation": {name: r.validation[name] for name, r in results.items()},
    }


def scored_run(config: Config, reference: dict[str, Any]) -> dict[str, Any]:
    """Train ``config`` (no baselines of its own) and score it against ``reference``."""
    result = run_experiment(config, baselines=False)
    tasks = [t for t in result.tasks if not t.auxiliary]
    directions = metric_directions(tasks)
    average = config.evaluation.delta_m
    return {
        "delta_m": delta_m(result.multitask.test, reference["test"], directions, average),
        "delta_m_validation": delta_m(
            result.multitask.validation, reference["validation"], directions, average
        ),
        "epochs": len(result.multitask.history),
        "run_dir": str(result.run_dir),
    }


def cached(
    path: Path, log: Log, compute: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """``compute(*args)`` saved as JSON at ``path``, or what ``path`` holds already."""
    if path.is_file():
        return json.loads(path.read_text())
    log(f"  {path.stem}")
    started = time.perf_counter()
    record = compute(*args)
    record["seconds"] = time.perf_counter() - started
    atomic_write_json(path, record)
    return record


# -- the two benchmarks ------------------------------------------------------------------------
def planted(
    seeds: Sequence[int],
    output: Path,
    *,
    rows: int = 4000,
    epochs: int = 10,
    every: int = 1,
    strength: float = 1e-3,
    group_by: str = "cosine",
    within: float = 0.9,
    between: float = 0.0,
    compare: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Per seed: ARI of each measure's grouping (k = 3 and best k), and (with ``compare``) Δm%
    of hard and groups against the single-task networks."""
    results: dict[str, Any] = {}
    # results of other cluster cosines go to their own folder (the default keeps "planted")
    default = (within, between) == (0.9, 0.0)
    setting = "planted" if default else f"planted-w{within:g}-b{between:g}"
    for seed in seeds:
        log(f"[{setting}] seed {seed}")
        folder = output / "results" / setting / f"seed{seed}"
        config = planted_config(seed, rows, epochs, output / "runs", within, between)
        assert config.data.planted is not None
        truth = planted_clusters(config.data.planted)
        k = len(truth)
        measured = {
            method: cached(
                folder / f"affinity-{method}.json", log, measure_affinity, config, method, every
            )
            for method in METHODS
        }
        measured["mtrl"] = cached(
            folder / "mtrl.json", log, learned_relationships, config, strength
        )
        found = {name: recovery(record, truth, k) for name, record in measured.items()}
        runs: dict[str, Any] = {}
        if compare:
            reference = cached(folder / "single.json", log, single_task, config, output)
            grouped = with_model(config, "groups", "groups", groups=found[group_by]["groups"])
            runs["hard"] = cached(folder / "hard.json", log, scored_run, config, reference)
            runs["groups"] = cached(folder / "groups.json", log, scored_run, grouped, reference)
        results[str(seed)] = {
            "truth": truth,
            "measured": measured,
            "found": found,
            "runs": runs,
            "grouped_by": group_by,
        }
    return results


def candidates(found: dict[str, Any], group_by: str, ks: Sequence[int]) -> dict[str, Any]:
    """The groupings to train: each measure's best-scoring one, then ``group_by``'s at each k
    of ``ks``; a partition already listed, or one group (hard sharing), is left out."""
    listed: dict[str, Any] = {}
    seen: set[frozenset[frozenset[str]]] = set()
    options = [(f"{m}-best", found[m]["best_groups"]) for m in METHODS]
    by_k = found[group_by]["by_k"]
    options += [(f"{group_by}-k{k}", by_k[k]) for k in ks if k in by_k]
    for key, groups in options:
        canonical = frozenset(frozenset(g) for g in groups)
        if len(groups) > 1 and canonical not in seen:
            seen.add(canonical)
            listed[key] = groups
    return listed


def real(
    dataset: str,
    seeds: Sequence[int],
    output: Path,
    *,
    epochs: int = 30,
    rows: int | None = None,
    every: int = 1,
    group_by: str = "cosine",
    ks: Sequence[int] = (2, 3, 4),
    log: Log = print,
) -> dict[str, Any]:
    """Affinity maps and groupings from one run (the first seed); then, on every seed, hard
    sharing and each candidate grouping (:func:`candidates`), Δm% against that seed's
    single-task networks; per seed, the candidate with the best validation Δm is "picked"."""
    folder = output / "results" / dataset
    base = real_config(dataset, epochs, output / "runs", rows, log)
    first = with_seed(base, seeds[0])
    log(f"[{dataset}] affinity (seed {seeds[0]})")
    measured = {
        method: cached(
            folder / f"affinity-{method}.json", log, measure_affinity, first, method, every
        )
        for method in METHODS
    }
    found = {name: recovery(record, [], None) for name, record in measured.items()}
    listed = candidates(found, group_by, ks)
    runs: dict[str, dict[str, Any]] = {"hard": {}, **{key: {} for key in listed}}
    for seed in seeds:
        log(f"[{dataset}] seed {seed}")
        config = with_seed(base, seed)
        reference = cached(folder / f"single-seed{seed}.json", log, single_task, config, output)
        runs["hard"][str(seed)] = cached(
            folder / f"hard-seed{seed}.json", log, scored_run, config, reference
        )
        for key, groups in listed.items():
            grouped = with_model(config, "groups", f"groups-{key}", groups=groups)
            runs[key][str(seed)] = cached(
                folder / f"groups-{key}-seed{seed}.json", log, scored_run, grouped, reference
            )
    return {
        "measured": measured,
        "found": found,
        "candidates": listed,
        "grouped_by": group_by,
        "runs": runs,
        "epochs": base.training.epochs,
        "rows": rows,
    }


def picked(runs: dict[str, dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Per seed, the run among ``keys`` with the highest validation Δm (its record, plus
    ``"picked"``: its key)."""
    seeds = list(runs[keys[0]])
    chosen = {}
    for seed in seeds:
        key = max(keys, key=lambda k: _finite(runs[k][seed]["delta_m_validation"]))
        chosen[seed] = {**runs[key][seed], "picked": key}
    return chosen


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


# -- tables ------------------------------------------------------------------------------------
def ari_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (measure, k rule): the ARI on every seed and its mean ± std."""
    seeds = list(results)
    rows = []
    for measure in (*METHODS, "mtrl"):
        for rule in ("k = 3", "best k"):
            key = "ari" if rule == "k = 3" else "best_ari"
            values = [results[s]["found"][measure][key] for s in seeds]
            ks = [results[s]["found"][measure]["best_k"] for s in seeds]
            rows.append(
                {
                    "measure": measure,
                    "rule": rule if rule == "k = 3" else f"best k ({', '.join(map(str, ks))})",
                    "ari": dict(zip(seeds, values, strict=True)),
                    "mean_std": mean_std(values),
                }
            )
    return rows


MEASURE_NAMES = {
    "cosine": "gradient cosine (features)",
    "tag": "TAG lookahead",
    "mtrl": "MTRL Ω correlations",
}


def ari_table(results: dict[str, Any]) -> str:
    seeds = list(results)
    header = ["measure", "groups", *(f"ARI seed {s}" for s in seeds), "mean ± std"]
    body = [
        [
            MEASURE_NAMES[row["measure"]],
            row["rule"],
            *(f"{row['ari'][s]:.3f}" for s in seeds),
            pm(row["mean_std"]),
        ]
        for row in ari_rows(results)
    ]
    return table(header, body, right=len(seeds) + 1)


def delta_table(runs: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str]) -> str:
    """Δm% per seed and mean ± std: single-task (the reference), then each labelled model."""
    seeds = list(next(iter(runs.values())))
    header = ["model", *(f"Δm% seed {s}" for s in seeds), "Δm% mean ± std", "val. Δm% mean"]
    body = [["single-task", *("0" for _ in seeds), "0 (reference)", "0"]]
    for name, per_seed in runs.items():
        test = [per_seed[s]["delta_m"] for s in seeds]
        validation = [per_seed[s]["delta_m_validation"] for s in seeds]
        body.append(
            [
                labels.get(name, name),
                *(_cell(per_seed[s]) for s in seeds),
                pm(mean_std(test), 2, sign=True),
                f"{mean_std(validation)[0]:+.2f}",
            ]
        )
    return table(header, body, right=len(seeds) + 2)


def _cell(record: dict[str, Any]) -> str:
    """A seed's test Δm%, with the model picked by validation where there was a choice."""
    text = f"{record['delta_m']:+.2f}"
    return f"{text} ({record['picked']})" if "picked" in record else text


def matrix_scale(matrix: np.ndarray) -> int:
    """The power of ten p such that the off-diagonal entries times 10^p show two digits
    (0 when the largest is at least 0.1; TAG's lookahead values are often ~1e-3)."""
    off = matrix[~np.eye(len(matrix), dtype=bool) & np.isfinite(matrix)]
    largest = float(np.abs(off).max()) if off.size else 0.0
    if largest == 0.0 or largest >= 0.1:
        return 0
    return math.ceil(-math.log10(largest))


def matrix_table(measured: dict[str, Any], grouping: Grouping | None = None) -> str:
    """The affinity matrix (row i: the task stepped on / first task; column j), tasks ordered by
    ``grouping``; scaled by 10^p (:func:`matrix_scale`, named in the corner cell) when small."""
    names = measured["tasks"]
    matrix = np.asarray(measured["matrix"], dtype=np.float64)
    power = matrix_scale(matrix)
    shown = matrix * 10.0**power
    order = cluster_order(grouping.groups) if grouping else list(range(len(names)))
    body = [
        [
            names[i],
            *("" if not math.isfinite(shown[i, j]) else f"{shown[i, j]:+.2f}" for j in order),
        ]
        for i in order
    ]
    corner = f"×10^{power}" if power else ""
    return table([corner, *(names[j] for j in order)], body, right=len(order))


def _groups_text(groups: Sequence[Sequence[str]]) -> str:
    return " ".join("{" + ", ".join(g) + "}" for g in groups)


def _best(measured: dict[str, Any]) -> Grouping:
    return suggested(best_groupings(np.asarray(measured["matrix"], dtype=np.float64)))


def scores_table(measured: dict[str, Any]) -> str:
    names = measured["tasks"]
    groupings = best_groupings(np.asarray(measured["matrix"], dtype=np.float64))
    body = [[str(g.k), f"{g.score:+.4g}", _groups_text(g.named(names))] for g in groupings]
    return table(["k", "score", "groups"], body, right=0)


def planted_markdown(results: dict[str, Any]) -> list[str]:
    seeds = list(results)
    first = results[seeds[0]]
    parts = [
        "### Planted clusters: recovery (adjusted Rand index against `planted_clusters`)",
        "",
        ari_table(results),
    ]
    missed = [
        f"- seed {seed}, {MEASURE_NAMES[measure]}, k = {len(found[groups])}{rule}: "
        f"{_groups_text(found[groups])}"
        for seed in seeds
        for measure, found in results[seed]["found"].items()
        for rule, groups, key in (("", "groups", "ari"), (" (best k)", "best_groups", "best_ari"))
        if found[key] < 1.0
    ]
    if missed:
        parts += ["", "Partitions that differ from the planted clusters:", "", *missed]
    else:
        parts += ["", "Every partition found (k = 3 and best k) equals the planted clusters."]
    if all(results[s]["runs"] for s in seeds):
        runs = {name: {s: results[s]["runs"][name] for s in seeds} for name in ("hard", "groups")}
        parts += [
            "",
            "### Planted clusters: groups vs hard sharing (Δm% against single-task, test set)",
            "",
            delta_table(runs, {"groups": f"groups (from {first['grouped_by']}, k = 3)"}),
        ]
    parts += ["", f"Affinity maps, seed {seeds[0]} (tasks ordered by the best-scoring grouping):"]
    for measure in (*METHODS, "mtrl"):
        measured = first["measured"][measure]
        parts += ["", f"{MEASURE_NAMES[measure]}:", "", matrix_table(measured, _best(measured))]
    return parts


def real_markdown(dataset: str, block: dict[str, Any], seeds: Sequence[str]) -> list[str]:
    parts = [f"### {dataset}", ""]
    for method in METHODS:
        measured = block["measured"][method]
        best = _best(measured)
        parts += [
            f"{MEASURE_NAMES[method]} (seed {seeds[0]}; best-scoring k = {best.k}):",
            "",
            scores_table(measured),
            "",
            matrix_table(measured, best),
            "",
        ]
    listed = block["candidates"]
    runs = {key: block["runs"][key] for key in ("hard", *listed)}
    labels = {key: f"groups {key} (k = {len(groups)})" for key, groups in listed.items()}
    if listed:
        runs["picked"] = picked(block["runs"], list(listed))
        labels["picked"] = "groups picked per seed by validation Δm"
    parts += [
        f"Δm% against single-task (test set; budget: epochs capped at {block['epochs']}"
        + (f", {block['rows']:,} training rows" if block.get("rows") else "")
        + "):",
        "",
        delta_table(runs, labels),
        "",
        "Candidate groupings (`<measure>-best`: the highest-scoring grouping of that affinity; "
        f"`{block['grouped_by']}-k<k>`: its best grouping into k groups; duplicates and the "
        "single group, which is `hard`, left out):",
        "",
        *(f"- {key}: {_groups_text(groups)}" for key, groups in listed.items()),
        "",
    ]
    return parts


def markdown(collected: dict[str, Any], command: str, meta: str, section: Section = SECTION) -> str:
    """The generated section (``section``'s markers); a second section (another name) holds
    the results of another setting in the same file."""
    title = HEADING if section == SECTION else f"{HEADING}: {section.name}"
    parts = [title, "", f"Regenerate: `{command}`", "", meta, ""]
    if "planted" in collected:
        parts += planted_markdown(collected["planted"])
        parts.append("")
    for dataset, block in collected.get("real", {}).items():
        parts += real_markdown(dataset, block, list(next(iter(block["runs"].values()))))
    return section.wrap("\n".join(parts))


def compute_seconds(record: Any) -> float:
    """The sum of every step's ``"seconds"`` in ``record`` (a picked run, which repeats a
    candidate's record, is not counted again)."""
    if isinstance(record, dict):
        own = record.get("seconds", 0.0) if "picked" not in record else 0.0
        return own + sum(compute_seconds(v) for k, v in record.items() if k != "seconds")
    if isinstance(record, list):
        return sum(compute_seconds(v) for v in record)
    return 0.0


# -- command line ------------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", type=int, default=6000, help="planted rows (all splits)")
    parser.add_argument("--epochs", type=int, default=30, help="planted epochs (early stopping)")
    parser.add_argument("--every", type=int, default=1, help="measure affinity every k steps")
    parser.add_argument("--strength", type=float, default=1e-3, help="mtrl penalty strength")
    parser.add_argument("--group-by", choices=METHODS, default="cosine")
    parser.add_argument(
        "--datasets", default="yeast,qm9_small,census_kdd_3", help="real data ('' for none)"
    )
    parser.add_argument("--real-epochs", type=int, default=30, help="cap on the real configs")
    parser.add_argument(
        "--subsample",
        default="census_kdd_3=30000",
        help="at most N training rows per named real dataset: 'census_kdd_3=30000,...'",
    )
    parser.add_argument("--ks", default="2,3,4", help="numbers of groups tried on real data")
    parser.add_argument("--skip-planted", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("runs/relationships"))
    parser.add_argument("--within", type=float, default=0.9, help="planted: cosine in a cluster")
    parser.add_argument("--between", type=float, default=0.0, help="planted: across clusters")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--section", default=SECTION.name, help="name of the generated section of --markdown"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seeds = [int(s) for s in _csv(args.seeds)]
    started = time.perf_counter()
    collected: dict[str, Any] = {}
    common = {"every": args.every, "group_by": args.group_by}
    subsample = per_dataset(args.subsample)
    if isinstance(subsample, int):
        subsample = {"*": subsample}
    if not args.skip_planted:
        collected["planted"] = planted(
            seeds,
            args.output,
            rows=args.rows,
            epochs=args.epochs,
            strength=args.strength,
            within=args.within,
            between=args.between,
            **common,
        )
        print(ari_table(collected["planted"]))
    collected["real"] = {}
    for dataset in _csv(args.datasets):
        collected["real"][dataset] = real(
            dataset,
            seeds,
            args.output,
            epochs=args.real_epochs,
            rows=subsample.get(dataset, subsample.get("*")) if subsample else None,
            ks=[int(k) for k in _csv(args.ks)],
            **common,
        )
    elapsed = time.perf_counter() - started
    print(f"finished in {elapsed:.0f} s ({machine()})")
    if args.markdown:
        command = SECTION.command(argv, prefix="OMP_NUM_THREADS=1 .venv/bin/python")
        meta = (
            f"Budget: planted {args.rows} rows (within {args.within:g}, between "
            f"{args.between:g}), at most {args.epochs} epochs (early stopping, "
            f"patience 5); "
            + (
                f"real data: the example configs' budgets with epochs capped at "
                f"{args.real_epochs}, training rows subsampled: {args.subsample or 'none'}; "
                if collected["real"]
                else "no real data; "
            )
            + f"affinity measured every {args.every} step(s), features mode for "
            f"the cosine; seeds {args.seeds}. Machine: {machine()}; the steps took "
            f"{compute_seconds(collected):.0f} s in all (wall time of each step when it ran; "
            f"this call {elapsed:.0f} s, steps found on disk are not re-run)."
        )
        section = Section(args.section, SECTION.script)
        section.write(args.markdown, markdown(collected, command, meta, section))
        print(f"section written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
