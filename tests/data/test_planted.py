"""The ``planted`` generator: realised cosines of the task weights, the documented target formula,
determinism, config validation, the CLI listing and one short training run."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from polytask.config import PlantedConfig, parse_config
from polytask.data import prepare_data
from polytask.data.builtin import BUILTIN_DATASETS, get_builtin, planted_clusters
from polytask.data.builtin.planted import SINES, generate_planted, planted_structure
from polytask.errors import ConfigError
from polytask.experiment import run_experiment

from ..test_cli import assert_clean_error, run_cli


def expected_cosines(options: PlantedConfig) -> np.ndarray:
    """The requested Gram matrix: 1 on the diagonal, within inside a cluster, between across."""
    cluster = np.repeat(np.arange(options.clusters), options.tasks_per_cluster)
    same = cluster[:, None] == cluster[None, :]
    cosines = np.where(same, options.within, options.between)
    np.fill_diagonal(cosines, 1.0)
    return cosines


@pytest.mark.parametrize(
    "options",
    [
        PlantedConfig(),
        PlantedConfig(clusters=4, tasks_per_cluster=2, within=0.8, between=-0.25, seed=3),
        PlantedConfig(clusters=3, tasks_per_cluster=2, within=0.6, between=-0.3, features=9),
        PlantedConfig(clusters=2, tasks_per_cluster=4, within=0.5, between=0.5, features=10),
        PlantedConfig(clusters=2, tasks_per_cluster=1, within=1.0, between=0.3),  # MMoE's pair
        PlantedConfig(clusters=1, tasks_per_cluster=5, within=0.0, seed=7),
    ],
)
def test_realised_cosines_match_the_request(options):
    structure = planted_structure(options)
    weights = structure.weights
    assert weights.shape == (options.clusters * options.tasks_per_cluster, options.features)
    norms = np.linalg.norm(weights, axis=1)
    cosines = weights @ weights.T / np.outer(norms, norms)
    np.testing.assert_allclose(cosines, expected_cosines(options), atol=1e-9)
    np.testing.assert_allclose(norms, 1.0, atol=1e-12)
    own_centre = np.repeat(structure.centres, options.tasks_per_cluster, axis=0)
    np.testing.assert_allclose((weights * own_centre).sum(1), np.sqrt(options.within), atol=1e-9)


def test_targets_follow_the_documented_formula():
    options = PlantedConfig(clusters=2, tasks_per_cluster=2, rows=400, features=7, noise=0.0)
    frame = generate_planted(options)
    structure = planted_structure(options)
    inputs = frame[[f"x{j}" for j in range(7)]].to_numpy()
    z = inputs @ structure.weights.T
    by_hand = z.copy()
    for alpha, beta in zip(structure.alphas, structure.betas, strict=True):
        by_hand += np.sin(alpha * z + beta)
    assert len(structure.alphas) == SINES
    assert list(frame.columns[7:]) == ["c0_t0", "c0_t1", "c1_t0", "c1_t1"]
    np.testing.assert_allclose(frame[structure.task_names].to_numpy(), by_hand, atol=1e-10)
    noisy = generate_planted(options.model_copy(update={"noise": 0.5}))
    residual = noisy[structure.task_names].to_numpy() - by_hand  # same inputs and weights
    assert residual.std() == pytest.approx(0.5, rel=0.05)
    assert np.abs(np.corrcoef(residual.T) - np.eye(4)).max() < 0.15  # independent per task


def test_target_correlations_carry_the_clusters():
    options = PlantedConfig(within=0.9, between=-0.3, rows=3000)
    targets = generate_planted(options)[[n for c in planted_clusters(options) for n in c]]
    correlation = np.corrcoef(targets.to_numpy().T)
    same = expected_cosines(options) == 0.9
    assert correlation[same].min() > 0.7
    assert correlation[~same & ~np.eye(9, dtype=bool)].max() < 0.0


def test_a_seed_reproduces_the_data_exactly():
    options = PlantedConfig(seed=5)
    pd.testing.assert_frame_equal(generate_planted(options), generate_planted(options))
    other = generate_planted(options.model_copy(update={"seed": 6}))
    assert not np.allclose(other.to_numpy(), generate_planted(options).to_numpy())
    more_rows = options.model_copy(update={"rows": 7000, "noise": 0.3})
    np.testing.assert_array_equal(
        planted_structure(options).weights, planted_structure(more_rows).weights
    )


def test_default_size_is_generated_fast():
    started = time.perf_counter()
    frame = generate_planted(PlantedConfig())
    assert time.perf_counter() - started < 1.0
    assert frame.shape == (6000, 20 + 9)
    assert not frame.isna().any().any()


def test_clusters_name_every_task_once():
    options = PlantedConfig(clusters=2, tasks_per_cluster=3, features=8)
    assert planted_clusters(options) == [["c0_t0", "c0_t1", "c0_t2"], ["c1_t0", "c1_t1", "c1_t2"]]
    dataset = get_builtin("planted").with_options(options)
    assert [t["name"] for t in dataset.tasks] == [n for c in planted_clusters(options) for n in c]
    assert {t["type"] for t in dataset.tasks} == {"regression"}


def test_builtin_config_is_ready_and_carries_the_options():
    dataset = get_builtin("planted")
    assert dataset.state == "generated" and dataset.rows() == 6000
    assert dataset.file is None and dataset.fetch is None
    options = PlantedConfig(clusters=2, tasks_per_cluster=2, rows=300, features=6, seed=4)
    config = parse_config(dataset.with_options(options).config())
    assert config.data.source == "planted" and config.data.planted == options
    data = prepare_data(config)
    assert [t.name for t in data.tasks] == ["c0_t0", "c0_t1", "c1_t0", "c1_t1"]
    assert len(data.preprocessor.numeric) == 6
    rows = sum(len(d) for d in data.train.values()) + len(data.validation) + len(data.test)
    assert rows == 300  # data.planted reached the generator


def test_example_config_matches_the_default_dataset():
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "configs" / "planted.yaml"
    raw = yaml.safe_load(path.read_text())
    config = parse_config(raw)
    assert config.data.planted == PlantedConfig()
    assert [t.name for t in config.tasks] == [t["name"] for t in BUILTIN_DATASETS["planted"].tasks]


def test_saved_form_without_planted_is_unchanged():
    raw = {"data": {"source": "adult"}, "tasks": [{"name": "income", "type": "binary"}]}
    assert "planted" not in parse_config(raw).model_dump(mode="json")["data"]
    raw = get_builtin("planted").config()
    dumped = parse_config(raw).model_dump(mode="json")
    assert dumped["data"]["planted"] == PlantedConfig().model_dump()
    assert parse_config(json.loads(json.dumps(dumped))) == parse_config(raw)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"source": "adult", "planted": {}}, "data.planted: options of the built-in 'planted'"),
        ({"planted": {"clusters": 2}}, "data.planted: options of the built-in 'planted'"),
        ({"source": "planted", "planted": {"between": 0.95}}, "data.planted.between: 0.95 cannot"),
        ({"source": "planted", "planted": {"between": -0.5}}, "[-0.45, 0.9]"),
        ({"source": "planted", "planted": {"within": -0.2}}, "data.planted.within: -0.2 is negat"),
        ({"source": "planted", "planted": {"within": 1.5}}, "data.planted.within: Input should"),
        ({"source": "planted", "planted": {"features": 11}}, "data.planted.features: 11 is too"),
        ({"source": "planted", "planted": {"noise": ".inf"}}, "noise: Input should be a finite"),
        ({"source": "planted", "planted": {"noise": -1}}, "data.planted.noise: Input should"),
        ({"source": "planted", "planted": {"rows": 2.5}}, "data.planted.rows: Input should be"),
        ({"source": "planted", "planted": {"clusters": True}}, "data.planted.clusters: Input"),
        ({"source": "planted", "planted": {"clusters": 0}}, "data.planted.clusters: Input"),
        ({"source": "planted", "planted": {"seed": -1}}, "data.planted.seed: Input should"),
        ({"source": "planted", "planted": {"cluster": 3}}, "did you mean 'clusters'"),
    ],
)
def test_bad_planted_options_are_one_line_naming_the_key(data, fragment):
    raw = {"data": data, "tasks": [{"name": "c0_t0", "type": "regression"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_load(yaml.safe_dump(raw).replace("'.inf'", ".inf")))
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_cli_reports_bad_options_and_lists_the_dataset(monkeypatch, capsys, tmp_path):
    raw = get_builtin("planted").config(output_dir=str(tmp_path / "runs"))
    raw["data"]["planted"]["between"] = 0.95
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "train", path)
    assert_clean_error(code, err, "data.planted.between: 0.95 cannot be realised")
    assert not (tmp_path / "runs").exists()

    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli(monkeypatch, capsys, "datasets")
    line = next(line for line in out.splitlines() if "planted" in line)
    assert code == 0
    assert "generated" in line and "6,000" in line and "9 tasks: c0_t0 … c2_t2" in line
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "fetch", "planted")
    assert code == 0 and "'planted' is generated by polytask; nothing to fetch" in out


def test_trains_end_to_end(tmp_path):
    options = PlantedConfig(clusters=2, tasks_per_cluster=2, rows=300, features=8, seed=1)
    raw = (
        get_builtin("planted")
        .with_options(options)
        .config(
            output_dir=str(tmp_path / "runs"),
            model={"trunk": [16], "head": [8]},
            training={"epochs": 2, "batch_size": 64, "lr": 0.01, "seed": 0},
        )
    )
    result = run_experiment(parse_config(raw), baselines=False)
    assert set(result.multitask.test) == {"c0_t0", "c0_t1", "c1_t0", "c1_t1"}
    assert all(np.isfinite(m["rmse"]) for m in result.multitask.test.values())
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["data"]["planted"] == options.model_dump()
