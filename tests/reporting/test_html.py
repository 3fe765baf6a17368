"""``polytask report``: one self-contained HTML page for a run or a study; every image inline and
decodable, every text escaped, undefined values shown as "—", bad folders one clear line."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import pytest
import yaml
from PIL import Image

from polytask.errors import ConfigError
from polytask.reporting.html import png_problem, render_report, write_report

from ..conftest import config_dict, synthetic_frame
from ..test_cli import assert_clean_error, run_cli, train_through_cli
from ..test_lazy_imports import heavy_after

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCRIPT = "<script>alert(1)</script>"


class Page(HTMLParser):
    """What a page holds: its tags, the image sources, every src/href, the table cells' text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def decoded_images(page: Page) -> list[bytes]:
    """Every image's bytes, each checked to be an inline PNG that Pillow decodes."""
    images = []
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:60]
        raw = base64.b64decode(src[len(prefix) :], validate=True)
        Image.open(io.BytesIO(raw)).verify()
        with Image.open(io.BytesIO(raw)) as image:
            image.load()  # verify() checks the chunks; load() decodes the pixels
        images.append(raw)
    return images


def assert_offline(text: str, page: Page) -> None:
    assert not [link for link in page.links if not link.startswith("data:")], page.links
    assert "http://" not in text and "https://" not in text


def small_png(path: Path, value: float) -> Path:
    fig, ax = plt.subplots(figsize=(1.5, 1))
    ax.plot([0, 1], [0, value])
    fig.savefig(path, dpi=30)
    plt.close(fig)
    return path


@pytest.fixture(scope="module")
def run_once(tmp_path_factory) -> Path:
    """One finished 2-epoch run with baselines (each test gets its own copy)."""
    folder = tmp_path_factory.mktemp("run")
    table = folder / "table.csv"
    synthetic_frame(n=160).to_csv(table, index=False)
    raw = config_dict(str(table), output_dir=str(folder / "runs"))
    raw["training"]["epochs"] = 2
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    train_through_cli(config)
    return folder / "runs" / "synthetic"


@pytest.fixture
def run(run_once, tmp_path) -> Path:
    copy = tmp_path / "synthetic"
    shutil.copytree(run_once, copy)
    return copy


def test_a_run_page_is_self_contained_and_shows_its_metrics_and_every_figure(run):
    path = write_report(run)
    assert path == run / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    pngs = sorted(run.glob("*.png"))
    assert pngs  # loss_curves.png at least
    images = decoded_images(page)
    assert len(images) == len(pngs)
    assert images == [p.read_bytes() for p in pngs]  # in name order, byte for byte
    assert_offline(text, page)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "clicked" in page.cells and "rmse" in page.cells
    auc = metrics["multitask"]["test"]["clicked"]["auc"]
    assert f"{auc:.4g}" in page.cells
    baseline_auc = metrics["baselines"]["clicked"]["validation"]["clicked"]["auc"]
    assert f"{baseline_auc:.4g}" in page.cells
    assert f"{metrics['delta_m_test']:+.4g}" in page.cells
    assert f"{metrics['multitask']['parameters']:,}" in page.cells
    assert "&quot;name&quot;: &quot;synthetic&quot;" in text  # the config
    assert not any(cell.lower() == "nan" for cell in page.cells)


def test_an_unfinished_run_gets_a_note_and_still_shows_its_config_and_figures(run):
    (run / "metrics.json").unlink()
    text = render_report(run)
    page = Page(text)
    assert "Unfinished run" in text
    assert "&quot;epochs&quot;: 2" in text
    assert len(decoded_images(page)) == len(list(run.glob("*.png")))


def test_a_failed_run_shows_the_error_as_a_banner_escaped(run):
    (run / "metrics.json").unlink()
    (run / "failed.json").write_text(json.dumps({"error": f"loss is NaN {SCRIPT}"}))
    text = render_report(run)
    assert "Training failed" in text
    assert "loss is NaN &lt;script&gt;" in text
    assert "script" not in Page(text).tags
    assert "Unfinished run" not in text


def test_a_task_name_with_markup_is_escaped(tmp_path):
    metrics = {
        "tasks": [{"name": SCRIPT, "metrics": ["auc"], "auxiliary": False}],
        "multitask": {
            "validation": {SCRIPT: {"auc": 0.5}},
            "test": {SCRIPT: {"auc": None}},
            "parameters": 10,
            "seconds": 1.0,
            "best_epoch": 1,
            "history": [],
        },
        "baselines": {},
        "label_counts": {},
        "delta_m_test": None,
        "delta_m_validation": None,
        "changes_test": {},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    text = render_report(tmp_path)
    page = Page(text)
    assert "script" not in page.tags
    assert SCRIPT in page.cells  # shown as text
    assert "&lt;script&gt;" in text
    assert "nan" not in [c.lower() for c in page.cells] and "—" in page.cells


def study_folder(folder: Path) -> Path:
    """A study folder as ``polytask auto`` writes it, by hand: undefined values included."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "auto.json").write_text(
        json.dumps(
            {
                "config": "yeast.yaml",
                "study": "yeast-auto",
                "storage": "sqlite:///runs/yeast-auto/study.db",
                "trials": 3,
                "space": {"arch": ["hard", "mmoe"], "lr": [1e-4, 1e-2]},
                "seed": 0,
            }
        )
    )
    with open(folder / "leaderboard.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["trial", "state", "delta_m_validation", "epochs", "seconds", "param.arch", "note"]
        )
        writer.writerow([17, "COMPLETE", 2.345678, 8, 12.5, "mmoe", ""])
        writer.writerow([23, "PRUNED", -1.5, 2, 3.25, "hard", "pruned at epoch 2"])
        writer.writerow([42, "FAIL", "nan", "", "", "hard", SCRIPT])
    final = {
        "seeds": [0, 1, 2],
        "candidates": [
            {
                "trial": 17,
                "params": {"arch": "mmoe", "lr": 0.00123456789},
                "delta_m_validation": [2.5, None, 1.5],
                "delta_m_validation_mean_std": [2.0, 0.7071],
                "runs": ["runs/a", "runs/b", "runs/c"],
            }
        ],
        "winner": {
            "trial": 17,
            "delta_m_test": [1.0, 2.0, 3.0],
            "delta_m_test_mean_std": [2.0, 1.0],
            "metrics_test_mean_std": {"clicked.auc": [0.81234, 0.01]},
            "test": "two-sided one-sample t-test",
            "alpha": 0.05,
            "tasks": {
                "clicked": {"mean": 3.1, "std": 0.5, "p_value": 0.0123, "verdict": "helps"},
                "spend": {"mean": None, "std": None, "p_value": None, "verdict": "no verdict"},
            },
        },
    }
    (folder / "final.json").write_text(json.dumps(final))
    (folder / "best.yaml").write_text("name: best\nbalancer: {name: famo}\n")
    small_png(folder / "importances.png", 1.0)
    small_png(folder / "history.png", 2.0)
    return folder


def test_a_study_page_shows_the_leaderboard_final_stage_and_every_figure(tmp_path):
    folder = study_folder(tmp_path / "study")
    text = write_report(folder).read_text(encoding="utf-8")
    page = Page(text)
    images = decoded_images(page)
    assert images == [(folder / n).read_bytes() for n in ("history.png", "importances.png")]
    assert_offline(text, page)
    assert {"17", "23", "42", "COMPLETE", "PRUNED", "pruned at epoch 2"} <= set(page.cells)
    assert "2.346" in page.cells and "-1.5" in page.cells  # 4 significant digits
    assert "—" in page.cells  # the NaN and empty leaderboard cells, the null p-value
    assert not any("nan" in cell.lower().split() for cell in page.cells)
    assert "2.5, —, 1.5" in page.cells  # a null seed in the candidates' Δm
    assert "2 ± 0.7071" in page.cells
    assert "0.8123 ± 0.01" in page.cells
    assert "helps" in page.cells and "0.0123" in page.cells
    assert "two-sided one-sample t-test" in page.cells and "0.05" in page.cells
    assert "balancer: {name: famo}" in text  # best.yaml
    assert "yeast-auto" in text and "sqlite:///runs/yeast-auto/study.db" in text
    assert "script" not in page.tags and SCRIPT in page.cells


def test_a_corrupt_png_is_left_out_with_a_note(tmp_path):
    folder = study_folder(tmp_path / "study")
    (folder / "broken.png").write_bytes(bytes(range(256)) * 4)
    good = (folder / "history.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning) as caught:
        text = render_report(folder)
    assert sorted(Path(str(w.message).split(":")[0]).name for w in caught) == [
        "broken.png",
        "truncated.png",
    ]
    page = Page(text)
    assert len(decoded_images(page)) == 2  # history, importances
    assert "broken.png: not a readable PNG image" in text
    assert "truncated.png: not a readable PNG image" in text


def test_png_check_accepts_matplotlib_figures_and_refuses_damaged_ones(tmp_path):
    raw = small_png(tmp_path / "a.png", 1.0).read_bytes()
    assert png_problem(raw) is None
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    damaged = {
        "another signature": b"GIF89a" + raw[6:],
        "a flipped byte": bytes(flipped),
        "cut short": raw[:40],
        "random bytes": bytes(range(256)) * 4,
    }
    for what, data in damaged.items():
        assert png_problem(data) is not None, what


def test_a_corrupt_json_is_named_and_the_rest_still_rendered(tmp_path):
    folder = study_folder(tmp_path / "study")
    (folder / "final.json").write_text("{not json")
    with pytest.warns(UserWarning, match="final.json: cannot be read as JSON"):
        text = render_report(folder)
    page = Page(text)
    assert "final.json: cannot be read as JSON" in text
    assert "17" in page.cells and len(page.images) == 2


def test_a_ragged_leaderboard_is_named(tmp_path):
    folder = study_folder(tmp_path / "study")
    with open(folder / "leaderboard.csv", "a") as handle:
        handle.write("99,COMPLETE\n")
    with pytest.warns(UserWarning, match="leaderboard.csv: row 4"):
        text = render_report(folder)
    assert "Leaderboard" not in text and "winner" in text.lower()


@pytest.mark.parametrize("kind", ["empty", "missing", "file"])
def test_a_folder_that_is_neither_run_nor_study_is_refused(tmp_path, kind):
    target = tmp_path / "somewhere"
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_text("x")
    with pytest.raises(ConfigError, match="somewhere"):
        render_report(target)
    if kind == "empty":
        with pytest.raises(ConfigError, match="expected metrics.json, config.json"):
            render_report(target)


def test_cli_report_writes_the_page_and_refuses_a_bad_folder(monkeypatch, capsys, tmp_path):
    folder = study_folder(tmp_path / "study")
    code, out, err = run_cli(monkeypatch, capsys, "report", folder)
    assert code == 0, err
    assert (folder / "report.html").is_file()
    assert "report.html" in out
    other = tmp_path / "elsewhere" / "page.html"
    code, out, err = run_cli(monkeypatch, capsys, "report", folder, "-o", other)
    assert code == 0, err
    assert len(Page(other.read_text(encoding="utf-8")).images) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "report", empty)
    assert_clean_error(code, err, str(empty), "not a run or study folder")
    code, _, err = run_cli(monkeypatch, capsys, "report", folder, "-o", tmp_path)
    assert_clean_error(code, err, "--output", "is a folder")


def test_rendering_a_page_imports_neither_torch_nor_matplotlib(tmp_path):
    folder = study_folder(tmp_path / "study")
    heavy, done = heavy_after(
        "from pathlib import Path\nfrom polytask.reporting.html import write_report\n"
        f"write_report(Path({str(folder)!r}))"
    )
    assert heavy == [], done.stderr
    assert (folder / "report.html").is_file()


def test_cli_report_names_a_file_it_left_out_in_one_warning_line(monkeypatch, capsys, tmp_path):
    folder = study_folder(tmp_path / "study")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, out, err = run_cli(monkeypatch, capsys, "report", folder)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:"), err
    assert "broken.png: not a readable PNG image" in lines[0]
    assert "report.html" in out
