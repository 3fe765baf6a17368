"""Data-parallel training is exact: two gloo processes, each with half of every global batch,
end with the parameters (and the task affinity) of one process trained on the whole batches;
a run stopped and resumed by two processes, dropout included, equals an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from polytask import cli
from polytask.balancers import EqualWeights, build_balancer
from polytask.config import parse_config
from polytask.data import MultiTaskData
from polytask.data.sampling import ShuffledBatches, TaskMixture
from polytask.distributed import (
    World,
    all_reduce_sum,
    global_value,
    shard_rows,
    shutdown,
    world,
)
from polytask.errors import ConfigError, RunError
from polytask.experiment import run_experiment
from polytask.models import HardSharing
from polytask.relationships.affinity import GradientCosine, TagLookahead
from polytask.results import RunResult
from polytask.tasks import BinaryTask, RegressionTask
from polytask.training import Trainer
from polytask.training.trainer import epoch_seed, smallest_batch

from ..conftest import config_dict, synthetic_frame

TASKS = [
    RegressionTask(name="r", mean=(0.0,), std=(1.0,)),
    BinaryTask(name="b", classes=("0", "1")),
    RegressionTask(name="s", mean=(0.0,), std=(1.0,)),
]
METHODS = {
    "equal": ("equal", {}),
    "uw": ("uw", {}),
    "famo": ("famo", {}),
    "gradnorm": ("gradnorm", {}),
    "mgda-features": ("mgda", {"mode": "features"}),
    "mgda-params": ("mgda", {"mode": "params"}),
    "pcgrad-params": ("pcgrad", {"mode": "params"}),
    "nash_mtl-features": ("nash_mtl", {"mode": "features"}),
    "upgrad-params": ("upgrad", {"mode": "params"}),
    "db_mtl-params": ("db_mtl", {"mode": "params"}),
    "db_mtl-features": ("db_mtl", {"mode": "features"}),
    "graddrop-params": ("graddrop", {"mode": "params", "seed": 3}),
    "graddrop-features": ("graddrop", {"mode": "features", "seed": 3}),
}

STEPS = 20
ROWS = 21  # odd: the two processes hold 11 and 10 rows of each global batch
SHORT = 10  # this batch has 20 rows: 10 and 10 (only the first process's share changes)


def global_batches() -> list[MultiTaskData]:
    """Twenty global batches; task 's' is labelled on a few rows only (in one batch, only on
    rows of the first process), so its global count differs from twice a local one."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for k in range(STEPS):
        rows = ROWS - 1 if k == SHORT else ROWS
        x = torch.randn(rows, 4, generator=g)
        mask_b = torch.rand(rows, generator=g) > 0.3
        mask_s = torch.zeros(rows, 1, dtype=torch.bool)
        mask_s[[0, 2, 4] if k == 3 else [0, 1, 5, 8, 13]] = True
        batches.append(
            MultiTaskData(
                x,
                {
                    "r": x[:, :1] - 2 * x[:, 1:2] + 0.1 * torch.randn(rows, 1, generator=g),
                    "b": (x[:, 0] + x[:, 2] > 0).float(),
                    "s": x[:, 3:4] * x[:, :1],
                },
                {"r": torch.ones(rows, 1, dtype=torch.bool), "b": mask_b, "s": mask_s},
            )
        )
    return batches


def tiny_model(dropout: float = 0.0) -> HardSharing:
    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Linear(4, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 6), nn.Tanh()
    )
    return HardSharing(trunk, {t.name: nn.Linear(6, 1) for t in TASKS})


def flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def train(
    method: str, steps: int = STEPS, batches: list[MultiTaskData] | None = None
) -> torch.Tensor:
    """The model's parameters, then the balancer's own, flattened, after ``steps`` steps of
    ``method`` on the global batches (``batches``; default :func:`global_batches`)."""
    return _trained(method, steps, batches)[0]


def _trained(
    method: str, steps: int = STEPS, batches: list[MultiTaskData] | None = None
) -> tuple[torch.Tensor, list[dict[str, float]], list[dict[str, float]]]:
    """:func:`train`'s parameters, and each step's losses and weights."""
    name, options = METHODS[method]
    model = tiny_model()
    balancer = build_balancer(name, [t.name for t in TASKS], **options)
    extra = list(balancer.parameters())
    # SGD: linear in the gradients (Adam would hide a gradient off by a constant factor)
    optimizer = torch.optim.SGD([*model.parameters(), *extra], lr=0.1, momentum=0.5)
    trainer = Trainer(model, TASKS, optimizer=optimizer, balancer=balancer)
    model.train()
    losses, weights = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the skipped step of inf_batches
        for data in (batches or global_batches())[:steps]:
            loss, weight = trainer.step(data.batch(slice(None)))
            losses.append({k: float(v) for k, v in loss.items()})
            weights.append(weight)
    return flat([*model.parameters(), *extra]), losses, weights


INF_STEP = 5


def inf_batches() -> list[MultiTaskData]:
    """:func:`global_batches` with an infinite target of task 'r' on one row of the second
    process (rows ``1::2``) at step ``INF_STEP``: that process alone sees a loss that is not
    finite; one process skips the step, and so must both."""
    batches = global_batches()
    batches[INF_STEP].targets["r"][1] = math.inf
    return batches


def collectives_per_step(method: str) -> int:
    """The all-reduces one ``Trainer.step`` of ``method`` makes (after the first step)."""
    counted: list[int] = []
    original = dist.all_reduce

    def counting(*args, **kwargs):
        counted.append(1)
        return original(*args, **kwargs)

    dist.all_reduce = counting
    try:
        _trained(method, steps=1)
        counted.clear()
        _trained(method, steps=2)
    finally:
        dist.all_reduce = original
    return len(counted) // 2


def affinity() -> torch.Tensor:
    """The task affinity of the twenty global batches under upgrad (params mode), stacked:
    ``tag``, ``cosine`` in features mode (the engine computes it) and in params mode (the
    balancer's own Gramian, reused)."""
    model = tiny_model()
    names = [t.name for t in TASKS]
    balancer = build_balancer("upgrad", names, mode="params")
    meters = [
        TagLookahead(names),
        GradientCosine(names, mode="features"),
        GradientCosine(names, mode="params", balancer=balancer),
    ]
    assert not meters[1].reuses_balancer and meters[2].reuses_balancer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)  # tag steps by the lr: visible
    trainer = Trainer(model, TASKS, optimizer=optimizer, balancer=balancer, observers=meters)
    model.train()
    for data in global_batches():
        trainer.step(data.batch(slice(None)))
    return torch.stack([torch.tensor(m.epoch_end(1)["matrix"]) for m in meters])


def fit(
    epochs: int, checkpoint_dir: Path, resume: bool = False, dropout: float = 0.0
) -> torch.Tensor:
    """``Trainer.fit`` with upgrad (params mode) on four global batches as one table, in
    batches of 21 rows, with a checkpoint every epoch; the model's parameters after it."""
    model = tiny_model(dropout)
    balancer = build_balancer("upgrad", [t.name for t in TASKS], mode="params")
    trainer = Trainer(
        model, TASKS, balancer=balancer, epochs=epochs, batch_size=ROWS, seed=5,
        checkpoint_dir=checkpoint_dir,
    )  # fmt: skip
    trainer.fit(MultiTaskData.concat(global_batches()[:4]), resume=resume)
    return flat(list(model.parameters()))


def first_dropout_mask(epoch: int) -> torch.Tensor:
    """Which activations the dropout layer zeroes at the first step of ``epoch`` of a fit."""
    model = tiny_model(0.5)
    masks: list[torch.Tensor] = []
    model.trunk[2].register_forward_hook(lambda _m, _i, out: masks.append(out == 0))
    trainer = Trainer(model, TASKS, epochs=epoch, batch_size=ROWS, seed=5)
    trainer.fit(MultiTaskData.concat(global_batches()[:1]))
    return masks[-1]


SKIPPED = [("db_mtl", "features"), ("db_mtl", "params"), ("graddrop", "features")]
SKIPPED += [("graddrop", "params")]


def skipped_step(name: str, mode: str) -> list[float]:
    """The weights of a step whose losses are finite but whose per-task gradient is not on
    the second process's rows alone (the square root of |x| at 0), then the sum of a check
    collective: every process must skip it together and stay in step with the others."""
    x = torch.ones(3, 2) if world().rank == 0 else torch.zeros(3, 2)
    w = torch.ones(2, requires_grad=True)
    features = x * w
    local = torch.stack([features[:, 0].abs().sqrt().sum(), features[:, 1].pow(2).sum()])
    total = all_reduce_sum(local.detach().clone())
    losses = {n: global_value(local[k], total[k]) for k, n in enumerate(["a", "b"])}
    balancer = build_balancer(name, ["a", "b"], mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        weights = balancer.backward(losses, shared_params=[w], features=features)
    after = all_reduce_sum(torch.tensor([1.0]))  # the processes' next collective pairs up
    return [*weights.values(), float(after)]


class Unsummed(EqualWeights):
    """A method declaring it is not exact under data-parallel training."""

    data_parallel = False


def _worker(rank: int, size: int, store: str, out: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group(  # a timeout: processes out of step fail instead of hanging
        "gloo", init_method=f"file://{store}", rank=rank, world_size=size,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    folder = Path(out).parent
    try:
        results = {method: train(method) for method in METHODS}
        results["skipped"] = [skipped_step(name, mode) for name, mode in SKIPPED]
        for method in INF_METHODS:
            results[f"{method}-inf"] = _trained(method, batches=inf_batches())
        results["collectives"] = {m: collectives_per_step(m) for m in COLLECTIVES}
        results["affinity"] = affinity()
        results["fit"] = fit(epochs=2, checkpoint_dir=folder / "checkpoint")
        # dropout (its masks differ by process): 2 epochs straight, and 1 then resumed
        results["mask"] = first_dropout_mask(epoch=1)
        results["dropout"] = fit(2, folder / "straight", dropout=0.5)
        fit(1, folder / "stopped", dropout=0.5)
        dist.barrier()  # rank 0 has written the checkpoint every rank resumes from
        torch.manual_seed(123)  # as a fresh process would be: nothing left of the first fit
        results["resumed"] = fit(2, folder / "stopped", resume=True, dropout=0.5)
        odd = MultiTaskData.concat(
            [*global_batches()[:2], global_batches()[2].subset(torch.arange(1))]
        )
        try:  # 43 rows in batches of 21: the last batch has one row for two processes
            Trainer(tiny_model(), TASKS, batch_size=ROWS).fit(odd)
        except RunError as exc:
            results["refusal"] = str(exc)
        try:
            Trainer(tiny_model(), TASKS, balancer=Unsummed(["r", "b", "s"]))
        except ConfigError as exc:
            results["refusal-unsummed"] = str(exc)
    finally:
        shutdown()
    torch.save(results, f"{out}.{rank}")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, Path]:
    """Each rank's results, and the folder it wrote in."""
    folder = tmp_path_factory.mktemp("ddp")
    out = str(folder / "params")
    mp.spawn(_worker, args=(2, str(folder / "store"), out), nprocs=2, join=True)
    return [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)], folder


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_equal_one_process_on_the_same_global_batches(method, two_processes):
    assert world() == World(0, 1)  # this process: one, without a process group
    alone = train(method)
    first, second = (results[method] for results in two_processes[0])
    assert torch.equal(first, second)  # the ranks stay identical
    start = flat(list(tiny_model().parameters()))
    assert (alone[: start.numel()] - start).abs().max() > 1e-2  # the parameters did move
    torch.testing.assert_close(first, alone, atol=1e-5, rtol=0)


INF_METHODS = ["equal", "uw", "mgda-features", "upgrad-params"]
#: All-reduces per step: the gradients (equal weights: the loss values with them); a method
#: reading loss values adds theirs before its backward; a Gramian method sums the loss values
#: with its T×T Gramian (features) or its T×P gradient blocks (params).
COLLECTIVES = {"equal": 1, "uw": 2, "mgda-features": 2, "upgrad-params": 2}


@pytest.mark.parametrize("method", INF_METHODS)
def test_a_loss_not_finite_on_one_process_skips_the_step_on_every_process(method, two_processes):
    """A loss infinite on the second process's rows alone skips the step on both, as one
    process skips it: the same parameters after the twenty steps, weights 0 at that step."""
    alone, alone_losses, alone_weights = _trained(method, batches=inf_batches())
    assert alone_weights[INF_STEP] == dict.fromkeys(alone_weights[INF_STEP], 0.0)
    assert math.isinf(alone_losses[INF_STEP]["r"])
    first, second = (results[f"{method}-inf"] for results in two_processes[0])
    assert torch.equal(first[0], second[0])
    for params, losses, weights in (first, second):
        assert weights[INF_STEP] == alone_weights[INF_STEP]
        assert not math.isfinite(losses[INF_STEP]["r"])
        assert losses[INF_STEP + 1] == pytest.approx(alone_losses[INF_STEP + 1], abs=1e-5)
        torch.testing.assert_close(params, alone, atol=1e-5, rtol=0)


def test_equal_weights_sum_the_losses_with_the_gradients(two_processes):
    """One collective a step for equal weights (the loss values travel with the gradients),
    two for a method that reads the loss values and for a Gramian method (its Gramian or
    gradient blocks carry the loss values)."""
    first, second = (results["collectives"] for results in two_processes[0])
    assert first == second == COLLECTIVES


def test_rows_are_split_disjointly_and_a_rank_without_rows_is_an_error():
    parts = [shard_rows(7, r, 3) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(7))
    with pytest.raises(RunError, match="2 row\\(s\\) cannot be split over 3 processes"):
        shard_rows(2, 0, 3)


def test_a_run_checkpointed_by_two_processes_resumes_exactly_in_one(two_processes, tmp_path):
    """Rank 0 alone wrote the checkpoints of two epochs (one folder, no clash); one process
    resumes them for two more and ends where four epochs in one process end: the world size
    may change on resume."""
    (first, second), folder = two_processes
    assert torch.equal(first["fit"], second["fit"])
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(folder / "checkpoint", checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir() if p.is_dir()) == ["epoch-0002"]
    resumed = fit(epochs=4, checkpoint_dir=checkpoint, resume=True)
    alone = fit(epochs=4, checkpoint_dir=tmp_path / "alone")
    assert not torch.equal(resumed, first["fit"])  # it did train two more epochs
    torch.testing.assert_close(resumed, alone, atol=1e-5, rtol=0)


def test_the_smallest_batch_is_known_before_training():
    data = MultiTaskData.concat(global_batches()[:2])  # 42 rows
    assert smallest_batch(ShuffledBatches(data, 20)) == 2
    assert smallest_batch(ShuffledBatches(data, 21)) == 21
    assert smallest_batch(TaskMixture({"a": data, "b": data.subset(torch.arange(5))}, 8)) == 2


def test_a_batch_without_a_row_for_every_process_is_refused_before_training(two_processes):
    (first, second), _ = two_processes
    assert "a global batch of 1 row(s) cannot be split over 2 processes" in first["refusal"]
    assert second["refusal"] == first["refusal"]


def test_a_balancer_not_exact_under_data_parallel_training_is_refused(two_processes):
    (first, _), _ = two_processes
    assert first["refusal-unsummed"] == (
        "balancer 'equal' is not exact under data-parallel training (torchrun, 2 processes): "
        "train it in one process"
    )
    for name in ("db_mtl", "graddrop", "mgda"):  # every registered method is exact
        assert build_balancer(name, ["r", "b", "s"]).data_parallel


def test_a_gradient_not_finite_on_one_process_skips_the_step_on_every_process(two_processes):
    """DB-MTL and GradDrop check their gradients after the processes agree on them: the step
    is skipped everywhere (weights 0) and the processes stay in step."""
    first, second = (results["skipped"] for results in two_processes[0])
    assert first == second == [[0.0, 0.0, 2.0]] * len(SKIPPED)


def test_the_task_affinity_of_two_processes_is_that_of_one(two_processes):
    """tag, cosine measured by the engine and cosine reused from the balancer: every step's
    matrix is that of the global batch, on every process."""
    first, second = (results["affinity"] for results in two_processes[0])
    assert torch.equal(first, second)
    alone = affinity()
    assert alone.isfinite().all() and (alone - alone.transpose(1, 2)).abs()[0].max() > 1e-2
    torch.testing.assert_close(first, alone, atol=1e-5, rtol=0)


def test_each_process_draws_its_own_dropout_masks(two_processes):
    """Rank k's row j is not given rank 0's row j mask (one seed for all would do that)."""
    first, second = (results["mask"] for results in two_processes[0])
    assert first.shape[0] == 11 and second.shape[0] == 10
    assert not torch.equal(first[:10], second)
    assert epoch_seed(5, 2, 0) == epoch_seed(5, 2) != epoch_seed(5, 2, 1) != epoch_seed(5, 3, 1)


def test_a_run_stopped_and_resumed_by_two_processes_equals_an_uninterrupted_one(two_processes):
    """Dropout on: one epoch, then resumed for one more by processes whose random state was
    disturbed, ends where two epochs straight end (each process redraws its own masks of
    every epoch from the seed, the epoch and its rank)."""
    (first, second), _ = two_processes
    assert torch.equal(first["dropout"], second["dropout"])
    assert torch.equal(first["resumed"], second["resumed"])
    assert torch.equal(first["resumed"], first["dropout"])
    assert first["mask"].any() and not first["mask"].all()  # the dropout did drop


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ENV = {
    **os.environ,
    "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    "OMP_NUM_THREADS": "1",
}
#: Run by torchrun in place of ``-m polytask``: rank 1 of the first attempt dies in the middle
#: of epoch 2 of the multi-task model (after the checkpoint of epoch 1).
DYING = """
import os, sys
from pathlib import Path
from typing import ClassVar
from polytask.training.trainer import Trainer
from polytask.cli import main

step, calls = Trainer.step, [0]

def dying(self, batch):
    if self.label == "multi-task":
        calls[0] += 1
        first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if calls[0] == 8 and os.environ["RANK"] == "1" and first:
            Path("died").write_text("rank 1 at step 8")
            os._exit(1)
    return step(self, batch)

Trainer.step = dying
sys.argv = ["polytask", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, RunResult]:
    """A small config (3 epochs of 5 steps, no dropout: its masks differ by process) and the
    result of one process training it."""
    folder = tmp_path_factory.mktemp("cli")
    synthetic_frame().to_csv(folder / "table.csv", index=False)
    config = config_dict(str(folder / "table.csv"), output_dir=str(folder / "one"))
    config["model"]["dropout"] = 0.0
    config["training"]["epochs"] = 3
    return config, run_experiment(parse_config(config))


def assert_same_test_metrics(run: Path, alone: RunResult) -> None:
    metrics = json.loads((run / "metrics.json").read_text())["multitask"]["test"]
    for task, values in metrics.items():
        for metric, value in values.items():
            assert math.isfinite(value)
            assert value == pytest.approx(alone.multitask.test[task][metric], abs=1e-5)


def torchrun(config: dict, folder: Path, *arguments: str) -> subprocess.CompletedProcess:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config | {"output_dir": str(folder / "runs")}))
    return subprocess.run(
        [*TORCHRUN, *arguments, "train", str(path)],
        cwd=folder, env=ENV, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_python_m_polytask_is_the_command_line():
    """``torchrun ... -m polytask train CONFIG`` runs this entry point."""
    done = subprocess.run(
        [sys.executable, "-m", "polytask", "--help"], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0 and "train" in done.stdout


@pytest.mark.slow
def test_an_elastic_restart_resumes_from_the_last_checkpoint(tmp_path, cli_run):
    """``torchrun --nproc-per-node 2 --max-restarts 2``: a worker killed mid-epoch; the
    restarted job resumes the same run folder from its last checkpoint and ends with the test
    metrics of an uninterrupted one-process run; only rank 0 wrote (one run folder, one set of
    baselines) and printed (one summary)."""
    config, alone = cli_run
    (tmp_path / "dying.py").write_text(DYING)
    done = torchrun(
        config, tmp_path, "--max-restarts", "2", "--monitor-interval", "0.1", "dying.py"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "died").is_file()  # it did die once
    assert done.stdout.count("results, weights and loss curves written to") == 1
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["baselines", "synthetic"]
    assert len(list((runs / "baselines").iterdir())) == 3
    assert_same_test_metrics(runs / "synthetic", alone)


class FakeLauncher:
    """Stands for torch's launcher (``torch.distributed.run.run``) that ``train --nproc`` runs:
    records its arguments and ends with the exit codes of ``FakeLauncher.codes`` by rank."""

    arguments: ClassVar[list[list[str]]] = []
    codes: ClassVar[dict[int, int]] = {}
    messages: ClassVar[dict[int, str]] = {}  # the user error each rank leaves
    environment: ClassVar[dict[str, str | None]] = {}  # what the processes would inherit

    @classmethod
    def install(
        cls, monkeypatch, codes: dict[int, int], messages: dict[int, str] | None = None
    ) -> None:
        cls.arguments.clear()
        cls.codes, cls.messages = codes, messages or {}
        monkeypatch.setattr("torch.distributed.run.run", cls.run)

    @classmethod
    def run(cls, args) -> None:
        cls.arguments.append([*vars(args).items()])
        cls.environment = {n: os.environ.get(n) for n in (cli.ERROR_FOLDER, "OMP_NUM_THREADS")}
        for rank, message in cls.messages.items():  # as cli.main does in each process
            monkeypatch = pytest.MonkeyPatch()
            monkeypatch.setenv("RANK", str(rank))
            try:
                cli._report_error(message)
            finally:
                monkeypatch.undo()
        failures = {r: ProcessFailure(r, 100 + r, c, "<N/A>") for r, c in cls.codes.items() if c}
        if failures:
            raise ChildFailedError("polytask", failures)


def run_train(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polytask", "train", *args])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("codes", "expected", "line"),
    [
        ({0: 0, 1: 0}, 0, None),
        ({0: 2, 1: 2}, 2, None),  # user errors: rank 0 printed its line
        ({0: 0, 1: -9}, 1, "error: --nproc 2: processes failed (rank 1: exit code -9)"),
    ],
)
def test_nproc_runs_torchrun_with_the_other_options(
    monkeypatch, capsys, config_file, tmp_path, codes, expected, line
):
    """``polytask train CONFIG --nproc 2 ...`` runs torch's launcher on the same command line;
    its exit code says how the processes ended, and a crash is one line naming the ranks."""
    FakeLauncher.install(monkeypatch, codes)
    code, err = run_train(
        monkeypatch, capsys, str(config_file), "--nproc", "2", "--no-baselines", "--resume",
        "--output", str(tmp_path / "elsewhere"),
    )  # fmt: skip
    assert code == expected, err
    shown = [" ".join(x.split()) for x in err.splitlines() if x.strip()]
    assert shown == ([line] if line else [])
    (arguments,) = FakeLauncher.arguments
    given = dict(arguments)
    assert given["standalone"] and given["nproc_per_node"] == "2" and given["module"]
    assert [given["training_script"], *given["training_script_args"]] == [
        "polytask", "train", str(config_file), "--no-baselines", "--resume",
        "--output", str(tmp_path / "elsewhere"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("messages", "lines"),
    [
        ({0: "data: bad", 1: "data: bad"}, ["error: data: bad"]),  # the same: printed once
        ({0: "data: bad", 1: "other"}, ["error: data: bad", "error: rank 1: other"]),
        ({1: "shard: gone"}, ["error: rank 1: shard: gone"]),  # rank 0 had none
    ],
)
def test_nproc_shows_a_user_error_of_the_processes_once(
    monkeypatch, capsys, config_file, messages, lines
):
    """Under ``--nproc`` rank 0 prints its user error; the others leave theirs to the launcher,
    which shows those that differ from rank 0's (not the same line once per process)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(cli.ERROR_FOLDER, raising=False)
    FakeLauncher.install(monkeypatch, dict.fromkeys(messages, 2), messages)
    code, err = run_train(monkeypatch, capsys, str(config_file), "--nproc", "2")
    assert code == 2
    assert [" ".join(x.split()) for x in err.splitlines() if x.strip()] == lines
    folder = FakeLauncher.environment[cli.ERROR_FOLDER]
    assert folder is not None and not Path(folder).exists()  # gone with the launch
    assert FakeLauncher.environment["OMP_NUM_THREADS"] == "1"  # torchrun's default: no banner
    assert cli.ERROR_FOLDER not in os.environ and "OMP_NUM_THREADS" not in os.environ


@pytest.mark.parametrize(
    ("nproc", "message"),
    [
        ("0", "error: --nproc: the number of processes must be at least 1, got 0"),
        ("-2", "error: --nproc: the number of processes must be at least 1, got -2"),
        ("500", "row(s) cannot be split over 500 processes (every process needs at least one row)"),
        ("2 --seeds 1,2", "error: --seeds: not with --nproc; train one seed per data-parallel run"),
    ],
)
def test_nproc_that_cannot_run_is_refused_before_launching(
    monkeypatch, capsys, config_file, nproc, message
):
    FakeLauncher.install(monkeypatch, {0: 0})
    code, err = run_train(monkeypatch, capsys, str(config_file), "--nproc", *nproc.split())
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in " ".join(lines[0].split())
    assert FakeLauncher.arguments == []  # nothing launched
