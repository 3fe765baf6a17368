import csv

import pytest
import torch
from safetensors.torch import load_file

from polytask.balancers import build_balancer
from polytask.config import parse_config
from polytask.data import prepare_data
from polytask.errors import ConfigError
from polytask.experiment import make_trainer, run_experiment
from polytask.models import MTRL, build_model
from polytask.models.mtrl import correlations, covariance_update, relationship_penalty
from polytask.reporting.plots import write_relationships
from polytask.testing.architectures import check_architecture
from polytask.training import Trainer

from ..conftest import config_dict
from .toy import OUTPUT_SIZES, WIDTH, encoder, make, task_losses, toy_data


def _gram_root(gram: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(gram)
    return vectors @ torch.diag(values.sqrt()) @ vectors.T


def test_covariance_update_is_the_normalised_square_root_of_the_gram():
    w = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    omega = covariance_update(w, ridge=1e-2)
    root = _gram_root(w.T @ w + 1e-2 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(omega, root / torch.trace(root))
    torch.testing.assert_close(omega, omega.T)
    assert float(torch.trace(omega)) == pytest.approx(1.0)
    assert float(torch.linalg.eigvalsh(omega).min()) > 0
    # (tr · Ω)² is the ridged Gram itself
    scale = float(
        torch.linalg.eigvalsh(w.T @ w + 1e-2 * torch.eye(3, dtype=torch.float64)).sqrt().sum()
    )
    torch.testing.assert_close(
        (scale * omega) @ (scale * omega), w.T @ w + 1e-2 * torch.eye(3, dtype=torch.float64)
    )


def test_covariance_update_on_orthogonal_columns_by_hand():
    w = torch.zeros(4, 2, dtype=torch.float64)
    w[0, 0], w[1, 1] = 3.0, 4.0  # WᵀW = diag(9, 16)
    omega = covariance_update(w, ridge=0.0)
    torch.testing.assert_close(omega, torch.diag(torch.tensor([3 / 7, 4 / 7], dtype=torch.float64)))
    zero = covariance_update(torch.zeros(5, 3), ridge=1e-3)  # degenerate W: Ω = I/T
    torch.testing.assert_close(zero, torch.eye(3, dtype=torch.float64) / 3)


def test_towers_and_equal_heads_start_alike_so_their_units_correspond():
    model = make("mtrl")
    for name in ("cls", "bin"):
        for a, b in zip(
            model.towers["reg"].parameters(), model.towers[name].parameters(), strict=True
        ):
            assert torch.equal(a, b)
    w = model.coupled_weights()
    assert torch.equal(w[:, 0], w[:, 2])
    reg, bin_ = model.heads["reg"].state_dict(), model.heads["bin"].state_dict()
    assert all(torch.equal(reg[k], bin_[k]) for k in reg)  # both have one output


def test_coupled_weights_are_the_towers_last_layers_as_columns():
    model = make("mtrl")
    w = model.coupled_weights()
    for t, name in enumerate(model.task_names):
        last = model.towers[name][1][0]  # the body's final Linear
        torch.testing.assert_close(w[:, t], torch.cat([last.weight.flatten(), last.bias]))
    tower = make("mtrl", layers="tower").coupled_weights()
    assert tower.shape == (sum(p.numel() for p in model.towers["reg"].parameters()), 3)


def test_penalty_and_its_gradient_match_a_naive_computation():
    model = make("mtrl", strength=0.7)
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.omega.copy_(a @ a.T + 0.5 * torch.eye(3))
    model.eval()  # no Ω update
    w = model.coupled_weights()
    naive = 0.7 * torch.trace(w @ torch.linalg.inv(model.omega) @ w.T)
    penalty = model.regularization()
    torch.testing.assert_close(penalty, naive, rtol=1e-5, atol=1e-6)
    # d/dW λ tr(W Ω⁻¹ Wᵀ) = 2 λ W Ω⁻¹ (Ω symmetric), landing in each tower's last layer
    expected = 2 * 0.7 * w.detach() @ torch.linalg.inv(model.omega)
    penalty.backward()
    for t, name in enumerate(model.task_names):
        last = model.towers[name][1][0]
        got = torch.cat([last.weight.grad.flatten(), last.bias.grad])
        torch.testing.assert_close(got, expected[:, t], rtol=1e-4, atol=1e-6)
        assert model.towers[name][0].parameters().__next__().grad is None  # not coupled
    leaf = w.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(relationship_penalty(leaf, model.omega), leaf)
    torch.testing.assert_close(grad, expected / 0.7, rtol=1e-4, atol=1e-6)


def test_planted_weights_give_the_planted_correlation_signs():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(200, generator=g), torch.randn(200, generator=g)
    noise = 0.05 * torch.randn(200, generator=g)
    w = torch.stack([u, u + noise, -u, v], dim=1)  # identical, identical, opposite, independent
    r = correlations(covariance_update(w, ridge=1e-3))
    torch.testing.assert_close(r.diagonal(), torch.ones(4, dtype=torch.float64))
    assert r[0, 1] > 0.9 and r[0, 2] < -0.95 and r[1, 2] < -0.9
    assert abs(float(r[0, 3])) < 0.15 and abs(float(r[2, 3])) < 0.15


def test_omega_is_updated_every_k_training_steps_only():
    model = make("mtrl", update_every=3)
    model.train()
    start = model.omega.clone()
    torch.testing.assert_close(start, torch.eye(3) / 3)
    for _ in range(2):
        model.regularization()
    assert torch.equal(model.omega, start)
    model.regularization()  # third step: Ω = update(W)
    expected = covariance_update(model.coupled_weights(), 1e-3).float()
    torch.testing.assert_close(model.omega, expected)
    model.eval()
    for _ in range(5):
        model.regularization()
    assert int(model.steps) == 3  # evaluation does not count
    with torch.no_grad():
        model.towers["cls"][1][0].weight[0, 0] = float("nan")
    model.update_relationships()  # a diverged W keeps the last Ω
    torch.testing.assert_close(model.omega, expected)


def test_penalty_steps_shrink_w_fastest_against_the_learned_relationship():
    # two aligned towers and one anti-aligned: Ω's top eigenvector has the sign pattern
    # (+, +, -); with Ω fixed, an SGD step on λ·tr(WΩ⁻¹Wᵀ) maps W ↦ W(I − 2ηλΩ⁻¹), so W's
    # component along an eigenvector of eigenvalue μ shrinks by (1 − 2ηλ/μ) per step: slowest
    # along the relationship, fastest against it
    model = make("mtrl", strength=1.0, update_every=1000)
    with torch.no_grad():
        base = model.towers["reg"][1][0]
        for name, sign in (("cls", 1.0), ("bin", -1.0)):
            last = model.towers[name][1][0]
            last.weight.copy_(sign * base.weight + 0.02 * torch.randn_like(base.weight))
            last.bias.copy_(sign * base.bias)
        model.update_relationships()
    r = correlations(model.omega.double())
    assert r[0, 1] > 0.8 and r[0, 2] < -0.8 and r[1, 2] < -0.8
    values, vectors = torch.linalg.eigh(model.omega)
    top = vectors[:, -1] * torch.sign(vectors[0, -1])
    assert top[0] > 0 and top[1] > 0 and top[2] < 0
    lr = 0.1 * float(values[0]) / 2
    before = model.coupled_weights().detach() @ vectors
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(5):
        optimizer.zero_grad()
        model.regularization().backward()
        optimizer.step()
    after = model.coupled_weights().detach() @ vectors
    ratios = after.norm(dim=0) / before.norm(dim=0)
    torch.testing.assert_close(ratios, (1 - 2 * lr / values) ** 5, rtol=1e-3, atol=1e-5)
    assert ratios[0] < 0.6 < 0.95 < ratios[-1]


def test_contract_and_state_dict_keep_omega():
    check_architecture("mtrl", options={"update_every": 2})
    model = make("mtrl", update_every=1)
    model.train()
    model.regularization()
    fresh = make("mtrl", seed=1)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.omega, model.omega) and int(fresh.steps) == 1


def test_params_mode_is_refused_and_options_are_strict():
    model = make("mtrl")
    assert list(model.shared_parameters()) == []
    x, targets = toy_data(n=4)
    _, z = model.forward_with_representation(x)
    assert z.shape == (4, len(OUTPUT_SIZES), WIDTH)
    assert task_losses(model(x), targets).keys() == OUTPUT_SIZES.keys()
    with pytest.raises(ValueError, match="shares none"):
        Trainer(model, [], balancer=build_balancer("mgda", list(OUTPUT_SIZES), mode="params"))
    for bad in ({"update_every": 0}, {"update_every": 2.0}, {"update_every": True},
                {"ridge": 0.0}, {"strength": float("nan")}, {"ridge": float("inf")},
                {"layers": "head"}):  # fmt: skip
        with pytest.raises(ConfigError, match=f"model.{next(iter(bad))}"):
            build_model(
                "mtrl", encoder_factory=encoder, encoder_width=WIDTH, output_sizes=OUTPUT_SIZES,
                **bad,
            )  # fmt: skip
    assert isinstance(make("mtrl"), MTRL)


def test_params_mode_in_a_config_is_a_config_error(table):
    raw = config_dict(str(table))
    raw["model"]["arch"] = "mtrl"
    raw["balancer"] = {"name": "mgda", "mode": "params"}
    config = parse_config(raw)
    with pytest.raises(ConfigError, match="model.arch 'mtrl' shares none"):
        make_trainer(
            config, prepare_data(config), prepare_data(config).tasks, reference=None,
            progress=False, label="", checkpoint_dir=None,
        )  # fmt: skip


def test_a_run_writes_the_learned_task_correlations(tmp_path, table):
    raw = config_dict(str(table), output_dir=str(tmp_path / "runs"), name="m")
    raw["model"].update(arch="mtrl", update_every=2, strength=1e-2)
    raw["training"]["epochs"] = 2
    result = run_experiment(parse_config(raw), baselines=False)
    with (result.run_dir / "task_relationships.csv").open() as handle:
        rows = list(csv.reader(handle))
    names = ["clicked", "segment", "spend"]
    assert rows[0] == ["task", *names] and [row[0] for row in rows[1:]] == names
    matrix = torch.tensor([[float(v) for v in row[1:]] for row in rows[1:]], dtype=torch.float64)
    omega = load_file(result.run_dir / "model.safetensors")["omega"].double()
    assert not torch.allclose(omega, torch.eye(3, dtype=torch.float64) / 3)  # it was learned
    torch.testing.assert_close(matrix, correlations(omega), rtol=1e-5, atol=1e-6)
    assert (result.run_dir / "task_relationships.png").stat().st_size > 0
    hard = config_dict(str(table), output_dir=str(tmp_path / "runs"), name="h")
    hard["training"]["epochs"] = 1
    other = run_experiment(parse_config(hard), baselines=False)
    assert not (other.run_dir / "task_relationships.csv").exists()


def test_resume_restores_omega_exactly(tmp_path, table):
    raw = config_dict(str(table))
    raw["model"].update(arch="mtrl", update_every=3)
    config = parse_config(raw)
    data = prepare_data(config)

    def run(epochs, directory, resume):
        trainer = make_trainer(
            config, data, data.tasks, reference=None, progress=False, label="t",
            checkpoint_dir=directory,
        )  # fmt: skip
        trainer.epochs = epochs
        trainer.fit(data.train_source(32, "proportional", 2.0), None, resume=resume)
        return trainer.model

    straight = run(3, tmp_path / "a", resume=False)
    run(2, tmp_path / "b", resume=False)
    resumed = run(3, tmp_path / "b", resume=True)
    assert not torch.allclose(straight.omega, torch.eye(3) / 3)
    assert torch.equal(straight.omega, resumed.omega)
    assert torch.equal(straight.steps, resumed.steps)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_relationship_files_need_a_square_matrix_of_the_tasks(tmp_path):
    with pytest.raises(ValueError, match="2 x 2"):
        write_relationships(["a", "b"], [[1.0]], tmp_path / "r.csv", tmp_path / "r.png")
    assert not (tmp_path / "r.csv").exists()
