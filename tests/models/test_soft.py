import pytest
import torch

from polytask.models import SoftSharing

from .toy import OUTPUT_SIZES, WIDTH, encoder, make, toy_data


def _equalize(model: SoftSharing) -> None:
    first = model.towers["reg"].state_dict()
    for tower in model.towers.values():
        tower.load_state_dict(first)


def _distance(model: SoftSharing) -> float:
    towers = list(model.towers.values())
    return sum(
        float((a - b).detach().pow(2).sum())
        for a, b in zip(towers[0].parameters(), towers[1].parameters(), strict=True)
    )


def test_l2_penalty_is_zero_for_equal_towers_and_grows_with_distance():
    model = make("soft")
    _equalize(model)
    assert model.regularization().item() == pytest.approx(0.0, abs=1e-12)
    values = []
    for scale in (0.1, 0.2, 0.4):
        _equalize(model)
        with torch.no_grad():
            for p in model.towers["cls"].parameters():
                p.add_(scale)
        values.append(model.regularization().item())
    assert 0 < values[0] < values[1] < values[2]
    # one tower off by `scale` in every entry: Σ over 3 towers of (distance to mean)² = 2/3·s²·k
    k = sum(p.numel() for p in model.towers["cls"].parameters())
    assert values[2] == pytest.approx(1e-2 * (2 / 3) * 0.4**2 * k, rel=1e-4)


@pytest.mark.parametrize("penalty", ["l2", "trace"])
def test_penalty_gradient_pulls_towers_together(penalty):
    model = make("soft", penalty=penalty, strength=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = _distance(model)
    for _ in range(5):
        optimizer.zero_grad()
        model.regularization().backward()
        optimizer.step()
    assert _distance(model) < before


def test_trace_penalty_is_smallest_when_towers_are_equal():
    model = make("soft", penalty="trace", strength=1.0)
    _equalize(model)
    equal = model.regularization().item()
    norms = sum(float(p.detach().norm()) for p in model.towers["reg"].parameters())
    assert equal == pytest.approx(3**0.5 * norms, rel=1e-4)  # rank one: √T·‖w‖ per layer
    with torch.no_grad():
        for p in model.towers["bin"].parameters():
            p.add_(torch.randn_like(p))
    assert model.regularization().item() > equal


def test_nothing_is_shared_and_representation_stacks_towers():
    model = make("soft")
    assert list(model.shared_parameters()) == []
    x, _ = toy_data(n=4)
    _, z = model.forward_with_representation(x)
    assert z.shape == (4, len(OUTPUT_SIZES), WIDTH)
    torch.testing.assert_close(z[:, 1], model.towers["cls"](x))


def test_strength_scales_and_validation():
    assert make("soft", strength=0.0).regularization().item() == 0.0
    with pytest.raises(ValueError, match="penalty"):
        SoftSharing(encoder, WIDTH, OUTPUT_SIZES, penalty="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength"):
        SoftSharing(encoder, WIDTH, OUTPUT_SIZES, strength=-1.0)
