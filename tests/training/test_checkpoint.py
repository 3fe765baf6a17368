import json
import math
import os
import stat

import pytest
import torch

from polytask.errors import RunError
from polytask.training.checkpoint import (
    Checkpoint,
    atomic_write_json,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)


def checkpoint(value: float) -> Checkpoint:
    weights = {"w": torch.full((2, 2), value)}
    optimizer = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1}]}
    return Checkpoint(weights, weights, optimizer, {"rng": torch.tensor([1, 2])}, {"epoch": 1})


def test_round_trip_keeps_only_the_latest(tmp_path):
    save_checkpoint(tmp_path, 1, checkpoint(1.0))
    save_checkpoint(tmp_path, 2, checkpoint(2.0))
    loaded = load_checkpoint(tmp_path)
    assert torch.equal(loaded.model["w"], torch.full((2, 2), 2.0))
    assert loaded.balancer["rng"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002", "latest.json"]


def test_no_checkpoint_yet(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_corrupt_weights_raise_a_run_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, checkpoint(1.0))
    (path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RunError, match="cannot read the weights"):
        load_checkpoint(tmp_path)


def test_optimizer_state_refuses_pickled_code(tmp_path):
    path = save_checkpoint(tmp_path, 1, checkpoint(1.0))

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"optimizer": Evil(), "balancer": {}}, path / "optim.pt")
    with pytest.raises(RunError, match="corrupt"):
        load_checkpoint(tmp_path)


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()} | {1j: 2})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_is_strict_with_null_for_non_finite_numbers(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"f1": math.nan, "mae": [math.inf, 1.5], "deep": {"x": -math.inf}})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(target.read_text(), parse_constant=refuse) == {
        "f1": None,
        "mae": [None, 1.5],
        "deep": {"x": None},
    }


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"ok": 1})
        save_weights({"w": torch.ones(2)}, tmp_path / "model.safetensors")
        folder = save_checkpoint(tmp_path / "checkpoint", 1, checkpoint(1.0))
    finally:
        os.umask(old)
    files = [tmp_path / "metrics.json", tmp_path / "model.safetensors", tmp_path / "checkpoint"]
    files += [folder / "state.json", folder / "model.safetensors", folder / "optim.pt"]
    for path in files:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_weights_that_are_not_finite_are_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(
        {"trunk.0.weight": torch.ones(2), "head.bias": torch.tensor([1.0, math.nan])}, path
    )
    with pytest.raises(
        RunError, match=r"model.safetensors: the weights are not finite \(tensor 'head.bias'"
    ):
        load_weights(path)
    assert load_weights(path, require_finite=False)["head.bias"].isnan().any()
