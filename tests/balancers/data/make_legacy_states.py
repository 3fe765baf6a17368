"""Writes ``legacy_states.pt``: balancer states saved by the code before the issue-7 redesign
(commit e488650), with the weights and shared gradients that code produced on the next two
steps. Kept for provenance; ``test_legacy_states.py`` checks the current code against it.

Run from the repository root: ``python tests/balancers/data/make_legacy_states.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from gb_toys import run_step, toy_model  # noqa: E402

from polytask.balancers import build_balancer  # noqa: E402

TASKS = ("a", "b", "c")
#: key -> (registered name, options)
CASES = {
    "uncertainty": ("uncertainty", {}),
    "famo": ("famo", {}),
    "pcgrad_params": ("pcgrad", {"mode": "params", "seed": 1}),
    "nash_mtl": ("nash_mtl", {}),
    "imtl": ("imtl", {}),
    "dwa": ("dwa", {}),
    "gradnorm": ("gradnorm", {}),
    "rlw": ("rlw", {"seed": 3}),
    "cagrad_composed": (
        "cagrad",
        {
            "c": 0.4,
            "mode": "params",
            "update_every": 2,
            "reuse_jacobian": False,
            "losses_from": "dwa",
        },
    ),
    "gradvac_every2": ("gradvac", {"seed": 2, "update_every": 2}),
    "graddrop_params": ("graddrop", {"seed": 5, "mode": "params"}),
    "db_mtl": ("db_mtl", {}),
    "upgrad_uw": ("upgrad", {"losses_from": "uw"}),
}


def record(name: str, options: dict) -> dict:
    model = toy_model(TASKS)
    balancer = build_balancer(name, list(TASKS), **options)
    for k in range(3):
        run_step(balancer, model, k)
        balancer.epoch_end({"a": 1.0 + k, "b": 2.0, "c": 3.0 / (k + 1)})
    saved = {
        "name": name,
        "options": options,
        "state": balancer.state_dict(),
        "model": {k: v.clone() for k, v in model.state_dict().items()},
    }
    weights, grads = [], []
    for k in (10, 11):
        w, g = run_step(balancer, model, k)
        weights.append(w)
        grads.append(g)
    saved["next_weights"], saved["next_grads"] = weights, grads
    return saved


if __name__ == "__main__":
    torch.set_num_threads(1)
    cases = {key: record(name, options) for key, (name, options) in CASES.items()}
    torch.save(cases, HERE / "legacy_states.pt")
    print({k: v["next_weights"][0] for k, v in cases.items()})
