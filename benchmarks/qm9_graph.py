"""QM9 as graphs: the Gilmer et al. MPNN (``model.encoder: {type: graph}``) on qm9_graph_small
against the descriptor MLP on qm9_small (the same molecules, targets and split rows), single-task
against hard sharing with equal weights and with balancers, over several seeds, on one short
budget for both inputs.

Both tables are subsampled to the same seeded ``--train-rows`` training molecules (validation
and test kept whole: 2,000 each); each input keeps its own model (graph: the MPNN of width
``--dim`` with a linear head per task, as in the published benchmarks; descriptors: the
qm9_small example's MLP) and both share the training budget (epochs, batch, learning rate, no
early stopping). The runs are those of ``benchmarks/zoo.py`` (single-task ``hard`` networks with
one head per seed as the Δm reference, then each balancer), written as JSON under
``OUTPUT/results/<dataset>/`` and skipped when present. "Graphs vs descriptors" scores each
graph run against the descriptor run of the same model, balancer and seed (Δm%, positive =
graphs better).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/qm9_graph.py --epochs 5 --train-rows 2000 \\
        --output runs/qm9-graph --markdown docs/benchmarks.md
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one thread unless told otherwise, before torch loads
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import zoo
from _report import Section, machine, pm, table

from polytask.config import Config, load_config, parse_config
from polytask.data.builtin import get_builtin
from polytask.evaluation.delta_m import delta_m
from polytask.results import mean_std

ROOT = Path(__file__).resolve().parents[1]
GRAPH, DESCRIPTORS = "qm9_graph_small", "qm9_small"
BALANCERS = ("ew", "famo", "nash_mtl")
SECTION = Section("qm9_graph", "benchmarks/qm9_graph.py")
HEADING = "## QM9 as graphs"
Log = Callable[[str], None]


def configs(
    epochs: int,
    batch_size: int,
    lr: float,
    dim: int,
    tasks: Sequence[str] | None = None,
    counts: bool = False,
) -> dict[str, Config]:
    """The graph and descriptor configs on one training budget (``tasks``: keep only these;
    ``counts``: the graph block joins the element counts to its readout)."""
    training = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": 0}
    encoder = {"type": "graph", "dim": dim, **({"counts": True} if counts else {})}
    graph_model = {"trunk": [dim], "head": [], "encoder": encoder}
    graph = get_builtin(GRAPH).config(model=graph_model, training=training)
    descriptors = load_config(ROOT / "examples" / "configs" / f"{DESCRIPTORS}.yaml")
    raw = {**descriptors.model_dump(mode="json", exclude_unset=True), "training": training}
    out = {}
    for name, mapping in ((GRAPH, graph), (DESCRIPTORS, raw)):
        if tasks is not None:
            mapping = {**mapping, "tasks": [t for t in mapping["tasks"] if t["name"] in tasks]}
        out[name] = parse_config(mapping, source=f"benchmark {name}")
    return out


def run(
    seeds: Sequence[int],
    output: Path,
    *,
    epochs: int,
    train_rows: int | None,
    batch_size: int = 64,
    lr: float = 1e-3,
    dim: int = 32,
    balancers: Sequence[str] = BALANCERS,
    tasks: Sequence[str] | None = None,
    counts: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Train every missing run and return :func:`collect`'s results."""
    output = Path(output)
    chosen = configs(epochs, batch_size, lr, dim, tasks, counts)
    for name, config in chosen.items():
        source = (
            zoo.subsampled_source(config, train_rows, output / "data", log) if train_rows else None
        )
        config = zoo.with_budget(config, None, source)
        zoo._run_dataset(config, name, ["hard"], balancers, seeds, output, log)
    return collect(output)


def collect(output: Path) -> dict[str, Any]:
    """The zoo's rows per input, plus the graph-vs-descriptor comparison."""
    collected = zoo.collect(output, [GRAPH, DESCRIPTORS])
    return {"inputs": collected, "versus": versus(Path(output) / "results")}


def versus(results: Path) -> list[dict[str, Any]]:
    """Per model: Δm% of the graph runs against the descriptor runs of the same seed."""
    rows = []
    for path in sorted((results / GRAPH).glob("*.json")):
        other = results / DESCRIPTORS / path.name
        if not other.is_file():
            continue
        graph, descriptors = json.loads(path.read_text()), json.loads(other.read_text())
        directions = {t["name"]: {t["metric"]: t["direction"]} for t in graph["tasks"]}
        main = {n: {m: graph["test"][n][m] for m in d} for n, d in directions.items()}
        base = {n: {m: descriptors["test"][n][m] for m in d} for n, d in directions.items()}
        model = "single-task" if "arch" not in graph else f"{graph['arch']} / {graph['balancer']}"
        better = sum(
            (main[n][m] > base[n][m]) if d[m] == "higher" else (main[n][m] < base[n][m])
            for n, d in directions.items()
            for m in d
        )
        rows.append(
            {
                "model": model,
                "seed": graph["seed"],
                "delta_m": delta_m(main, base, directions),
                "better": better,
                "tasks": len(directions),
            }
        )
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["model"], []).append(row)
    return [
        {
            "model": model,
            "seeds": sorted(r["seed"] for r in group),
            "delta_m": mean_std([r["delta_m"] for r in group]),
            "better": mean_std([float(r["better"]) for r in group]),
            "tasks": group[0]["tasks"],
        }
        for model, group in sorted(grouped.items(), key=lambda item: item[0] != "single-task")
    ]


def versus_table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "graphs vs descriptors Δm% ↑", "tasks better (of main metric)", "seeds"]
    body = [
        [
            r["model"],
            pm(r["delta_m"], 2, sign=True),
            f"{pm(r['better'], 1)} of {r['tasks']}",
            ",".join(map(str, r["seeds"])),
        ]
        for r in rows
    ]
    return table(header, body, right=2)


def markdown(collected: dict[str, Any], command: str, meta: str) -> str:
    parts = [HEADING, "", f"Regenerate: `{command}`", "", meta, ""]
    parts.append(
        "Rows as in the architecture zoo: the single-task networks (the Δm reference, per "
        "seed), then hard sharing with each balancer (`ew`: equal weights). The last table "
        "scores each graph run against the descriptor run of the same model and seed (MAE on "
        "the test split, main metric per task; positive = graphs better)."
    )
    for name, block in collected["inputs"].items():
        parts += ["", f"### {name}", "", zoo.dataset_table(name, block)]
    parts += ["", "### graphs vs descriptors", "", versus_table(collected["versus"])]
    return SECTION.wrap("\n".join(parts))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-rows", type=int, default=2000, help="0: all 10,000")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dim", type=int, default=32, help="the MPNN width (published: 64)")
    parser.add_argument("--balancers", default=",".join(BALANCERS))
    parser.add_argument("--tasks", default=None, help="keep only these tasks (comma-separated)")
    parser.add_argument(
        "--counts", action="store_true", help="the graph block joins element counts (not published)"
    )
    parser.add_argument("--output", type=Path, default=Path("runs/qm9-graph"))
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true", help="tables from existing JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    if args.report_only:
        collected = collect(args.output)
    else:
        collected = run(
            [int(s) for s in args.seeds.split(",")],
            args.output,
            epochs=args.epochs,
            train_rows=args.train_rows or None,
            batch_size=args.batch_size,
            lr=args.lr,
            dim=args.dim,
            balancers=[b for b in args.balancers.split(",") if b],
            tasks=args.tasks.split(",") if args.tasks else None,
            counts=args.counts,
        )
        print(f"finished in {time.perf_counter() - started:.0f} s ({machine()})")
    for name, block in collected["inputs"].items():
        print(f"\n{name}\n{zoo.dataset_table(name, block)}")
    print(f"\ngraphs vs descriptors\n{versus_table(collected['versus'])}")
    if args.markdown:
        command = SECTION.command(
            argv, prefix="OMP_NUM_THREADS=1 .venv/bin/python", drop=["--report-only"]
        )
        rows = f"{args.train_rows:,} training molecules" if args.train_rows else "all 10,000"
        meta = (
            f"Budget: {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g} (Adam), no "
            f"early stopping, {rows} (the same seeded ones for both inputs; validation and "
            f"test 2,000 each); MPNN width {args.dim}"
            f"{', element counts joined (counts: true)' if args.counts else ''}; "
            f"seeds {args.seeds}. "
            f"Machine: {machine()}. {_wall(collected)}"
        )
        SECTION.write(args.markdown, markdown(collected, command, meta))
        print(f"section written to {args.markdown}")
    return 0


def _wall(collected: dict[str, Any]) -> str:
    parts = []
    for name, block in collected["inputs"].items():
        per_epoch = [r["seconds_per_epoch"][0] for r in block["rows"] if r["arch"] == "hard"]
        if per_epoch:
            parts.append(f"{name}: hard {statistics.fmean(per_epoch):.2f} s / epoch")
    return "; ".join(parts) + "." if parts else ""


if __name__ == "__main__":
    sys.exit(main())
