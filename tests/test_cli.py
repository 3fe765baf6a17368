"""The command line end to end: training, prediction, evaluation, and every bad-input path
(one clear line on stderr, exit code 2, no traceback, nothing already written lost)."""

import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from polytask import cli

from .conftest import config_dict, synthetic_frame


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["polytask", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def train_through_cli(config: Path) -> None:
    """``polytask train CONFIG`` in this process, for a module-scoped fixture (no
    ``monkeypatch`` there); fails unless it exits 0."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["polytask", "train", str(config)])
        try:
            cli.main()
        except SystemExit as exc:
            assert not exc.code


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    """Exit code 2 and one ``error:`` line, last, after any one-line warnings."""
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    starts = [line.split(":", 1)[0] for line in lines]
    assert starts[-1:] == ["error"] and set(starts[:-1]) <= {"warning"}, err
    err = lines[-1]
    flat = " ".join(err.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, err)


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """One finished run shared by the tests below (each gets its own copy)."""
    folder = tmp_path_factory.mktemp("shared")
    table = folder / "table.csv"
    synthetic_frame().to_csv(table, index=False)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(str(table), output_dir=str(folder / "runs"))))
    train_through_cli(config)
    return folder / "runs" / "synthetic"


@pytest.fixture
def trained(trained_once, tmp_path):
    copy = tmp_path / "runs" / "synthetic"
    shutil.copytree(trained_once, copy)
    return copy


def test_train_writes_a_complete_run_and_reuses_baselines(
    monkeypatch, capsys, config_file, tmp_path
):
    code, _, err = run_cli(monkeypatch, capsys, "train", config_file)
    assert code == 0, err
    trained = tmp_path / "runs" / "synthetic"
    for name in (
        "config.json",
        "data.json",
        "model.safetensors",
        "metrics.json",
        "loss_curves.png",
    ):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"clicked", "segment", "spend"}
    assert math.isfinite(metrics["delta_m_test"])
    code, out, _ = run_cli(monkeypatch, capsys, "train", config_file)
    assert code == 0
    assert out.count("reused") == 3, out
    assert (trained.parent / "synthetic-2" / "metrics.json").is_file()


def test_predict_and_evaluate(monkeypatch, capsys, trained, table, tmp_path):
    out_csv = tmp_path / "pred.csv"
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", out_csv)
    assert code == 0, err
    predictions = pd.read_csv(out_csv)
    assert list(predictions.columns) == [
        "clicked",
        "clicked_proba",
        "segment",
        "segment_proba",
        "segment.proba.high",
        "segment.proba.low",
        "segment.proba.mid",
        "spend",
    ]
    assert set(predictions["clicked"]) <= {"yes", "no"}
    assert len(predictions) == len(synthetic_frame())
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", trained, table)
    assert code == 0, err
    assert "auc" in out and "rmse" in out


def test_no_baselines(monkeypatch, capsys, config_file, tmp_path):
    code, _out, err = run_cli(monkeypatch, capsys, "train", config_file, "--no-baselines")
    assert code == 0, err
    assert not (tmp_path / "runs" / "baselines").exists()


def write_config(tmp_path, raw) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_misspelt_key(monkeypatch, capsys, tmp_path, table):
    raw = config_dict(str(table))
    raw["training"]["bach_size"] = 8
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, "bad.yaml", "training.bach_size", "did you mean 'batch_size'")


def test_missing_column(monkeypatch, capsys, tmp_path, table):
    raw = config_dict(str(table))
    raw["tasks"][0]["target"] = "click"
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, "table.csv", "column 'click'", "did you mean 'clicked'")


def test_regression_target_not_numeric(monkeypatch, capsys, tmp_path):
    frame = synthetic_frame()
    frame["spend"] = frame["spend"].astype(object)
    frame.loc[7, "spend"] = "lots"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    code, _, err = run_cli(
        monkeypatch, capsys, "train", write_config(tmp_path, config_dict(str(path)))
    )
    assert_clean_error(code, err, "t.csv", "'spend' must be numeric", "'lots'")


def test_empty_table(monkeypatch, capsys, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    code, _, err = run_cli(
        monkeypatch, capsys, "train", write_config(tmp_path, config_dict(str(path)))
    )
    assert_clean_error(code, err, "empty.csv", "empty")


def test_infinite_feature(monkeypatch, capsys, tmp_path):
    frame = synthetic_frame()
    frame.loc[11, "x1"] = float("inf")
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    code, _, err = run_cli(
        monkeypatch, capsys, "train", write_config(tmp_path, config_dict(str(path)))
    )
    assert_clean_error(code, err, "t.csv", "numeric feature 'x1' row 12", "infinite")


def test_task_without_labels(monkeypatch, capsys, tmp_path):
    frame = synthetic_frame()
    frame["clicked"] = ""
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    code, _, err = run_cli(
        monkeypatch, capsys, "train", write_config(tmp_path, config_dict(str(path)))
    )
    assert_clean_error(code, err, "t.csv", "task 'clicked' has no labels at all")


def test_unseen_class_at_evaluation(monkeypatch, capsys, trained, tmp_path):
    frame = synthetic_frame(20)
    frame.loc[3, "segment"] = "ultra"
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", trained, path)
    assert_clean_error(code, err, "new.csv", "row 4", "'ultra'", "never saw")


def test_run_directory_missing(monkeypatch, capsys, table, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "nope", table)
    assert_clean_error(code, err, "nope", "no such run directory")


def test_corrupt_checkpoint(monkeypatch, capsys, trained, table, tmp_path):
    (trained / "model.safetensors").write_bytes(b"\x00garbage")
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", tmp_path / "p.csv")
    assert_clean_error(code, err, "model.safetensors", "cannot read")
    assert not (tmp_path / "p.csv").exists()


def test_failed_run_does_not_touch_earlier_results(monkeypatch, capsys, trained, tmp_path, table):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["tasks"][0]["target"] = "missing_column"
    code, _, _err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert code == 2
    after = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["synthetic"]  # no debris


def test_resume_without_unfinished_run(monkeypatch, capsys, trained, config_file):
    code, _, err = run_cli(monkeypatch, capsys, "train", config_file, "--resume")
    assert_clean_error(code, err, "no unfinished run")


def test_datasets_lists_builtins(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "datasets")
    assert code == 0
    assert "adult" in out and "penguins" in out


def test_copied_run_directory_still_predicts(monkeypatch, capsys, trained, table, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(trained, copy)
    code, _, err = run_cli(monkeypatch, capsys, "predict", copy, table, "-o", tmp_path / "p.csv")
    assert code == 0, err


def test_auxiliary_task_is_trained_but_not_counted(monkeypatch, capsys, tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["tasks"][2]["auxiliary"] = True
    code, out, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert code == 0, err
    metrics = json.loads((tmp_path / "runs" / "synthetic" / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"clicked", "segment"}
    assert set(metrics["changes_test"]) == {"clicked", "segment"}
    assert "spend" in metrics["multitask"]["test"]
    assert "spend (auxiliary)" in out


def test_params_mode_balancer_on_an_architecture_without_shared_parameters(
    monkeypatch, capsys, tmp_path, table
):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["model"]["arch"] = "soft"
    raw["balancer"] = {"name": "mgda", "mode": "params"}
    code, _, err = run_cli(
        monkeypatch, capsys, "train", write_config(tmp_path, raw), "--no-baselines"
    )
    assert_clean_error(code, err, "model.arch 'soft' shares none", "balancer.mode: features")
    assert not (tmp_path / "runs").exists()


def test_predict_reads_a_config_saved_before_typed_options(
    monkeypatch, capsys, trained, table, tmp_path
):
    """A run directory written before typed options (flat encoder section, ``positive: null``
    on every task) predicts as before."""
    from .test_config import OLD_RUN_CONFIG

    new_csv, old_csv = tmp_path / "new.csv", tmp_path / "old.csv"
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", new_csv)
    assert code == 0, err
    shutil.copy(OLD_RUN_CONFIG, trained / "config.json")
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", old_csv)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(old_csv), pd.read_csv(new_csv))


@pytest.mark.parametrize(
    ("section", "value", "fragments"),
    [
        ("model", {"arch": "mmoe", "expert": 2}, ("bad.yaml", "model.expert", "'experts'")),
        ("model", {"encoder": {"type": "cnn", "kernal": 3}}, ("model.encoder.kernal", "'kernel'")),
        ("balancer", {"name": "fam"}, ("balancer.name", "did you mean 'famo'")),
    ],
)
def test_option_typos_fail_before_any_folder(
    monkeypatch, capsys, tmp_path, table, section, value, fragments
):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw[section] = value
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, *fragments)


# -- issue 8: tracebacks, names, predictions -----------------------------------------------------


def test_predict_into_a_directory(monkeypatch, capsys, trained, table, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", tmp_path)
    assert_clean_error(code, err, f"--output {tmp_path}: is a folder", "give a file name")


def test_output_dir_that_is_a_file(monkeypatch, capsys, config_file, tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("keep me")
    code, _, err = run_cli(monkeypatch, capsys, "train", config_file, "-o", file)
    assert_clean_error(code, err, f"output_dir '{file}'", "is a file, not a folder")
    assert file.read_text() == "keep me"


def test_a_run_name_that_leaves_the_output_folder(monkeypatch, capsys, tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path / "out" / "runs"), name="../../escape")
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, "bad.yaml", "name:", "one plain folder name")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("trunk", "message"),
    [
        ([10**9, 10**9], "does not match"),  # 4 EB of weights: caught before any allocation
        ([10**12, 10**12], "cannot build the model of config.json"),  # too large to count
    ],
)
def test_absurd_layer_sizes_in_a_run_config(
    monkeypatch, capsys, trained, table, tmp_path, trunk, message
):
    config = json.loads((trained / "config.json").read_text())
    config["model"]["trunk"] = trunk
    (trained / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", tmp_path / "p.csv")
    assert_clean_error(code, err, "config.json", message)
    assert not (tmp_path / "p.csv").exists()


def test_a_model_that_cannot_be_built_is_a_run_error(monkeypatch, capsys, trained, table, tmp_path):
    from polytask import predict

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough")

    monkeypatch.setattr(predict, "build_network", no_memory)
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", tmp_path / "p.csv")
    assert_clean_error(code, err, f"{trained}", "cannot build the model", "not enough")
    assert not (tmp_path / "p.csv").exists()


def test_predict_keeps_the_named_columns(monkeypatch, capsys, trained, table, tmp_path):
    out_csv = tmp_path / "pred.csv"
    code, _, err = run_cli(
        monkeypatch, capsys, "predict", trained, table, "-o", out_csv, "--keep", "colour,x1"
    )
    assert code == 0, err
    predictions, frame = pd.read_csv(out_csv), synthetic_frame()
    assert list(predictions.columns[:3]) == ["colour", "x1", "clicked"]
    assert predictions["colour"].tolist() == frame["colour"].tolist()
    assert predictions["x1"].to_numpy() == pytest.approx(frame["x1"].to_numpy())


def test_predict_keep_of_a_missing_column(monkeypatch, capsys, trained, table, tmp_path):
    out_csv = tmp_path / "pred.csv"
    code, _, err = run_cli(
        monkeypatch, capsys, "predict", trained, table, "-o", out_csv, "--keep", "x1,colur"
    )
    assert_clean_error(code, err, "--keep", "'colur'", "did you mean 'colour'")
    assert not out_csv.exists()


def test_predict_keep_of_a_column_that_clashes_with_a_prediction(
    monkeypatch, capsys, trained, table, tmp_path
):
    code, _, err = run_cli(
        monkeypatch, capsys, "predict", trained, table, "-o", tmp_path / "p.csv", "--keep", "spend"
    )
    assert_clean_error(code, err, "--keep", "'spend'", "prediction column")


def test_multiclass_predictions_have_one_probability_per_class(
    monkeypatch, capsys, trained, table, tmp_path
):
    out_csv = tmp_path / "pred.csv"
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, table, "-o", out_csv)
    assert code == 0, err
    predictions = pd.read_csv(out_csv)
    per_class = [f"segment.proba.{c}" for c in ("high", "low", "mid")]
    assert set(per_class) <= set(predictions.columns)
    assert predictions[per_class].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert predictions["segment_proba"].to_numpy() == pytest.approx(
        predictions[per_class].max(axis=1).to_numpy()
    )
    best = predictions[per_class].to_numpy().argmax(axis=1)
    assert predictions["segment"].tolist() == [("high", "low", "mid")[i] for i in best]
    # binary: the probability of the positive class ("yes"), whatever the predicted label
    assert ((predictions["clicked_proba"] >= 0.5) == (predictions["clicked"] == "yes")).all()


def test_evaluate_without_any_label(monkeypatch, capsys, trained, tmp_path):
    path = tmp_path / "unlabelled.csv"
    synthetic_frame(20).drop(columns=["clicked", "segment", "spend"]).to_csv(path, index=False)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", trained, path)
    assert_clean_error(code, err, "unlabelled.csv", "no labels for any task")
    frame = synthetic_frame(20)
    frame[["clicked", "segment", "spend"]] = None  # the columns are there, every cell empty
    frame.to_csv(path, index=False)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", trained, path)
    assert_clean_error(code, err, "unlabelled.csv", "no labels for any task")


def test_an_unknown_data_source_suggests_a_builtin(monkeypatch, capsys, tmp_path):
    raw = config_dict("adlt")
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, "adlt", "did you mean 'adult'")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", [True, 2.5])
def test_epochs_must_be_an_integer(monkeypatch, capsys, tmp_path, table, value):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["training"]["epochs"] = value
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, "bad.yaml", "training.epochs", "integer")


@pytest.mark.parametrize("trunk", [[10**9, 10**9], [10**12, 10**12]])
def test_absurd_layer_sizes_in_a_training_config(monkeypatch, capsys, tmp_path, table, trunk):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["model"]["trunk"] = trunk
    code, _, err = run_cli(monkeypatch, capsys, "train", write_config(tmp_path, raw))
    assert_clean_error(code, err, "model:", "reduce model.trunk")
    assert not (tmp_path / "runs").exists()


def test_a_warning_is_one_line(monkeypatch, capsys, trained, table, tmp_path):
    frame = pd.read_csv(table)
    frame.loc[:2, "colour"] = "purple"  # a category never seen in training
    new = tmp_path / "new.csv"
    frame.to_csv(new, index=False)
    code, _, err = run_cli(monkeypatch, capsys, "predict", trained, new, "-o", tmp_path / "p.csv")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("warning:") and "column 'colour': 3 rows" in lines[0], err


def test_a_balancer_option_error_names_the_config_file(monkeypatch, capsys, tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["balancer"] = {"name": "pcgrad", "mode": "param"}
    path = write_config(tmp_path, raw)
    code, _, err = run_cli(monkeypatch, capsys, "train", path)
    assert_clean_error(code, err, f"{path}: balancer.mode", "'features' or 'params'")
    assert not (tmp_path / "runs").exists()


def seeds_config(tmp_path, table, epochs: int = 1) -> str:
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"))
    raw["training"]["epochs"] = epochs
    return write_config(tmp_path, raw)


def test_train_with_seeds_gives_each_task_a_paired_verdict(monkeypatch, capsys, tmp_path, table):
    from polytask.evaluation.verdict import paired_test

    config = seeds_config(tmp_path, table)
    md = tmp_path / "verdict.md"
    code, out, err = run_cli(
        monkeypatch, capsys, "train", config, "--seeds", "0, 1", "--markdown", md
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "runs" / "synthetic-seeds.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["alpha"] == 0.05
    assert set(saved["tasks"]) == {"clicked", "segment", "spend"}
    runs = [
        json.loads((tmp_path / "runs" / f"synthetic-seed{seed}" / "metrics.json").read_text())
        for seed in (0, 1)
    ]
    assert [r["run_dir"] for r in runs] == saved["runs"]
    for task, entry in saved["tasks"].items():
        # each seed's change is that seed's run against the same seed's baselines (its Δm term)
        per_seed = [r["changes_test"][task] for r in runs]
        expected = [sum(m.values()) / len(m) for m in per_seed]
        assert entry["changes"] == pytest.approx(expected)
        verdict = paired_test(expected)
        assert entry["verdict"] == verdict.outcome
        assert entry["p_value"] == pytest.approx(verdict.p_value)
        assert entry["mean"] == pytest.approx(sum(expected) / 2)
        assert f"{entry['mean']:+.2f} ± {entry['std']:.2f}" in out
        assert f"{task} | {expected[0]:+.2f} | {expected[1]:+.2f}" in md.read_text()
    assert saved["delta_m_test"] == pytest.approx([r["delta_m_test"] for r in runs])
    assert "Verdict per task: two-sided one-sample t-test" in " ".join(out.split())
    assert "seed 0: Δm% on test" in out and "seed 1: Δm% on test" in out
    assert "no verdict is possible" not in out


def test_train_with_one_seed_says_no_verdict_is_possible(monkeypatch, capsys, tmp_path, table):
    code, out, err = run_cli(
        monkeypatch, capsys, "train", seeds_config(tmp_path, table), "--seeds", "4"
    )
    assert code == 0, err
    assert "no verdict is possible" in " ".join(out.split())
    assert not any(word in out for word in ("Sharing h", "No clear difference", "clearly hurt"))
    saved = json.loads((tmp_path / "runs" / "synthetic-seeds.json").read_text())
    assert {entry["verdict"] for entry in saved["tasks"].values()} == {"no verdict"}
    assert all(entry["p_value"] is None for entry in saved["tasks"].values())


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--seeds", "0,a"], ["--seeds: 'a' is not an integer"]),
        (["--seeds", "1.5"], ["--seeds: '1.5' is not an integer"]),
        (["--seeds", ""], ["--seeds: give at least one integer seed"]),
        (["--seeds", " , "], ["--seeds: give at least one integer seed"]),
        (["--seeds", "0,1,0"], ["--seeds: 0 given more than once"]),
        (["--seeds", "0,1", "--resume"], ["--seeds cannot be combined with --resume"]),
        (["--seeds", "0,1", "--no-baselines"], ["--seeds needs the single-task baselines"]),
        (["--markdown", "out.md"], ["--markdown: only with --seeds"]),
    ],
)
def test_bad_seeds_fail_before_any_training(monkeypatch, capsys, tmp_path, table, args, fragments):
    code, _, err = run_cli(monkeypatch, capsys, "train", seeds_config(tmp_path, table), *args)
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "runs").exists()


def test_compare_reports_a_verdict_per_balancer_and_task(monkeypatch, capsys, tmp_path, table):
    md = tmp_path / "table.md"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "compare",
        seeds_config(tmp_path, table),
        "--balancers",
        "ew",
        "--seeds",
        "0,1",
        "--markdown",
        md,
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "runs" / "synthetic-comparison.json").read_text())
    verdicts = saved["ew"]["verdicts"]
    assert set(verdicts) == {"clicked", "segment", "spend"}
    flat = " ".join(out.split())
    assert "Change per task vs single-task, paired by seed (2 seeds)" in flat
    assert "Verdict per task: two-sided one-sample t-test" in flat
    for entry in verdicts.values():
        assert len(entry["changes"]) == 2
        assert entry["verdict"] in {"helps", "hurts", "no clear difference"}
        assert f"{entry['mean']:+.2f} ± {entry['std']:.2f}" in out
    lines = md.read_text().splitlines()
    assert lines[0].endswith("| verdict |")
    hurt = [task for task, entry in verdicts.items() if entry["verdict"] == "hurts"]
    ew_row = lines[3]
    assert ew_row.startswith("| ew |")
    assert ("hurts: " + ", ".join(hurt) in ew_row) if hurt else "hurts" not in ew_row


def test_compare_rejects_repeated_seeds(monkeypatch, capsys, tmp_path, table):
    code, _, err = run_cli(
        monkeypatch, capsys, "compare", seeds_config(tmp_path, table), "--seeds", "2,2"
    )
    assert_clean_error(code, err, "--seeds: 2 given more than once")
    assert not (tmp_path / "runs").exists()
