"""One self-contained HTML page for a training run or a ``polytask auto`` study folder.

The page holds tables, the config and every PNG of the folder inline (``data:`` URIs) with a
small inline style sheet: it opens offline, from anywhere, and nothing is fetched. Every text read
from a file is escaped. A file that cannot be read (corrupt JSON or CSV, a PNG that does not
decode) is left out with a visible warning on the page and a Python warning naming it; the rest
is still rendered. Numbers are shown with 4 significant digits, and an undefined value (``null``,
NaN, an empty cell) as "—".

Reading a folder needs neither torch nor matplotlib: the metrics are read as plain JSON.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import secrets
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from polytask.errors import ConfigError, RunError
from polytask.rundir import (
    AUTO_SETTINGS,
    BEST_CONFIG,
    CONFIG,
    FAILED,
    FINAL_REPORT,
    LEADERBOARD,
    METRICS,
    REPORT,
)

DASH = "—"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; }
.path { color: #666; font-family: monospace; }
.error { background: #fde8e8; border: 1px solid #e0a0a0; padding: 0.6em; }
.warning { background: #fff6dd; border: 1px solid #e0c870; padding: 0.6em; }
.note { background: #eef4fb; border: 1px solid #a8c4e0; padding: 0.6em; }
.helps { color: #176317; font-weight: bold; } .hurts { color: #a11; font-weight: bold; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-family: monospace; color: #555; }
"""


def write_report(folder: Path, output: Path | None = None) -> Path:
    """Render ``folder`` (a run or a study) and write the page, atomically, to ``output``
    (default ``folder/report.html``); the path written."""
    page = render_report(folder)
    path = Path(output) if output is not None else Path(folder) / REPORT
    try:
        _write_text_atomically(path, page)
    except OSError as exc:
        raise RunError(f"{path}: cannot write the report ({exc.strerror or exc})") from exc
    return path


def render_report(folder: Path) -> str:
    """The HTML page of ``folder``: a study when it holds ``leaderboard.csv`` or ``auto.json``,
    a run when it holds ``metrics.json`` or ``config.json``; ConfigError otherwise."""
    folder = Path(folder)
    if not folder.exists():
        raise ConfigError(f"{folder}: no such folder (expected a run or study folder)")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: is a file, not a run or study folder")
    page = _Page(folder)
    if (folder / LEADERBOARD).is_file() or (folder / AUTO_SETTINGS).is_file():
        _study(page)
    elif (folder / METRICS).is_file() or (folder / CONFIG).is_file():
        _run(page)
    else:
        raise ConfigError(
            f"{folder}: not a run or study folder: expected {METRICS}, {CONFIG}, {LEADERBOARD} "
            f"or {AUTO_SETTINGS}"
        )
    return page.html()


@dataclass
class _Page:
    """The page being built: a title, body parts (HTML) and the warnings about files."""

    folder: Path
    title: str = ""
    parts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, part: str) -> None:
        self.parts.append(part)

    def problem(self, message: str) -> None:
        """A file that could not be used: a warning on the page and a Python warning."""
        self.problems.append(message)
        warnings.warn(message, stacklevel=4)

    def read_json(self, name: str) -> Any | None:
        """The JSON in ``name``, or None (with a warning) when it cannot be read."""
        path = self.folder / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.problem(f"{path}: cannot be read as JSON ({_reason(exc)}); left out")
            return None

    def read_text(self, name: str) -> str | None:
        path = self.folder / name
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            self.problem(f"{path}: cannot be read ({_reason(exc)}); left out")
            return None

    def html(self) -> str:
        banners = "".join(f'<p class="warning">{_e(p)}</p>\n' for p in self.problems)
        return (
            "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{_e(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{_e(self.title)}</h1>\n"
            f"<p class='path'>{_e(str(self.folder.resolve()))}</p>\n"
            f"{banners}{''.join(self.parts)}</body>\n</html>\n"
        )


# -- a training run ---------------------------------------------------------------------------


def _run(page: _Page) -> None:
    folder = page.folder
    config = page.read_json(CONFIG) if (folder / CONFIG).is_file() else None
    name = config.get("name") if isinstance(config, dict) else None
    page.title = f"polytask run: {name if isinstance(name, str) else folder.name}"
    if (folder / FAILED).is_file():
        failed = page.read_json(FAILED)
        error = failed.get("error") if isinstance(failed, dict) else None
        page.add(f'<p class="error"><b>Training failed:</b> {_e(str(error or failed))}</p>\n')
    if (folder / METRICS).is_file():
        metrics = page.read_json(METRICS)
        if metrics is not None:
            _run_metrics(page, metrics)
    elif not (folder / FAILED).is_file():
        page.add(
            '<p class="note">Unfinished run: no metrics.json yet (still training, or stopped). '
            "<code>polytask train CONFIG --resume</code> continues it.</p>\n"
        )
    if config is not None:
        page.add(f"<h2>Config</h2>\n<pre>{_e(json.dumps(config, indent=2))}</pre>\n")
    _images(page)


def _run_metrics(page: _Page, metrics: Any) -> None:
    if not isinstance(metrics, dict):
        page.problem(f"{page.folder / METRICS}: not a JSON object; left out")
        return
    try:
        if "multitask" in metrics:
            _multitask_metrics(page, metrics)
        else:  # a single-task baseline's folder holds one model's result
            _model_metrics(page, metrics)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        page.problem(f"{page.folder / METRICS}: unexpected content ({_reason(exc)}); left out")


def _multitask_metrics(page: _Page, metrics: dict[str, Any]) -> None:
    model = metrics["multitask"]
    baselines = metrics.get("baselines") or {}
    changes = metrics.get("changes_test") or {}
    total = [b.get("parameters") for b in baselines.values()]
    seconds = [b.get("seconds") for b in baselines.values()]
    rows = [
        ["Δm% on test", _signed(metrics.get("delta_m_test")), ""],
        ["Δm% on validation", _signed(metrics.get("delta_m_validation")), ""],
        ["parameters", _count(model.get("parameters")), _count(_sum(total))],
        ["training time (s)", _number(model.get("seconds")), _number(_sum(seconds))],
        ["best epoch", _number(model.get("best_epoch")), ""],
        ["epochs trained", _number(len(model.get("history") or [])), ""],
    ]
    if not baselines:
        rows[0][2] = rows[1][2] = "no single-task baselines"
    page.add("<h2>Summary</h2>\n")
    page.add(_table(["", "multi-task", "single-task (all)"], rows, numeric_from=1))
    headers = ["task", "metric", "validation: single-task", "validation: multi-task"]
    headers += ["test: single-task", "test: multi-task", "test change %"]
    rows = []
    for name, auxiliary, metric_names in _tasks(metrics, model):
        baseline = baselines.get(name) or {}
        for metric in metric_names:
            rows.append(
                [
                    _e(f"{name} (auxiliary)" if auxiliary else name),
                    _e(metric),
                    _number(_get(baseline, "validation", name, metric)),
                    _number(_get(model, "validation", name, metric)),
                    _number(_get(baseline, "test", name, metric)),
                    _number(_get(model, "test", name, metric)),
                    _signed(_get(changes, name, metric)),
                ]
            )
    page.add("<h2>Metrics per task</h2>\n")
    page.add(
        "<p>Change %: the sign-corrected relative change of the multi-task model over the "
        "task's single-task baseline on test (positive is better); Δm% averages it over the "
        "main tasks.</p>\n"
    )
    page.add(_table(headers, rows, numeric_from=2))
    counts = metrics.get("label_counts") or {}
    if counts:
        tasks = list(dict.fromkeys(t for split in counts.values() for t in split))
        rows = [[_e(t), *[_number(counts[s].get(t)) for s in counts]] for t in tasks]
        page.add("<h2>Labelled rows</h2>\n")
        page.add(_table(["task", *counts], rows, numeric_from=1))


def _tasks(metrics: dict[str, Any], model: dict[str, Any]) -> list[tuple[str, bool, list[str]]]:
    """``(name, auxiliary, metric names)`` of each task, from the task descriptions or, failing
    them, from the multi-task model's test metrics."""
    tasks = metrics.get("tasks")
    if isinstance(tasks, list) and tasks:
        return [(t["name"], bool(t.get("auxiliary")), list(t["metrics"])) for t in tasks]
    return [(name, False, list(values)) for name, values in (model.get("test") or {}).items()]


def _model_metrics(page: _Page, metrics: dict[str, Any]) -> None:
    """A single-task baseline folder's ``metrics.json`` (one model's result)."""
    rows = [
        [_e(task), _e(metric), _number(value), _number(_get(metrics, "test", task, metric))]
        for task, values in metrics["validation"].items()
        for metric, value in values.items()
    ]
    page.add("<h2>Metrics</h2>\n")
    page.add(_table(["task", "metric", "validation", "test"], rows, numeric_from=2))
    rows = [
        ["parameters", _count(metrics.get("parameters"))],
        ["training time (s)", _number(metrics.get("seconds"))],
        ["best epoch", _number(metrics.get("best_epoch"))],
    ]
    page.add(_table(["", ""], rows, numeric_from=1))


# -- a study (polytask auto) ------------------------------------------------------------------


def _study(page: _Page) -> None:
    folder = page.folder
    auto = page.read_json(AUTO_SETTINGS) if (folder / AUTO_SETTINGS).is_file() else None
    study = auto.get("study") if isinstance(auto, dict) else None
    page.title = f"polytask auto study: {study if isinstance(study, str) else folder.name}"
    if isinstance(auto, dict):
        rows = [[_e(key), _value(value, pre=True)] for key, value in auto.items()]
        page.add("<h2>Study</h2>\n" + _table(["", ""], rows))
    elif auto is not None:
        page.problem(f"{folder / AUTO_SETTINGS}: not a JSON object; left out")
    if (folder / FINAL_REPORT).is_file():
        final = page.read_json(FINAL_REPORT)
        if final is not None:
            try:
                _final(page, final)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                page.problem(
                    f"{folder / FINAL_REPORT}: unexpected content ({_reason(exc)}); left out"
                )
    if (folder / LEADERBOARD).is_file():
        _leaderboard(page)
    if (folder / BEST_CONFIG).is_file():
        text = page.read_text(BEST_CONFIG)
        if text is not None:
            page.add(f"<h2>Best configuration ({BEST_CONFIG})</h2>\n<pre>{_e(text)}</pre>\n")
    _images(page)


def _final(page: _Page, final: Mapping[str, Any]) -> None:
    seeds = final.get("seeds") or []
    page.add(f"<h2>Final stage (seeds {_e(', '.join(map(str, seeds)))})</h2>\n")
    candidates = final.get("candidates") or []
    if candidates:
        rows = [
            [
                _value(c.get("trial")),
                _value(c.get("params")),
                _value(c.get("delta_m_validation")),
                _mean_std(c.get("delta_m_validation_mean_std")),
                _value(c.get("runs")),
            ]
            for c in candidates
        ]
        headers = ["trial", "parameters", "validation Δm% per seed", "mean ± std", "runs"]
        page.add("<h3>Candidates</h3>\n" + _table(headers, rows))
    winner = final.get("winner")
    if not winner:
        return
    page.add(f"<h3>Winner: trial {_value(winner.get('trial'))}</h3>\n")
    rows = [
        ["test Δm% per seed", _value(winner.get("delta_m_test"))],
        ["test Δm% mean ± std", _mean_std(winner.get("delta_m_test_mean_std"))],
    ]
    rows += [
        [_e(f"test {name}"), _mean_std(value)]
        for name, value in (winner.get("metrics_test_mean_std") or {}).items()
    ]
    shown = {"trial", "delta_m_test", "delta_m_test_mean_std", "metrics_test_mean_std", "tasks"}
    rows += [[_e(key), _value(value)] for key, value in winner.items() if key not in shown]
    page.add(_table(["", ""], rows, numeric_from=1))
    tasks = winner.get("tasks") or {}
    if tasks:
        first = ["mean", "std", "p_value", "verdict"]
        keys = [k for k in first if any(k in t for t in tasks.values())]
        keys += list(dict.fromkeys(k for t in tasks.values() for k in t if k not in first))
        rows = [[_e(name), *[_verdict_cell(t, k) for k in keys]] for name, t in tasks.items()]
        page.add(
            "<p>Each task's change (%) against its single-task baseline on the same seeds, "
            "and the paired test's verdict.</p>\n"
        )
        page.add(_table(["task", *keys], rows, numeric_from=1))


def _verdict_cell(task: Mapping[str, Any], key: str) -> str:
    value = task.get(key)
    if key == "verdict" and value in ("helps", "hurts"):
        return f'<span class="{value}">{_e(value)}</span>'
    return _value(value)


def _leaderboard(page: _Page) -> None:
    path = page.folder / LEADERBOARD
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, ValueError, csv.Error) as exc:
        page.problem(f"{path}: cannot be read as CSV ({_reason(exc)}); left out")
        return
    if not rows:
        page.problem(f"{path}: empty (no header); left out")
        return
    header, body = rows[0], rows[1:]
    bad = [i for i, row in enumerate(body, start=1) if len(row) != len(header)]
    if bad:
        page.problem(
            f"{path}: row {bad[0]} has a different number of cells than the header "
            f"({len(body[bad[0] - 1])} vs {len(header)}); left out"
        )
        return
    cells = [[_csv_cell(text) for text in row] for row in body]
    page.add(f"<h2>Leaderboard ({len(body)} trials)</h2>\n" + _table(header, cells))


# -- images ---------------------------------------------------------------------------------


def _images(page: _Page) -> None:
    """Every PNG of the folder, by name, inline; one that does not decode is left out with a
    note (hidden files, e.g. a figure being written, are skipped)."""
    paths = sorted(
        p for p in page.folder.glob("*.png") if p.is_file() and not p.name.startswith(".")
    )
    if not paths:
        return
    page.add("<h2>Figures</h2>\n")
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            problem: str | None = _reason(exc)
        else:
            problem = png_problem(raw)
        if problem is not None:
            page.problem(f"{path}: not a readable PNG image ({problem}); left out")
            continue
        data = base64.b64encode(raw).decode("ascii")
        page.add(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_e(path.name)}">'
            f"<figcaption>{_e(path.name)}</figcaption></figure>\n"
        )


def png_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a PNG image that decodes in full (Pillow), or None when it is."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format != "PNG":
                return f"not a PNG image ({image.format})"
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


# -- formatting -------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _number(value: Any, signed: bool = False) -> str:
    """A number with 4 significant digits (integers in full); "—" for None or NaN."""
    if value is None or isinstance(value, bool):
        return DASH if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if not isinstance(value, float):
        return _e(str(value))
    if math.isnan(value):
        return DASH
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"  # not "+0" or "-0"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _signed(value: Any) -> str:
    return _number(value, signed=True)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else DASH


def _sum(values: Sequence[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(numbers) if values and len(numbers) == len(values) else None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _mean_std(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        mean, std = value
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            return DASH
        return f"{_number(mean)} ± {_number(std)}"
    return _value(value)


def _value(value: Any, pre: bool = False) -> str:
    """Any JSON value as HTML: numbers formatted, lists of numbers comma-separated, objects as
    JSON (in a ``<pre>`` with ``pre``), text escaped."""
    if value is None or isinstance(value, bool | int | float):
        return _number(value)
    if isinstance(value, str):
        return _e(value)
    if isinstance(value, list) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return ", ".join(_value(v) for v in value) if value else DASH
    text = json.dumps(_rounded(value), indent=2 if pre else None, ensure_ascii=False)
    return f"<pre>{_e(text)}</pre>" if pre else f"<code>{_e(text)}</code>"


def _rounded(value: Any) -> Any:
    """``value`` with its floats at 4 significant digits (NaN and infinities as None)."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


_MISSING = {"", "nan", "none", "null", "na", "<na>"}


def _csv_cell(text: str) -> str:
    """A CSV cell: "—" when empty or NaN, numbers formatted, anything else escaped."""
    stripped = text.strip()
    if stripped.lower() in _MISSING:
        return DASH
    try:
        return str(int(stripped))
    except ValueError:
        pass
    try:
        return _number(float(stripped))
    except ValueError:
        return _e(text)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 99) -> str:
    """An HTML table; ``headers`` are plain text (escaped here; no header row when all are
    empty), the cells HTML already; cells from column ``numeric_from`` on are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers) if any(headers) else ""
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n" if head else f"<table>\n{body}</table>\n"


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).splitlines()[0]


def _write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a fresh file beside ``path`` and rename it over ``path``: a reader
    never sees half a page. (Like :func:`polytask.training.checkpoint.atomic_write_text`, which
    would import torch for a page that needs none.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
