import pytest

from polytask.models import CGC, PLE

from .toy import OUTPUT_SIZES, WIDTH, encoder, make, toy_data


def test_cgc_is_one_level_without_shared_gate():
    model = make("cgc", shared_experts=2, task_experts=3)
    assert isinstance(model, CGC) and len(model.levels) == 1
    level = model.levels[0]
    assert level.shared_gate is None
    assert len(level.shared) == 2 and all(len(e) == 3 for e in level.specific.values())
    x, _ = toy_data(n=4)
    _, z = model.forward_with_representation(x)
    assert z.shape == (4, 2, WIDTH)  # the shared experts' outputs


@pytest.mark.parametrize("levels", [2, 3])
def test_ple_levels_and_representation(levels):
    model = make("ple", levels=levels, shared_experts=2)
    assert [level.shared_gate is not None for level in model.levels] == [True] * (levels - 1) + [
        False
    ]
    x, _ = toy_data(n=4)
    outputs, z = model.forward_with_representation(x)
    assert z.shape == (4, 2 + len(OUTPUT_SIZES), WIDTH)
    assert outputs["cls"].shape == (4, 3)


def test_intermediate_task_experts_are_shared_top_ones_are_not():
    model = make("ple", levels=2)
    shared = {id(p) for p in model.shared_parameters()}
    reg = {id(p) for p in model.task_parameters("reg")}
    assert {id(p) for p in model.levels[0].specific["reg"].parameters()} <= shared
    assert {id(p) for p in model.levels[1].specific["reg"].parameters()} <= reg
    assert {id(p) for p in model.levels[0].gates["reg"].parameters()} <= reg


def test_validation():
    with pytest.raises(ValueError, match="levels"):
        PLE(encoder, WIDTH, OUTPUT_SIZES, levels=0)
    with pytest.raises(ValueError, match="shared_experts"):
        CGC(encoder, WIDTH, OUTPUT_SIZES, shared_experts=0)
