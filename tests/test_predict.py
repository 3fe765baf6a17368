"""polytask.predict: a loaded run predicts and evaluates with the run alone (no trainer)."""

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polytask.config import parse_config
from polytask.data import streaming
from polytask.data.features import DataWarning
from polytask.errors import DataError
from polytask.experiment import run_experiment
from polytask.inference import evaluate
from polytask.predict import LoadedRun, load_run
from polytask.training import trainer

from .conftest import config_dict, synthetic_frame
from .test_cli import assert_clean_error, run_cli


def test_a_loaded_run_needs_no_trainer(monkeypatch, table, tmp_path):
    quick = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
    config = parse_config(config_dict(str(table), output_dir=str(tmp_path), training=quick))
    run_dir = run_experiment(config, baselines=False).run_dir

    def no_trainer(*args, **kwargs):
        raise AssertionError("inference built a Trainer")

    monkeypatch.setattr(trainer.Trainer, "__init__", no_trainer)
    run = load_run(run_dir)
    frame = pd.read_csv(table)
    predictions = run.predict(frame, "table")
    assert len(predictions) == len(frame) and "clicked_proba" in predictions.columns
    metrics = run.evaluate(frame, "table")
    assert metrics == evaluate(run.model, run.tasks, run.encode(frame, "table")).metrics
    assert metrics["spend"]["rmse"] == pytest.approx(
        ((predictions["spend"] - frame["spend"]) ** 2).mean() ** 0.5, rel=1e-4
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A one-epoch run on the synthetic table."""
    folder = tmp_path_factory.mktemp("finished")
    table = folder / "table.csv"
    synthetic_frame().to_csv(table, index=False)
    quick = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
    config = config_dict(str(table), output_dir=str(folder / "runs"), training=quick)
    return run_experiment(parse_config(config), baselines=False).run_dir


def _parquet_folder(folder: Path) -> tuple[Path, pd.DataFrame]:
    """New rows in three Parquet files of uneven sizes (small row groups), with an integer
    ``id`` column missing in one row of the second file only (pandas reads the whole table's
    as floats), and a marker file that is skipped; the table as pandas reads it."""
    frame = synthetic_frame(150, seed=7)
    ids = pa.array([None if i == 100 else i for i in range(150)], pa.int64())
    folder.mkdir()
    for name, rows in (("a", slice(0, 90)), ("b", slice(90, 130)), ("c", slice(130, 150))):
        table = pa.Table.from_pandas(frame.iloc[rows], preserve_index=False)
        table = table.append_column("id", ids[rows.start : rows.stop])
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=25)
    (folder / "_SUCCESS").write_text("")
    whole = pd.concat([pd.read_parquet(folder / f"{n}.parquet") for n in "abc"])
    return folder, whole.reset_index(drop=True)


def test_a_parquet_folder_is_predicted_batch_by_batch_as_in_memory(
    finished, tmp_path, monkeypatch, capsys
):
    folder, whole = _parquet_folder(tmp_path / "new")
    monkeypatch.setattr(streaming, "READ_ROWS", 16)  # several record batches per row group
    sizes = []
    predict = LoadedRun.predict

    def recording(self, frame, source="data", keep=()):
        sizes.append(len(frame))
        return predict(self, frame, source, keep)

    monkeypatch.setattr(LoadedRun, "predict", recording)
    for out in (tmp_path / "p.csv", tmp_path / "p.parquet"):
        code, stdout, err = run_cli(
            monkeypatch, capsys, "predict", finished, folder, "-o", out, "--keep", "id"
        )
        assert code == 0, err
        assert "150 predictions for 3 tasks" in " ".join(stdout.split())
    assert max(sizes) <= 16 and sum(sizes) == 300  # never the whole table at once
    sizes.clear()
    expected = recording(load_run(finished), whole, "whole", keep=["id"])
    # equal up to float32 rounding (the forward passes see batches of other sizes)
    options = {"check_exact": False, "rtol": 1e-5, "atol": 1e-6}
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), expected, **options)
    options["check_dtype"] = False  # CSV reads float32 probabilities back as float64
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.csv"), expected, **options)
    ids = [line.split(",")[0] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert whole["id"].dtype == "float64"  # so every streamed batch's ids are floats too
    assert ids[:3] == ["0.0", "1.0", "2.0"] and ids[100] == "" and len(ids) == 150
    streamed = load_run(finished).evaluate_parquet(str(folder))
    memory = load_run(finished).evaluate(whole, "whole")
    assert streamed.keys() == memory.keys()
    for task, values in memory.items():
        assert streamed[task] == pytest.approx(values, rel=1e-6, nan_ok=True)
    code, stdout, err = run_cli(monkeypatch, capsys, "evaluate", finished, folder / "b.parquet")
    assert code == 0 and "Metrics on" in stdout, err


def test_bad_parquet_input_to_predict_is_one_line_and_writes_nothing(
    finished, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "p.csv"
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "predict", finished, tmp_path / "empty", "-o", out)
    assert_clean_error(code, err, "empty: the folder holds no Parquet file")
    folder, _ = _parquet_folder(tmp_path / "mixed")
    (folder / "d.csv").write_text("x1,x2\n1,2\n")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", finished, folder)
    assert_clean_error(code, err, "d.csv: not a Parquet file, in the folder", "mixed")
    (folder / "d.csv").unlink()
    code, _, err = run_cli(monkeypatch, capsys, "predict", finished, folder, "-o", out)
    assert code == 0, err
    before = out.read_text()
    lacking = tmp_path / "lacking"
    lacking.mkdir()
    synthetic_frame(30).drop(columns=["x2"]).to_parquet(lacking / "only.parquet")
    code, _, err = run_cli(monkeypatch, capsys, "predict", finished, lacking, "-o", out)
    assert_clean_error(code, err, "only.parquet: feature column 'x2' is missing")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", finished, lacking / "only.parquet")
    assert_clean_error(code, err, "only.parquet: feature column 'x2' is missing")
    code, _, err = run_cli(
        monkeypatch, capsys, "predict", finished, folder, "-o", out, "--keep", "ids"
    )
    assert_clean_error(code, err, "--keep:", "has no column 'ids'", "did you mean 'id'")
    synthetic_frame(30).iloc[:0].to_parquet(tmp_path / "none.parquet")
    code, _, err = run_cli(monkeypatch, capsys, "predict", finished, tmp_path / "none.parquet",
                           "-o", out)  # fmt: skip
    assert_clean_error(code, err, "none.parquet: the table is empty")
    assert out.read_text() == before  # nothing already written is lost
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_streamed_warnings_and_errors_name_the_file_and_its_rows(finished, tmp_path):
    frame = synthetic_frame(40, seed=3)
    frame.loc[[5, 30], "colour"] = "purple"
    frame.to_parquet(tmp_path / "new.parquet", row_group_size=20)
    with pytest.warns(DataWarning) as found:
        load_run(finished).predict_parquet(str(tmp_path / "new.parquet"), tmp_path / "p.csv")
    messages = sorted(str(w.message) for w in found)
    assert len(messages) == 2 and "new.parquet (rows 1-20): column 'colour': 1 row" in messages[0]
    assert "new.parquet (rows 21-40): column 'colour': 1 row" in messages[1]
    frame.loc[33, "x1"] = float("inf")
    frame.to_parquet(tmp_path / "bad.parquet", row_group_size=20)
    with (
        pytest.warns(DataWarning, match="rows 1-20"),
        pytest.raises(DataError, match=r"bad.parquet \(rows 21-40\): .*'x1' row 34"),
    ):
        load_run(finished).predict_parquet(str(tmp_path / "bad.parquet"), tmp_path / "p.csv")
