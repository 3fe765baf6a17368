import pytest
import torch

from polytask.models import MMoE
from polytask.models.parts import linear_gate_factory

from .toy import OUTPUT_SIZES, WIDTH, make, toy_data


def test_gates_are_distributions_over_experts():
    model = make("mmoe", experts=4)
    x, _ = toy_data(n=9)
    gates = model.gate_weights(x)
    assert set(gates) == set(OUTPUT_SIZES)
    for weights in gates.values():
        assert weights.shape == (9, 4)
        assert bool((weights >= 0).all())
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(9))


def test_output_is_the_gated_mixture_of_experts():
    model = make("mmoe", experts=3)
    x, _ = toy_data(n=5)
    outputs, z = model.forward_with_representation(x)
    assert z.shape == (5, 3, WIDTH)
    weights = model.gate_weights(x)["cls"]
    expected = model.heads["cls"]((weights.unsqueeze(-1) * z).sum(dim=1))
    torch.testing.assert_close(outputs["cls"], expected)


def test_linear_gates_on_tensor_input():
    def expert():
        return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU())

    model = MMoE(expert, 4, {"a": 2, "b": 1}, experts=2, gate_factory=linear_gate_factory(5))
    assert isinstance(model.gates["a"], torch.nn.Linear)
    assert model(torch.randn(3, 5))["a"].shape == (3, 2)
    with pytest.raises(ValueError, match="experts"):
        MMoE(expert, 4, {"a": 2}, experts=0)
