"""Balancer states saved before the issue-7 redesign still load and continue exactly as the old
code did (``data/legacy_states.pt``, written by ``data/make_legacy_states.py`` at e488650)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gb_toys import run_step, toy_model

from polytask.balancers import build_balancer

DATA = Path(__file__).parent / "data"
CASES = torch.load(DATA / "legacy_states.pt", weights_only=True)
TASKS = ("a", "b", "c")
#: Learned scales feeding a gradient method: the old code computed their factors e^{±s} in the
#: losses' float64 there but in the scales' float32 alone; now both use float32 (one rule), so
#: these agree to float32 round-off only.
LEARNED_SCALES_COMPOSED = {"imtl", "upgrad_uw"}


@pytest.mark.parametrize("key", sorted(CASES))
def test_legacy_state_resumes_with_the_old_next_steps(key: str) -> None:
    case = CASES[key]
    model = toy_model(TASKS)
    model.load_state_dict(case["model"])
    balancer = build_balancer(case["name"], list(TASKS), **case["options"])
    balancer.load_state_dict(case["state"])
    rel, tiny = (1e-5, 1e-9) if key in LEARNED_SCALES_COMPOSED else (1e-12, 1e-15)
    for k, weights, grad in zip((10, 11), case["next_weights"], case["next_grads"], strict=True):
        got, got_grad = run_step(balancer, model, k)
        assert got.keys() == weights.keys()
        for name in TASKS:
            assert got[name] == pytest.approx(weights[name], rel=rel, abs=tiny), (key, k, name)
        torch.testing.assert_close(got_grad, grad, rtol=rel, atol=tiny)
