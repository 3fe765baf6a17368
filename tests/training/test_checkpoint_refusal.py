"""A checkpoint whose optimizer state the weights-only loader refuses: one clean line, without
torch's advice to retry with ``weights_only=False`` (issue 8, security)."""

import fractions

import pytest
import torch

from polytask.errors import RunError
from polytask.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


class Evil:
    def __reduce__(self):
        return (print, ("executed",))


def saved(tmp_path):
    weights = {"w": torch.zeros(2)}
    return save_checkpoint(tmp_path, 1, Checkpoint(weights, weights, {}, {}, {"epoch": 1}))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [(Evil(), "GLOBAL print"), (fractions.Fraction(1, 3), "GLOBAL fractions.Fraction")],
    ids=["code", "object"],
)
def test_refused_unpickling_is_one_line_without_torchs_hint(tmp_path, capsys, payload, refused):
    path = saved(tmp_path)
    torch.save({"optimizer": payload, "balancer": {}}, path / "optim.pt")
    with pytest.raises(RunError) as caught:
        load_checkpoint(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert message == (
        f"{tmp_path}: the checkpoint is corrupt or incomplete (the weights-only loader refused "
        f"optim.pt: Unsupported global: {refused})"
    )
    assert "executed" not in capsys.readouterr().out


def test_garbage_optimizer_state_is_one_line(tmp_path):
    path = saved(tmp_path)
    (path / "optim.pt").write_bytes(b"garbage")
    with pytest.raises(RunError) as caught:
        load_checkpoint(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message
    assert message.startswith(f"{tmp_path}: the checkpoint is corrupt or incomplete (")
