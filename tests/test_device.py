"""``training.device`` and ``training.precision``: resolution, clear errors naming the key,
saved configs and baseline keys unchanged at the defaults, and (on a CUDA machine) fp16 and
pinned-memory batches."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from torch import nn

from polytask.balancers import build_balancer
from polytask.config import parse_config
from polytask.data import MultiTaskData
from polytask.device import check_precision, resolve_device, to_device
from polytask.errors import ConfigError
from polytask.experiment import baseline_key
from polytask.models import HardSharing
from polytask.tasks import BinaryTask, RegressionTask
from polytask.training import Trainer

from .conftest import config_dict
from .test_cli import assert_clean_error, run_cli

NO_CUDA = not torch.cuda.is_available()
NO_MPS = not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device; none on this machine")
without_cuda = pytest.mark.skipif(not NO_CUDA, reason="checks the error given without CUDA")


# -- resolution and errors ---------------------------------------------------------------------
@pytest.mark.skipif(not (NO_CUDA and NO_MPS), reason="this machine has an accelerator")
def test_auto_is_the_cpu_without_an_accelerator():
    assert resolve_device("auto") == torch.device("cpu")


@needs_cuda
def test_auto_is_cuda_with_it():
    assert resolve_device("auto").type == "cuda"


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")


@without_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_names_the_key(spec):
    with pytest.raises(ConfigError, match=rf"training\.device: '{spec}'.*CUDA is not available"):
        resolve_device(spec)


@needs_cuda
def test_a_cuda_index_out_of_range_names_the_key_and_the_count():
    count = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"training\.device: 'cuda:{count}'.*{count} CUDA"):
        resolve_device(f"cuda:{count}")


@pytest.mark.skipif(not NO_MPS, reason="checks the error given without MPS")
def test_mps_without_mps_names_the_key():
    with pytest.raises(ConfigError, match=r"training\.device: 'mps'.*not available"):
        resolve_device("mps")


def test_fp16_on_the_cpu_names_the_key_and_bf16_is_allowed():
    with pytest.raises(ConfigError, match=r"training\.precision: fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    bf16 = check_precision("bf16", torch.device("cpu"))
    assert bf16.dtype is torch.bfloat16 and not bf16.scales
    assert check_precision("fp32", torch.device("cpu")).dtype is None


# -- the config --------------------------------------------------------------------------------
def test_a_malformed_device_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"training\.device.*auto, cpu, cuda, cuda:N or mps"):
        parse_config(config_dict("t.csv", training={"device": "gpu"}))
    with pytest.raises(ConfigError, match=r"training\.precision"):
        parse_config(config_dict("t.csv", training={"precision": "fp8"}))


def test_defaults_leave_saved_configs_as_they_were():
    config = parse_config(config_dict("t.csv"))
    assert config.training.device == "auto" and config.training.precision == "fp32"
    dumped = config.model_dump(mode="json")["training"]
    assert "device" not in dumped and "precision" not in dumped
    chosen = parse_config(config_dict("t.csv", training={"device": "cpu", "precision": "bf16"}))
    again = parse_config(chosen.model_dump(mode="json"))
    assert (again.training.device, again.training.precision) == ("cpu", "bf16")


def key(**training):
    config = parse_config(
        config_dict("t.csv", model={"trunk": [8], "head": [4]}, training=training)
    )
    return baseline_key(config, RegressionTask(name="spend", mean=(0.0,), std=(1.0,)))


def test_baseline_keys_are_those_of_before_and_ignore_the_device():
    # the keys these configs had before device and precision existed
    assert key() == "97fc2d92ad0d"
    assert key(epochs=2, lr_schedule="cosine") == "66d10c17cdd4"
    assert key(device="cpu") == key(device="cuda:1") == key()
    assert key(precision="bf16") != key()


# -- the command line: one line, exit 2, before any folder --------------------------------------
@without_cuda
def test_train_on_cuda_without_it_exits_2_naming_training_device(
    monkeypatch, capsys, table, tmp_path
):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), training={"device": "cuda"})
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "train", path)
    assert_clean_error(code, err, "training.device", "'cuda'", "CUDA is not available")
    assert not (tmp_path / "runs").exists()


def test_train_in_fp16_on_the_cpu_exits_2_naming_training_precision(
    monkeypatch, capsys, table, tmp_path
):
    training = {"device": "cpu", "precision": "fp16"}
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), training=training)
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "train", path)
    assert_clean_error(code, err, "training.precision", "fp16 needs a CUDA device")
    assert not (tmp_path / "runs").exists()


@without_cuda
def test_predict_on_cuda_without_it_exits_2_naming_the_option(monkeypatch, capsys, tmp_path, table):
    out = tmp_path / "p.csv"
    code, _, err = run_cli(
        monkeypatch, capsys, "predict", tmp_path, table, "-o", out, "--device", "cuda"
    )
    assert_clean_error(code, err, "--device", "CUDA is not available")
    assert not out.exists()


# -- batches -----------------------------------------------------------------------------------
def toy_batch(n: int = 16):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    data = MultiTaskData(
        x,
        {"r": x[:, :1] * 2, "b": (x[:, 1] > 0).float()},
        {"r": torch.ones(n, 1, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool)},
    )
    return data.batch(slice(None))


def test_a_batch_already_on_the_device_is_not_copied():
    batch = toy_batch()
    moved = to_device(batch, torch.device("cpu"))
    assert moved.inputs is batch.inputs and moved.targets["r"] is batch.targets["r"]


# -- CUDA --------------------------------------------------------------------------------------
TASKS = [
    RegressionTask(name="r", mean=(0.0,), std=(1.0,)),
    BinaryTask(name="b", classes=("0", "1")),
]


def toy_model() -> HardSharing:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh())
    return HardSharing(trunk, {"r": nn.Linear(16, 1), "b": nn.Linear(16, 1)})


@pytest.mark.device
@needs_cuda
def test_batches_reach_cuda_through_pinned_memory(monkeypatch):
    pinned = []
    original = torch.Tensor.pin_memory

    def spy(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        pinned.append(result.is_pinned())
        return result

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    batch = toy_batch()
    moved = to_device(batch, torch.device("cuda"))
    torch.cuda.synchronize()
    assert moved.inputs.is_cuda and moved.targets["b"].is_cuda and moved.masks["r"].is_cuda
    assert len(pinned) == 5 and all(pinned)
    assert torch.equal(moved.inputs.cpu(), batch.inputs)


@pytest.mark.device
@needs_cuda
@pytest.mark.parametrize(
    ("name", "mode"), [("mgda", "params"), ("upgrad", "features"), ("uw", None)]
)
def test_a_cuda_fp16_step_matches_the_cpu_fp32_step(name, mode):
    """The fp16 step (autocast, GradScaler, scaled per-task gradients) writes the fp32
    gradients within fp16's rounding: 2⁻⁶ in norm (fp16 keeps 11 bits, ``u = 2⁻¹¹``; a few
    layers of rounding in the forward and backward passes, well under 32u), same weights."""
    options = {} if mode is None else {"mode": mode}
    runs = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "fp16")):
        model = toy_model()
        balancer = build_balancer(name, ["r", "b"], **options)
        trainer = Trainer(model, TASKS, balancer=balancer, device=device, precision=precision)
        optimizer = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.0)
        trainer.optimizer = optimizer  # lr 0: compare the gradients the step leaves
        _, weights = trainer.step(toy_batch(64))
        grads = torch.cat([p.grad.float().cpu().flatten() for p in model.parameters()])
        runs[precision] = (weights, grads, copy.deepcopy(trainer.scaler))
    (w32, g32, _), (w16, g16, scaler) = runs["fp32"], runs["fp16"]
    assert scaler is not None and scaler.get_scale() > 1
    assert float((g16 - g32).norm()) <= 2**-6 * float(g32.norm())
    for task in w32:
        assert w16[task] == pytest.approx(w32[task], rel=2**-6)


@pytest.mark.device
@needs_cuda
def test_an_fp16_overflow_skips_the_step_and_lowers_the_scale():
    model = toy_model()
    balancer = build_balancer("mgda", ["r", "b"])
    trainer = Trainer(model, TASKS, balancer=balancer, device="cuda", precision="fp16")
    assert trainer.scaler is not None
    trainer.scaler = torch.amp.GradScaler("cuda", init_scale=2.0**40)  # fp16 overflows
    before = [p.detach().clone() for p in model.parameters()]
    _, weights = trainer.step(toy_batch(64))
    assert all(w == 0 for w in weights.values())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert trainer.scaler.get_scale() == 2.0**39


@pytest.mark.device
@needs_cuda
@pytest.mark.parametrize(
    ("name", "options", "precision", "expected"),
    [
        ("equal", {}, "fp32", 1),
        ("uw", {}, "fp32", 1),
        ("famo", {}, "fp32", 1),
        ("mgda", {"mode": "features"}, "fp32", 1),
        ("upgrad", {"mode": "params"}, "bf16", 1),
        ("gradnorm", {}, "fp32", 1),
        ("mgda", {"mode": "params"}, "fp16", 2),  # GradScaler.step's own check
    ],
)
def test_a_step_synchronises_with_the_device_as_documented(name, options, precision, expected):
    """The trainer's docstring: one host synchronisation a step (two with fp16), counted by
    CUDA's synchronisation debug mode on the second step (the first initialises kernels)."""
    import warnings

    balancer = build_balancer(name, ["r", "b"], **options)
    trainer = Trainer(toy_model(), TASKS, balancer=balancer, device="cuda", precision=precision)
    trainer.model.train()
    trainer.step(toy_batch(64))
    torch.cuda.synchronize()
    batch = toy_batch(64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == expected, [str(w.message) for w in syncs]


@without_cuda
def test_auto_on_cuda_without_it_exits_2_before_any_study_folder(
    monkeypatch, capsys, table, tmp_path
):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), training={"device": "cuda"})
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(monkeypatch, capsys, "auto", path, "--trials", "1")
    assert_clean_error(code, err, "gpu.yaml", "training.device", "CUDA is not available")
    assert not (tmp_path / "runs").exists()


def test_predict_and_evaluate_on_auto_match_the_cpu(table, tmp_path):
    """``--device`` moves the loaded model; the outputs are the CPU's (within float32 round-off
    when auto finds an accelerator)."""
    import pandas as pd

    from polytask.experiment import run_experiment
    from polytask.predict import load_run

    quick = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
    config = parse_config(config_dict(str(table), output_dir=str(tmp_path), training=quick))
    run_dir = run_experiment(config, baselines=False).run_dir
    frame = pd.read_csv(table)
    on_cpu, on_auto = load_run(run_dir), load_run(run_dir, "auto")
    assert next(on_auto.model.parameters()).device.type == resolve_device("auto").type
    pd.testing.assert_frame_equal(
        on_auto.predict(frame, "table"), on_cpu.predict(frame, "table"), rtol=1e-5
    )
    auto_metrics, cpu_metrics = on_auto.evaluate(frame, "table"), on_cpu.evaluate(frame, "table")
    for task, metrics in cpu_metrics.items():
        assert auto_metrics[task] == pytest.approx(metrics, rel=1e-5)
