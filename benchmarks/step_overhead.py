"""Cost of one training step per balancing method, as a multiple of the equal-weight step.

Problem: a shared MLP trunk (256 → 3 × 512, ReLU) with T linear regression heads (MSE on random
targets), batch 256, one fixed batch. A step is ``zero_grad``, forward, the method's backward and
an SGD step; every case starts from the same initial weights. For each T the cases are warmed up,
then timed round-robin (a fresh random order every round) so machine noise hits all alike; the
ratio of a case is its step time divided by the equal-weight step timed in the same round, and the
table gives the median ratio over rounds (the spread table adds the quartiles and min/max).

Besides polytask (every registered balancer, each ``mode`` it accepts) it times, when importable:

* LibMTL's weighting classes, driven as its trainer drives them: ``backward(losses, **kwargs)`` on
  the stacked losses, ``rep_grad=False`` (gradients of the shared parameters; on the ``params``
  rows) and, for the methods that accept it, ``rep_grad=True`` (gradients of the representation;
  on the ``features`` rows);
* torchjd's ``autojac.mtl_backward`` + ``jac_to_grad`` with each aggregator, and its ``autogram``
  engine (Gramian of the trunk, then ``losses.backward(weights)``) with each Gramian weighting.

Peak memory: for one extra step per case, recorded with ``torch.profiler`` (``profile_memory``),
the high-water mark of bytes held by tensors allocated by torch's CPU allocator *during the step*
(all threads), above the level at the start of the step. It leaves out the model, its gradients
and optimizer state allocated before the step, and memory that is not a torch tensor (NumPy,
SciPy, cvxpy work in some peers). It is a measure of transient memory, not of process RSS.

Run it in the benchmark environment (``make bench-env``)::

    .venv-bench/bin/python benchmarks/step_overhead.py --markdown docs/benchmarks.md
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Thread pools are sized before torch/NumPy load: torch's intra-op pool via set_num_threads in
    # main(), OpenMP and the BLAS pools of NumPy/SciPy here (see --threads).
    _threads = next(
        (a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")),
        sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "1",
    )
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)

import argparse
import contextlib
import gc
import importlib
import importlib.metadata
import importlib.util
import math
import platform
import random
import statistics
import time
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _report import Section, cpu_name, table
from torch import Tensor, nn

from polytask.balancers import BALANCERS, build_balancer
from polytask.balancers.registry import options_of

LIBRARIES = ("polytask", "LibMTL", "torchjd", "autogram")
LIBRARY_TITLES = {
    "polytask": "polytask",
    "LibMTL": "LibMTL",
    "torchjd": "torchjd `mtl_backward`",
    "autogram": "torchjd `autogram`",
}
MODES = ("features", "params")
BASELINE = "_baseline"
SECTION = Section("step_overhead", "benchmarks/step_overhead.py")

# polytask name -> (LibMTL weighting class, its backward kwargs). LibMTL's IMTL is the hybrid
# IMTL (loss scales and IMTL-G together); it stands against imtl_g.
LIBMTL_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "equal": ("EW", {}),
    "uw": ("UW", {}),
    "dwa": ("DWA", {"T": 2.0}),
    "gls": ("GLS", {}),
    "rlw": ("RLW", {"dist": "Normal"}),
    "gradnorm": ("GradNorm", {"alpha": 1.5}),
    "mgda": ("MGDA", {"mgda_gn": "none"}),
    "pcgrad": ("PCGrad", {}),
    "cagrad": ("CAGrad", {"calpha": 0.5, "rescale": 1}),
    "gradvac": ("GradVac", {"beta": 0.5}),
    "imtl_g": ("IMTL", {}),
    "graddrop": ("GradDrop", {"leak": 0.0}),
    "nash_mtl": ("Nash_MTL", {"update_weights_every": 1, "optim_niter": 20, "max_norm": 1.0}),
    "aligned_mtl": ("Aligned_MTL", {}),
}

# polytask name -> torchjd aggregator (mtl_backward) and Gramian weighting (autogram): class
# name and constructor kwargs; "{T}" is replaced by the task count.
TORCHJD_AGGREGATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "upgrad": ("UPGrad", {}),
    "mgda": ("MGDA", {}),
    "pcgrad": ("PCGrad", {}),
    "cagrad": ("CAGrad", {"c": 0.5}),
    "nash_mtl": ("NashMTL", {"n_tasks": "{T}"}),
    "aligned_mtl": ("AlignedMTL", {}),
    "gradvac": ("GradVac", {}),
    "imtl_g": ("IMTLG", {}),
    "graddrop": ("GradDrop", {}),
}
TORCHJD_WEIGHTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    name: (f"{cls}Weighting", kwargs)
    for name, (cls, kwargs) in TORCHJD_AGGREGATORS.items()
    if name not in ("nash_mtl", "graddrop")
}


def torchjd_object(spec: tuple[str, dict[str, Any]], tasks: int) -> Any:
    """Instantiate a torchjd aggregator or weighting from ``(class name, kwargs)``."""
    name, kwargs = spec
    aggregation = importlib.import_module("torchjd.aggregation")
    if not hasattr(aggregation, name):
        raise LookupError(f"no {name} in this torchjd release")
    values = {k: tasks if v == "{T}" else v for k, v in kwargs.items()}
    return getattr(aggregation, name)(**values)


# --------------------------------------------------------------------------------------------
# The problem


@dataclass(frozen=True)
class Shape:
    """Sizes of the benchmark problem (the smoke test shrinks them)."""

    in_dim: int = 256
    width: int = 512
    depth: int = 3
    batch: int = 256


class Problem:
    """Trunk, T heads, one fixed batch; identical initial weights for every case (seeded)."""

    def __init__(self, tasks: int, shape: Shape, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width_in = shape.in_dim
        for _ in range(shape.depth):
            layers += [nn.Linear(width_in, shape.width), nn.ReLU()]
            width_in = shape.width
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(shape.width, 1) for _ in range(tasks))
        self.names = [f"t{i}" for i in range(tasks)]
        self.x = torch.randn(shape.batch, shape.in_dim, generator=generator)
        self.y = torch.randn(shape.batch, tasks, generator=generator)

    def shared(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def parameters(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.heads.parameters()]

    def task_losses(self, features: Tensor | Sequence[Tensor]) -> list[Tensor]:
        """MSE of each head; ``features`` is one tensor or one per task."""
        inputs = [features] * len(self.heads) if isinstance(features, Tensor) else features
        return [
            nn.functional.mse_loss(head(z).squeeze(1), self.y[:, i])
            for i, (head, z) in enumerate(zip(self.heads, inputs, strict=True))
        ]


def make_optimizer(params: Sequence[Tensor]) -> torch.optim.Optimizer:
    """The same optimizer for every case."""
    return torch.optim.SGD(params, lr=1e-3)


Step = Callable[[], None]


@dataclass
class Case:
    """One (library, method, mode) to time; ``make`` builds a step function for a Problem."""

    library: str
    method: str
    mode: str | None
    label: str
    make: Callable[[Problem], Step]
    note: str = ""


# --------------------------------------------------------------------------------------------
# polytask


def polytask_methods() -> list[tuple[str, type]]:
    """Registered balancers, one entry per class (its primary name), in registry order."""
    seen: dict[type, str] = {}
    for cls in BALANCERS.values():
        seen.setdefault(cls, cls.name)
    return [(name, cls) for cls, name in seen.items()]


def modes_of(cls: type) -> tuple[str | None, ...]:
    """The modes a balancer accepts (``(None,)`` when it has no ``mode`` option)."""
    return MODES if "mode" in options_of(cls) else (None,)


def is_gradient_method(cls: type) -> bool:
    return cls.kind == "gramian" or cls.name == "graddrop"


def polytask_case(name: str, mode: str | None) -> Case:
    def make(problem: Problem) -> Step:
        options = {} if mode is None else {"mode": mode}
        balancer = build_balancer(name, problem.names, **options)
        optimizer = make_optimizer([*problem.parameters(), *balancer.parameters()])
        shared = problem.shared()

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            features = problem.trunk(problem.x)
            losses = dict(zip(problem.names, problem.task_losses(features), strict=True))
            balancer.backward(losses, shared_params=shared, features=features)
            optimizer.step()

        return step

    return Case("polytask", name, mode, name, make)


def baseline_case() -> Case:
    case = polytask_case("equal", None)
    case.method = BASELINE
    return case


# --------------------------------------------------------------------------------------------
# LibMTL


def libmtl_weighting() -> types.ModuleType | None:
    """``LibMTL.weighting`` without running ``LibMTL/__init__.py``.

    The package's ``__init__`` imports its ResNet models, which import
    ``torchvision.models.utils`` (gone from torchvision); the weighting classes need none of it,
    so the package is registered as a bare namespace and only ``weighting`` is imported.
    """
    if "LibMTL.weighting" in sys.modules:
        return sys.modules["LibMTL.weighting"]
    spec = importlib.util.find_spec("LibMTL")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "LibMTL" not in sys.modules:
        package = types.ModuleType("LibMTL")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["LibMTL"] = package
    return importlib.import_module("LibMTL.weighting")


def libmtl_case(method: str, mode: str | None, rep_grad: bool) -> Case:
    class_name, kwargs = LIBMTL_METHODS[method]

    def make(problem: Problem) -> Step:
        import numpy as np

        weighting = libmtl_weighting()
        if weighting is None:
            raise ImportError("LibMTL is not installed")
        if not hasattr(weighting, class_name):
            raise LookupError(f"no {class_name} in this LibMTL release")
        # The attributes LibMTL's trainer and MTLmodel give a weighting instance.
        w = getattr(weighting, class_name)()
        tasks = len(problem.names)
        w.task_num = tasks
        w.task_name = list(problem.names)
        w.device = torch.device("cpu")
        w.rep_grad = rep_grad
        w.get_share_params = problem.trunk.parameters
        # set_to_none=False: LibMTL writes the combined gradient into ``param.grad.data``.
        w.zero_grad_share_params = lambda: problem.trunk.zero_grad(set_to_none=False)
        # A later epoch, so DWA and GradNorm take their weighting branch (epoch 0 is plain EW).
        w.epoch = 2
        w.train_loss_buffer = np.ones((tasks, 3))
        w.init_param()
        optimizer = make_optimizer([*problem.parameters(), *w.parameters()])

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            features = problem.trunk(problem.x)
            if rep_grad:
                w.rep = features
                w.rep_tasks = {
                    n: features.detach().clone().requires_grad_(True) for n in problem.names
                }
                losses = problem.task_losses([w.rep_tasks[n] for n in problem.names])
            else:
                losses = problem.task_losses(features)
            w.backward(torch.stack(losses), **kwargs)
            optimizer.step()

        return step

    label = f"{class_name}{' rep_grad' if rep_grad else ''}"
    return Case("LibMTL", method, mode, label, make)


# --------------------------------------------------------------------------------------------
# torchjd


def torchjd_case(method: str, mode: str | None) -> Case:
    def make(problem: Problem) -> Step:
        autojac = importlib.import_module("torchjd.autojac")
        aggregator = torchjd_object(TORCHJD_AGGREGATORS[method], len(problem.names))
        optimizer = make_optimizer(problem.parameters())
        shared = problem.shared()
        heads = [list(h.parameters()) for h in problem.heads]

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            features = problem.trunk(problem.x)
            losses = problem.task_losses(features)
            autojac.mtl_backward(losses, features, tasks_params=heads, shared_params=shared)
            autojac.jac_to_grad(shared, aggregator)
            optimizer.step()

        return step

    return Case("torchjd", method, mode, TORCHJD_AGGREGATORS[method][0], make)


def autogram_case(method: str, mode: str | None) -> Case:
    def make(problem: Problem) -> Step:
        engine_cls = importlib.import_module("torchjd.autogram").Engine
        weighting = torchjd_object(TORCHJD_WEIGHTINGS[method], len(problem.names))
        # The losses are T scalars with no batch dimension, hence batch_dim=None.
        engine = engine_cls(problem.trunk, batch_dim=None)
        optimizer = make_optimizer(problem.parameters())

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            features = problem.trunk(problem.x)
            losses = torch.stack(problem.task_losses(features))
            gramian = engine.compute_gramian(losses)
            losses.backward(weighting(gramian))
            optimizer.step()

        return step

    return Case("autogram", method, mode, TORCHJD_WEIGHTINGS[method][0], make)


def peer_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------------------------
# Case list


@dataclass
class Row:
    """A table row: a polytask method and mode (peers' equivalents sit on the same row)."""

    method: str
    mode: str | None
    gradient: bool


def table_rows(methods: Sequence[str] | None) -> list[Row]:
    wanted = None if methods is None else {BALANCERS[m].name for m in methods}
    weighting_rows, gradient_rows = [], []
    for name, cls in polytask_methods():
        if wanted is not None and name not in wanted:
            continue
        gradient = is_gradient_method(cls)
        for mode in modes_of(cls):
            (gradient_rows if gradient else weighting_rows).append(Row(name, mode, gradient))
    return weighting_rows + gradient_rows


def build_cases(rows: Sequence[Row], libraries: Sequence[str]) -> list[Case]:
    cases = [baseline_case()]
    have_libmtl = "LibMTL" in libraries and peer_available("LibMTL")
    have_torchjd = peer_available("torchjd")
    for row in rows:
        if "polytask" in libraries:
            cases.append(polytask_case(row.method, row.mode))
        # Peers on the row of the polytask mode that computes what they compute.
        peer_params_row = row.mode == "params" or not row.gradient
        if have_libmtl and row.method in LIBMTL_METHODS:
            if peer_params_row:
                cases.append(libmtl_case(row.method, row.mode, rep_grad=False))
            elif row.mode == "features":
                cases.append(libmtl_case(row.method, row.mode, rep_grad=True))
        if row.mode == "params" and have_torchjd:
            if "torchjd" in libraries and row.method in TORCHJD_AGGREGATORS:
                cases.append(torchjd_case(row.method, row.mode))
            if "autogram" in libraries and row.method in TORCHJD_WEIGHTINGS:
                cases.append(autogram_case(row.method, row.mode))
    return cases


# --------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Measured:
    """Raw measurements of one case at one T."""

    case: Case
    step: Step | None = None
    status: str = "ok"
    inner: int = 1
    max_rounds: int = 0
    seconds: list[float] = field(default_factory=list)  # per-step time, one per round
    round_index: list[int] = field(default_factory=list)
    peak_bytes: int | None = None


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= 160 else text[:157] + "..."


def time_steps(step: Step, count: int) -> float:
    """Seconds per step over ``count`` consecutive steps."""
    start = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - start) / count


def peak_step_memory(step: Step) -> int:
    """High-water mark (bytes) of torch CPU tensor memory allocated during one step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        if e.name() == "[memory]"
    )
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


@contextlib.contextmanager
def quiet() -> Any:
    """Silence warnings and peers' prints while stepping."""
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(devnull):
            yield


def measure_tasks(
    cases: Sequence[Case],
    tasks: int,
    shape: Shape,
    repeats: int,
    *,
    warmup: int = 2,
    target_s: float = 0.03,
    slow_s: float = 0.5,
    slow_rounds: int = 3,
    memory: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[Measured]:
    """Warm up every case, then time them round-robin; return raw measurements."""
    results = [Measured(case) for case in cases]
    for m in results:
        try:
            with quiet():
                m.step = m.case.make(Problem(tasks, shape, seed))
                for _ in range(warmup):
                    m.step()
                # Calibrate: enough consecutive steps per sample to last ~target_s.
                one = time_steps(m.step, 1)
        except Exception as exc:  # a peer refusing a configuration is a result, not a crash
            m.status, m.step = short_error(exc), None
            continue
        m.inner = max(1, min(50, round(target_s / max(one, 1e-6))))
        m.max_rounds = repeats if one <= slow_s else min(repeats, slow_rounds)
    baseline = results[0]
    if baseline.step is None:
        raise RuntimeError(f"the equal-weight baseline failed: {baseline.status}")
    order = list(range(len(results)))
    rng = random.Random(seed)
    for r in range(repeats):
        rng.shuffle(order)
        gc.collect()
        started = time.perf_counter()
        for k in order:
            m = results[k]
            if m.step is None or r >= m.max_rounds:
                continue
            try:
                with quiet():
                    seconds = time_steps(m.step, m.inner)
            except Exception as exc:
                m.status, m.step = short_error(exc), None
                continue
            m.seconds.append(seconds)
            m.round_index.append(r)
        log(f"  T={tasks} round {r + 1}/{repeats}: {time.perf_counter() - started:.1f}s")
    if memory:
        for m in results:
            if m.step is not None:
                with quiet():
                    m.peak_bytes = peak_step_memory(m.step)
    for m in results:
        m.step = None  # free the models
    return results


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (as numpy's default)."""
    data = sorted(values)
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarise(measured: Sequence[Measured], tasks: int) -> list[dict[str, Any]]:
    """One record per case: ratios to the baseline of the same round, and their spread."""
    base = measured[0]
    base_by_round = dict(zip(base.round_index, base.seconds, strict=True))
    records = []
    for m in measured[1:]:
        ratios = [
            s / base_by_round[r]
            for r, s in zip(m.round_index, m.seconds, strict=True)
            if r in base_by_round
        ]
        record: dict[str, Any] = {
            "library": m.case.library,
            "method": m.case.method,
            "mode": m.case.mode,
            "label": m.case.label,
            "tasks": tasks,
            "status": m.status if (ratios or m.status != "ok") else "no samples",
            "samples": len(ratios),
            "inner_steps": m.inner,
            "peak_mib": None if m.peak_bytes is None else m.peak_bytes / 2**20,
            "baseline_ms": 1e3 * statistics.median(base.seconds),
        }
        if ratios:
            record.update(
                ratio=statistics.median(ratios),
                ratio_q1=quantile(ratios, 0.25),
                ratio_q3=quantile(ratios, 0.75),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                ms=1e3 * statistics.median(m.seconds),
            )
        records.append(record)
    base_record = {
        "library": "polytask",
        "method": BASELINE,
        "mode": None,
        "label": "equal (baseline)",
        "tasks": tasks,
        "status": "ok",
        "samples": len(base.seconds),
        "inner_steps": base.inner,
        "peak_mib": None if base.peak_bytes is None else base.peak_bytes / 2**20,
        "baseline_ms": 1e3 * statistics.median(base.seconds),
        "ratio": 1.0,
        "ms": 1e3 * statistics.median(base.seconds),
    }
    return [base_record, *records]


# --------------------------------------------------------------------------------------------
# Run and report


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in ("torch", "polytask", "LibMTL", "torchjd", "numpy", "cvxpy"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def run(
    tasks: Sequence[int] = (2, 10, 40),
    *,
    repeats: dict[int, int] | int | None = None,
    methods: Sequence[str] | None = None,
    libraries: Sequence[str] = LIBRARIES,
    shape: Shape | None = None,
    warmup: int = 2,
    memory: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every case at every T; returns ``{"meta": ..., "rows": ..., "records": ...}``."""
    shape = shape or Shape()
    rows = table_rows(methods)
    cases = build_cases(rows, libraries)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    rounds_used: dict[int, int] = {}
    for t in tasks:
        if isinstance(repeats, int):
            rounds = repeats
        elif isinstance(repeats, dict):
            rounds = repeats[t]
        else:
            rounds = default_repeats(t)
        rounds_used[t] = rounds
        log(f"T={t}: {len(cases)} cases, {rounds} rounds")
        measured = measure_tasks(cases, t, shape, rounds, warmup=warmup, memory=memory, log=log)
        records.extend(summarise(measured, t))
    meta = {
        "tasks": list(tasks),
        "repeats": rounds_used,
        "shape": shape.__dict__,
        "versions": versions(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "python": platform.python_version(),
        "seconds": time.perf_counter() - started,
        "date": time.strftime("%Y-%m-%d"),
    }
    return {"meta": meta, "rows": rows, "records": records}


def default_repeats(tasks: int) -> int:
    """Rounds per T: fewer where a round is long."""
    if tasks <= 2:
        return 15
    if tasks <= 10:
        return 9
    return 5


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def find(records: Sequence[dict[str, Any]], library: str, row: Row, tasks: int) -> dict | None:
    for r in records:
        if (r["library"], r["method"], r["mode"], r["tasks"]) == (
            library,
            row.method,
            row.mode,
            tasks,
        ):
            return r
    return None


def cell(records: Sequence[dict[str, Any]], library: str, row: Row, tasks: Sequence[int]) -> str:
    parts = []
    for t in tasks:
        r = find(records, library, row, t)
        if r is None:
            parts.append("—")
        elif "ratio" not in r:
            parts.append("×")
        else:
            parts.append(fmt(r["ratio"]))
    return "—" if all(p == "—" for p in parts) else " / ".join(parts)


def memory_cell(records: Sequence[dict[str, Any]], row: Row, tasks: int) -> str:
    parts = []
    for library in LIBRARIES:
        r = find(records, library, row, tasks)
        parts.append("—" if r is None or r.get("peak_mib") is None else fmt(r["peak_mib"]))
    return " / ".join(parts)


def explain(record: dict[str, Any]) -> str:
    """Why a case was not run, in words (the raw error otherwise)."""
    status = record["status"]
    if record["library"] == "LibMTL":
        if "cannot reshape array" in status and record["label"] == "CAGrad":
            return "LibMTL's CAGrad hard-codes three tasks (`x.reshape(1,3)` in its objective)"
        if "No support method" in status:
            kind = "representation" if "rep_grad=True" in status else "parameter"
            return f"LibMTL refuses this method with {kind} gradients ({status.split(': ', 1)[0]})"
        if status.startswith("LookupError"):
            return "not in the PyPI release of LibMTL (only in its git repository)"
    return status


def markdown(result: dict[str, Any], command: str) -> str:
    meta, rows, records = result["meta"], result["rows"], result["records"]
    tasks = meta["tasks"]
    t_max = max(tasks)
    v = meta["versions"]
    ts = "/".join(map(str, tasks))
    base = [r for r in records if r["method"] == BASELINE]
    base_ms = ", ".join(f"T={r['tasks']}: {r['ms']:.1f} ms" for r in base)
    base_mem = ", ".join(
        f"T={r['tasks']}: {fmt(r['peak_mib'])} MiB" for r in base if r["peak_mib"] is not None
    )
    libs = [lib for lib in LIBRARIES if any(r["library"] == lib for r in records)]
    lines = [
        f"Step time as a multiple of the equal-weight step (median over rounds), T = {ts}. "
        f"Equal-weight step: {base_ms}.",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_count']} CPU cores, shared with other work; "
        f"{meta['torch_threads']} torch thread(s), OpenMP/BLAS threads: {meta['blas_threads']}; "
        f"Python {meta['python']}, torch {v['torch']}, "
        f"LibMTL {v['LibMTL'] or 'not installed'}, torchjd {v['torchjd'] or 'not installed'}, "
        f"cvxpy {v['cvxpy'] or '—'}. Rounds per T: "
        + ", ".join(f"T={t}: {n}" for t, n in meta["repeats"].items())
        + f". Run of {meta['date']}, {meta['seconds'] / 60:.1f} min.",
        "",
        f"Command: `{command}`",
        "",
    ]
    header = ["method", "mode"] + [f"{LIBRARY_TITLES[lib]} T={ts}" for lib in libs]
    header.append(f"peak MiB at T={t_max} ({' / '.join(LIBRARIES)})")
    body = [
        [
            row.method,
            row.mode or "—",
            *[cell(records, lib, row, tasks) for lib in libs],
            memory_cell(records, row, t_max),
        ]
        for row in rows
    ]
    lines.append(table(header, body))
    lines += [
        "",
        "— : the library has no such method (or not in this mode); × : not run, see below. "
        "Peers sit on the row of the polytask mode that computes the same thing: gradients of "
        "the shared parameters (LibMTL `rep_grad=False`, torchjd) on `params`, gradients of "
        "the representation (LibMTL `rep_grad=True`) on `features`. LibMTL's `IMTL` (loss "
        "scales + IMTL-G) stands on the `imtl_g` row.",
        "",
        "Peak memory: high-water mark of torch CPU tensor memory allocated during one step "
        "(torch.profiler, profile_memory), above the level at the start of the step; model, "
        "gradients and optimizer state from before the step and non-torch memory "
        f"(NumPy/cvxpy) are not counted. Equal-weight step: {base_mem}.",
        "",
    ]
    failed: dict[tuple[str, str, str, str], list[int]] = {}
    for r in records:
        if "ratio" not in r:
            key = (r["library"], r["label"], r["mode"] or "no mode", explain(r))
            failed.setdefault(key, []).append(r["tasks"])
    if failed:
        lines += ["Not run:", ""]
        for (library, label, mode, why), ts_failed in failed.items():
            at = "every T" if ts_failed == tasks else "T=" + "/".join(map(str, ts_failed))
            lines.append(f"- {library} `{label}` ({mode} row, {at}): {why}")
        lines.append("")
    capped = sorted(
        {(r["library"], r["label"]) for r in records if "ratio" in r}
        - {
            (r["library"], r["label"])
            for r in records
            if "ratio" in r and r["samples"] >= meta["repeats"][r["tasks"]]
        }
    )
    if capped:
        lines.append(
            "Capped (a step over 0.5 s is timed in at most 3 rounds): "
            + ", ".join(f"{lib} {label}" for lib, label in capped)
            + "."
        )
        lines.append("")
    lines += [
        "<details><summary>Spread: median [quartiles] (min–max) of the per-round ratio, "
        "ms per step, rounds</summary>",
        "",
    ]
    spread = [
        [
            r["library"],
            r["label"],
            r["mode"] or "—",
            str(r["tasks"]),
            fmt(r["ratio"]),
            f"{fmt(r['ratio_q1'])}–{fmt(r['ratio_q3'])}",
            f"{fmt(r['ratio_min'])}–{fmt(r['ratio_max'])}",
            f"{r['ms']:.1f}",
            str(r["samples"]),
            fmt(r["peak_mib"]),
        ]
        for r in records
        if "ratio" in r and r["method"] != BASELINE
    ]
    header = ["library", "method", "mode", "T", "ratio", "quartiles", "min–max", "ms/step"]
    lines.append(table([*header, "rounds", "peak MiB"], spread))
    lines += ["", "</details>"]
    return SECTION.wrap("\n".join(lines))


def plain_table(result: dict[str, Any]) -> str:
    """The side-by-side table for the terminal."""
    meta, rows, records = result["meta"], result["rows"], result["records"]
    tasks = meta["tasks"]
    libs = [lib for lib in LIBRARIES if any(r["library"] == lib for r in records)]
    header = ["method", "mode", *libs, f"peak MiB T={max(tasks)}"]
    body = [
        [
            row.method,
            row.mode or "-",
            *[cell(records, lib, row, tasks) for lib in libs],
            memory_cell(records, row, max(tasks)),
        ]
        for row in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    out = [
        f"ratio to the equal-weight step, T = {'/'.join(map(str, tasks))}; "
        f"memory: {' / '.join(LIBRARIES)}"
    ]
    for line in [header, *body]:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    failed = [r for r in records if "ratio" not in r]
    for r in failed:
        out.append(f"not run: {r['library']} {r['label']} T={r['tasks']}: {r['status']}")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="2,10,40", help="comma-separated task counts")
    parser.add_argument(
        "--repeats", type=int, default=None, help="rounds per T (default 15/9/5 for T≤2/≤10/more)"
    )
    parser.add_argument("--methods", default=None, help="comma-separated polytask method names")
    parser.add_argument(
        "--libraries",
        default=",".join(LIBRARIES),
        help=f"subset of {','.join(LIBRARIES)} (polytask's equal step is always the baseline)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch, OpenMP and BLAS threads (default 1: on a shared machine, multi-threaded "
        "OpenMP/BLAS regions wait for descheduled threads and timings become erratic)",
    )
    parser.add_argument("--quick", action="store_true", help="T=2,10, 3 rounds, no memory")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    parser.add_argument("--markdown", type=Path, default=None, help="write/replace the section")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = [int(t) for t in args.tasks.split(",")]
    repeats: int | None = args.repeats
    memory = not args.no_memory
    if args.quick:
        tasks = [t for t in tasks if t <= 10] or tasks[:1]
        repeats = repeats or 3
        memory = False
    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in methods or [] if m not in BALANCERS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; registered: {sorted(BALANCERS)}")
    libraries = [lib.strip() for lib in args.libraries.split(",")]
    result = run(tasks, repeats=repeats, methods=methods, libraries=libraries, memory=memory)
    print(plain_table(result))
    if args.markdown is not None:
        SECTION.write(args.markdown, markdown(result, SECTION.command(argv)))
        print(f"wrote {args.markdown}")
    return result


if __name__ == "__main__":
    main()
