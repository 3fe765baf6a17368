"""Peak memory and samples per second of ``data.streaming: true`` against the in-memory path.

The built-in census_kdd table (299,285 rows, 43 columns) is replicated to ``--rows`` rows in one
Parquet file (row groups of 100,000 rows; kept in ``--folder`` and reused). Each mode then runs
in a fresh process: prepare the data, then train the census_kdd config (library defaults:
model, optimizer, batch size 256) for ``--epochs`` epochs with its validation pass, on one torch
thread. Each process reports its peak resident memory (``VmHWM``), its resident memory once the
data are prepared, and its times. The split is by fractions (5 % validation, 5 % test) in both
modes: random in memory, by a hash of each row in streaming. Goals (issue 11): peak RSS under
1.5 GB streaming, throughput ≥ 0.8× the in-memory path. ``--markdown FILE`` writes or replaces
the "Streaming" section of FILE.

Run: .venv/bin/python benchmarks/streaming.py [--rows 3000000] [--epochs 1]
    [--folder /tmp/polytask-streaming-benchmark] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import Section, machine, table

SECTION = Section("streaming", "benchmarks/streaming.py")
MODES = ("in memory", "streaming")
GOAL_RSS_GB = 1.5
GOAL_RATIO = 0.8
ROW_GROUP = 100_000


def write_table(rows: int, folder: Path) -> Path:
    """census_kdd replicated to ``rows`` rows in ``folder/census_kdd_<rows>.parquet`` (reused
    when it is there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from polytask.data.builtin import get_builtin

    path = folder / f"census_kdd_{rows}.parquet"
    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    census = pa.Table.from_pandas(get_builtin("census_kdd").load(), preserve_index=False)
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, census.schema) as writer:
        for start in range(0, rows, len(census)):
            writer.write_table(census.slice(0, min(len(census), rows - start)), ROW_GROUP)
    partial.replace(path)
    return path


def census_config(path: Path, *, streaming: bool, epochs: int, output: Path) -> dict[str, Any]:
    """The built-in census_kdd config on the Parquet copy, split by fractions."""
    from polytask.data.builtin import get_builtin

    config = get_builtin("census_kdd").config()
    config["data"] = {
        "source": str(path),
        "split": {"validation": 0.05, "test": 0.05, "seed": 0},
        **({"streaming": True} if streaming else {}),
    }
    config["features"] = {**config["features"], "drop": [*config["features"]["drop"], "split"]}
    config["training"] = {"epochs": epochs, "seed": 0}
    config["output_dir"] = str(output)
    return config


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Prepare and train in this process; times, rows and memory."""
    import torch

    from polytask.config import parse_config
    from polytask.data import prepare_data
    from polytask.experiment import make_trainer

    torch.set_num_threads(1)
    parsed = parse_config(config)
    start = time.perf_counter()
    data = prepare_data(parsed)
    prepared = time.perf_counter()
    rss_prepared = _status("VmRSS")
    trainer = make_trainer(
        parsed, data, data.tasks, reference=None, progress=False, label="", checkpoint_dir=None
    )
    source = data.train_source(parsed.training.batch_size, "proportional", 1.0)
    history = trainer.fit(source, data.validation)
    done = time.perf_counter()
    rows = data.streamed.train_rows if data.streamed else len(next(iter(data.train.values())))
    return {
        "train_rows": rows,
        "validation_rows": len(data.validation),
        "epochs": len(history),
        "prepare_s": prepared - start,
        "train_s": done - prepared,
        "rss_prepared_gb": rss_prepared,
        "peak_rss_gb": _status("VmHWM"),
        "loss": history[-1].train_loss if history else math.nan,
    }


def _status(field: str) -> float:
    """A memory field of /proc/self/status, in GB (10⁹ bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return math.nan


def run_mode(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter (so each mode's peak memory is its own)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    configs: dict[str, dict[str, Any]],
    table: Path,
    runner: Callable[[dict[str, Any]], dict[str, Any]] = run_mode,
) -> dict[str, Any]:
    """Each mode's config (keys: :data:`MODES`) run by ``runner`` on the Parquet ``table``."""
    import pyarrow.parquet as pq

    results = {}
    for mode in MODES:
        results[mode] = runner(configs[mode])
        epochs = results[mode]["epochs"]
        for key in ("train", "total"):
            seconds = results[mode]["train_s"] + (
                results[mode]["prepare_s"] if key == "total" else 0.0
            )
            results[mode][f"{key}_rate"] = results[mode]["train_rows"] * epochs / seconds
    return {
        "rows": pq.ParquetFile(table).metadata.num_rows,
        "epochs": results["streaming"]["epochs"],
        "file_mb": table.stat().st_size / 1e6,
        "modes": results,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def census_kdd(rows: int, epochs: int, folder: Path) -> dict[str, Any]:
    """Both modes on census_kdd replicated to ``rows`` rows."""
    path = write_table(rows, folder)
    configs = {
        mode: census_config(
            path, streaming=mode == "streaming", epochs=epochs, output=folder / "runs"
        )
        for mode in MODES
    }
    return measure(configs, path)


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """Streaming / in memory: training and end-to-end throughput."""
    ours, theirs = result["modes"]["streaming"], result["modes"]["in memory"]
    return {key: ours[f"{key}_rate"] / theirs[f"{key}_rate"] for key in ("train", "total")}


def summary(result: dict[str, Any]) -> str:
    """The figures as plain lines, for the terminal."""
    lines = [f"census_kdd × {result['rows']:,} rows, {result['epochs']} epoch(s)"]
    for mode, r in result["modes"].items():
        lines.append(
            f"{mode:>9}: peak RSS {r['peak_rss_gb']:.2f} GB, prepare {r['prepare_s']:.1f} s, "
            f"train {r['train_s']:.1f} s, {r['train_rate']:,.0f} samples/s training, "
            f"{r['total_rate']:,.0f} samples/s end to end"
        )
    found = ratios(result)
    lines.append(
        f"streaming / in memory: {found['train']:.2f}× training, {found['total']:.2f}× end to end"
    )
    return "\n".join(lines)


def markdown(results: list[dict[str, Any]], command: str) -> str:
    """The section for one or more table sizes, markers included."""
    rows = []
    for result in results:
        found = ratios(result)
        for mode, r in result["modes"].items():
            ratio = f"{found['train']:.2f}× / {found['total']:.2f}×" if mode == "streaming" else ""
            rows.append(
                [
                    f"{result['rows']:,}",
                    mode,
                    f"{r['peak_rss_gb']:.2f}",
                    f"{r['rss_prepared_gb']:.2f}",
                    f"{r['prepare_s']:.1f}",
                    f"{r['train_s']:.1f}",
                    f"{r['train_rate']:,.0f}",
                    f"{r['total_rate']:,.0f}",
                    ratio,
                ]
            )
    first = results[-1]
    streaming = first["modes"]["streaming"]
    found = ratios(first)
    verdict = [
        f"peak RSS while streaming {streaming['peak_rss_gb']:.2f} GB "
        f"({'meets' if streaming['peak_rss_gb'] < GOAL_RSS_GB else 'misses'} the goal of "
        f"{GOAL_RSS_GB} GB)",
        f"training throughput {found['train']:.2f}× the in-memory path "
        f"({'meets' if found['train'] >= GOAL_RATIO else 'misses'} the goal of {GOAL_RATIO}×), "
        f"{found['total']:.2f}× end to end",
    ]
    return SECTION.wrap(
        "\n".join(
            [
                "## Streaming",
                "",
                f"Regenerate: `{command}`",
                "",
                "census_kdd replicated into one Parquet file (row groups of 100,000 rows; "
                f"{first['file_mb']:,.0f} MB for {first['rows']:,} rows), trained with the "
                "built-in census_kdd config (default model, batch size 256, Adam) for "
                f"{first['epochs']} epoch(s) with its validation pass, split 90/5/5 by "
                "fractions, one torch thread, each mode in a fresh process. Peak RSS: the "
                "process's `VmHWM`; RSS prepared: once the data are prepared. Samples/s: "
                "training rows × epochs / seconds, of training (`fit`) and end to end "
                f"(preparing included). Machine: {first['machine']}. Run of {first['date']}.",
                "",
                table(
                    [
                        "rows",
                        "mode",
                        "peak RSS (GB)",
                        "RSS prepared (GB)",
                        "prepare (s)",
                        "train (s)",
                        "samples/s training",
                        "samples/s end to end",
                        "streaming / in memory",
                    ],
                    rows,
                    right=7,
                ),
                "",
                f"At {first['rows']:,} rows: " + "; ".join(verdict) + ".",
            ]
        )
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[3_000_000])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--folder", type=Path, default=Path(tempfile.gettempdir()) / "polytask-streaming-benchmark"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="write/replace the section")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return []
    results = []
    for rows in sorted(args.rows):
        results.append(census_kdd(rows, args.epochs, args.folder))
        print(summary(results[-1]), flush=True)
    if args.markdown is not None:
        SECTION.write(args.markdown, markdown(results, SECTION.command(argv)))
        print(f"wrote {args.markdown}")
    return results


if __name__ == "__main__":
    main()
