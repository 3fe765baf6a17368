"""``losses_from``: a loss-weighting method's scaled losses fed to a gradient method (IMTL =
IMTL-L + IMTL-G; UW/DWA feeding PCGrad, CAGrad, …), checked against autograd in float64."""

from __future__ import annotations

import io

import pytest
import torch

from polytask.balancers import BALANCERS, build_balancer
from polytask.balancers.dwa import DynamicWeightAverage
from polytask.balancers.imtl import IMTLG
from polytask.config import parse_config
from polytask.errors import ConfigError
from polytask.experiment import run_experiment
from tests.balancers.gb_toys import GRAMIAN_METHODS, toy_losses, toy_model
from tests.conftest import config_dict

TASKS = ("a", "b", "c")
S = (0.3, -0.5, 0.8)
SEEDED = ("pcgrad", "gradvac")


def _options(method: str) -> dict:
    return {"seed": 0} if method in SEEDED else {}


def _set_scales(balancer) -> None:
    with torch.no_grad():
        for p, v in zip(balancer.parameters(), S, strict=True):
            p.fill_(v)


def _factors(inner: str) -> torch.Tensor:
    s = torch.tensor(S)  # the scales are float32 parameters, their factors float32 too
    return (torch.exp(-s) if inner == "uw" else torch.exp(s)).double()


def _step(balancer, model, seed=0):
    losses, features = toy_losses(model, seed)
    return balancer.backward(losses, shared_params=model.shared_parameters(), features=features)


@pytest.mark.parametrize("mode", ["features", "params"])
@pytest.mark.parametrize("method", ["mgda", "imtl_g", "cagrad", "upgrad", "pcgrad"])
@pytest.mark.parametrize("inner", ["uw", "imtl_l"])
def test_model_grad_is_the_gradient_method_on_the_scaled_terms(inner, method, mode):
    model = toy_model(TASKS)
    balancer = build_balancer(method, TASKS, mode=mode, losses_from=inner, **_options(method))
    _set_scales(balancer)
    weights = _step(balancer, model)

    reference = toy_model(TASKS)
    ref_losses, ref_features = toy_losses(reference)
    factors = _factors(inner)
    terms = [factors[k] * ref_losses[n] for k, n in enumerate(TASKS)]
    plain = build_balancer(method, TASKS, mode=mode, **_options(method))
    shared = list(reference.shared_parameters())
    gramian, _ = plain.engine.gramian(terms, shared, ref_features)
    w = plain.weighting.weights(gramian, TASKS)
    expected = torch.autograd.grad(
        sum(w[k] * t for k, t in enumerate(terms)), [*reference.parameters()]
    )
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-8, atol=1e-11)
    effective = torch.tensor([weights[n] for n in TASKS], dtype=torch.float64)
    torch.testing.assert_close(effective, w * factors, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("mode", ["features", "params"])
@pytest.mark.parametrize("inner", ["uw", "imtl_l"])
def test_inner_parameters_get_the_gradient_of_their_own_objective(inner, mode):
    model = toy_model(TASKS)
    balancer = build_balancer("mgda", TASKS, mode=mode, losses_from=inner)
    _set_scales(balancer)
    assert balancer.parameters() == balancer.loss_source.parameters()
    losses, _ = toy_losses(toy_model(TASKS))
    values = torch.tensor([losses[n].item() for n in TASKS], dtype=torch.float64)
    _step(balancer, model)
    s = torch.tensor(S, dtype=torch.float64)
    # UW: Σ e^{-s}L + s; IMTL-L: Σ e^{s}L − s (nothing from the gradient method's weights).
    expected = 1 - torch.exp(-s) * values if inner == "uw" else torch.exp(s) * values - 1
    grads = torch.stack([p.grad for p in balancer.parameters()]).double()
    torch.testing.assert_close(grads, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", GRAMIAN_METHODS)
def test_equal_losses_give_the_plain_gradient_method(method):
    results = []
    for losses_from in (None, "equal"):
        model = toy_model(TASKS)
        options = {"losses_from": losses_from} if losses_from else {}
        balancer = build_balancer(method, TASKS, **options, **_options(method))
        weights = _step(balancer, model)
        results.append((weights, [p.grad for p in model.parameters()]))
    (w_plain, g_plain), (w_eq, g_eq) = results
    assert w_plain == pytest.approx(w_eq, rel=1e-12)
    for a, b in zip(g_plain, g_eq, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_imtl_is_imtl_g_on_imtl_l_scaled_losses_with_equal_projections():
    model = toy_model(TASKS)
    balancer = build_balancer("imtl", TASKS)
    assert isinstance(balancer.inner.weighting, IMTLG) and balancer.loss_source.name == "imtl_l"
    _set_scales(balancer)
    weights = _step(balancer, model)
    losses, features = toy_losses(toy_model(TASKS))
    factors = _factors("imtl_l")
    grads = torch.stack(
        [
            torch.autograd.grad(factors[k] * losses[n], features, retain_graph=True)[0].flatten()
            for k, n in enumerate(TASKS)
        ]
    )
    alpha = torch.tensor([weights[n] for n in TASKS], dtype=torch.float64) / factors
    assert float(alpha.sum()) == pytest.approx(1.0, abs=1e-10)  # IMTL-G's normalisation
    update = alpha @ grads
    projections = grads @ update / grads.norm(dim=1)
    torch.testing.assert_close(projections, projections[:1].expand(3), rtol=1e-8, atol=1e-12)
    assert all(p.grad is not None for p in balancer.parameters())


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("inner", ["dwa", "uw", "famo", "rlw"])
def test_state_round_trip_includes_the_inner_method(inner):
    def make():
        return build_balancer("pcgrad", TASKS, losses_from=inner, seed=1)

    first, model = make(), toy_model(TASKS)
    if inner == "uw":
        _set_scales(first)
    for k in range(3):
        _step(first, model, k)
        first.epoch_end({"a": 1.0 + k, "b": 2.0, "c": 3.0 / (k + 1)})
    second = make()
    second.load_state_dict(_roundtrip(first.state_dict()))
    assert "losses_from" in first.state_dict()
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)
    assert _step(first, toy_model(TASKS), 5) == _step(second, toy_model(TASKS), 5)


def test_epoch_end_reaches_dwa():
    balancer = build_balancer("cagrad", TASKS, losses_from="dwa")
    balancer.epoch_end({"a": 1.0, "b": 1.0, "c": 1.0})
    balancer.epoch_end({"a": 0.5, "b": 1.0, "c": 2.0})
    weights = _step(balancer, toy_model(TASKS))
    assert balancer.loss_source.history["c"] == [1.0, 2.0]
    assert set(weights) == set(TASKS)


@pytest.mark.parametrize("name", ["nope", "gradnorm", "db_mtl", "pcgrad", "imtl"])
def test_unknown_or_disallowed_losses_from(name):
    with pytest.raises(ConfigError, match="losses_from") as info:
        build_balancer("pcgrad", TASKS, losses_from=name)
    assert "imtl_l" in str(info.value) and "uw" in str(info.value)
    with pytest.raises(ConfigError, match="losses_from"):
        build_balancer("mgda", TASKS, losses_from=name)
    with pytest.raises(ConfigError, match="losses_from"):
        build_balancer("imtl", TASKS, losses_from="uw")  # imtl fixes its own


def test_config_pcgrad_on_dwa_trains_through_run_experiment(table, tmp_path, monkeypatch):
    calls = []
    original = DynamicWeightAverage.epoch_end

    def recording(self, mean_losses):
        calls.append(dict(mean_losses))
        original(self, mean_losses)

    monkeypatch.setattr(DynamicWeightAverage, "epoch_end", recording)
    raw = config_dict(
        str(table),
        output_dir=str(tmp_path / "runs"),
        balancer={"name": "pcgrad", "losses_from": "dwa"},
        training={"epochs": 2, "batch_size": 32, "lr": 0.01, "seed": 3},
    )
    result = run_experiment(parse_config(raw), baselines=False)
    assert result.run_dir.exists()
    assert len(calls) == 2 and set(calls[0]) == {"clicked", "segment", "spend"}


@pytest.mark.parametrize("inner", ["uw", "imtl_l", "dwa", "rlw", "gls", "famo", "equal", "fixed"])
def test_scaled_losses_match_the_methods_own_backward(inner):
    """Σ termᵢ (+ the objective) has the gradient the method's own ``backward`` writes, for the
    model and for the method's parameters, over steps that advance its state alike."""
    options = {"seed": 4} if inner == "rlw" else {}
    own, hook = build_balancer(inner, TASKS, **options), build_balancer(inner, TASKS, **options)
    for k in range(3):
        if k == 2:
            for b in (own, hook):
                b.epoch_end({"a": 1.0, "b": 2.0, "c": 0.5})
        model_a, model_b = toy_model(TASKS), toy_model(TASKS)
        weights = own.backward(toy_losses(model_a, k)[0])
        losses = toy_losses(model_b, k)[0]
        scaled = hook.scaled(list(TASKS), [losses[n] for n in TASKS])
        total = sum(scaled.terms.values())
        if scaled.objective is not None:
            total = total + scaled.objective
        total.backward()
        assert scaled.factors == pytest.approx(weights, rel=1e-6)
        for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-10)
        for p, q in zip(own.parameters(), hook.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(BALANCERS))
def test_only_a_method_that_does_not_need_the_global_losses_takes_each_process_part(name):
    """``summed=False`` (each process's own loss values, data-parallel training) is refused by
    a method that reads the global values; wrapped methods (``update_every``) read them."""
    balancer = build_balancer(name, ["a", "b"])
    wrapped = build_balancer("mgda", ["a", "b"], update_every=2)
    assert wrapped.needs_global_losses
    w = torch.ones(2, requires_grad=True)
    losses = {"a": (w**2).sum(), "b": w.sum()}
    options = {"shared_params": [w], "features": w.reshape(1, 2), "summed": False}
    if balancer.needs_global_losses:
        with pytest.raises(ValueError, match="needs the global loss values"):
            balancer.backward(losses, **options)
    else:  # in one process the parts are the global values: a step as usual
        assert set(balancer.backward(losses, **options)) == {"a", "b"}
