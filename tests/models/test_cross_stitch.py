import pytest
import torch
from torch import nn

from polytask.models import CrossStitch, CrossStitchUnit, TabularEncoder

from .toy import OUTPUT_SIZES, WIDTH, encoder, make, toy_data


def test_unit_initialisation_near_identity():
    alpha = CrossStitchUnit(3, self_weight=0.9).alpha.detach()
    torch.testing.assert_close(alpha.diagonal(), torch.full((3,), 0.9))
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(3))
    assert CrossStitchUnit(1).alpha.item() == 1.0


def test_identity_mixing_equals_independent_columns():
    model = make("cross_stitch")
    with torch.no_grad():
        for unit in model.units:
            unit.alpha.copy_(torch.eye(3))
    x, _ = toy_data(n=6)
    outputs, z = model.forward_with_representation(x)
    for i, name in enumerate(model.task_names):
        alone = model.columns[name](x)
        torch.testing.assert_close(z[:, i], alone)
        torch.testing.assert_close(outputs[name], model.heads[name](alone))


def test_default_mixing_couples_columns():
    model = make("cross_stitch")
    x, _ = toy_data(n=6)
    _, z = model.forward_with_representation(x)
    assert not torch.allclose(z[:, 0], model.columns["reg"](x))
    assert z.shape == (6, 3, WIDTH)
    assert len(model.units) == 2


def test_needs_a_sequential_body():
    def plain():
        return TabularEncoder(3, [4, 3], hidden=[WIDTH])

    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        CrossStitch(plain, WIDTH, OUTPUT_SIZES)
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        CrossStitch(nn.Sequential, WIDTH, OUTPUT_SIZES)
    assert isinstance(CrossStitch(encoder, WIDTH, OUTPUT_SIZES), CrossStitch)
