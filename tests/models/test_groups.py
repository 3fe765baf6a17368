import pytest
import torch

from polytask.models import GroupSharing

from .toy import OUTPUT_SIZES, WIDTH, encoder, make, toy_data


def test_one_trunk_per_group_and_singletons_own_their_trunk():
    model = make("groups", groups=[["reg", "cls"], ["bin"]])
    assert len(model.trunks) == 2
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for p in model.trunks[0].parameters()}
    assert {id(p) for p in model.trunks[1].parameters()} <= {
        id(p) for p in model.task_parameters("bin")
    }
    x, _ = toy_data(n=3)
    _, z = model.forward_with_representation(x)
    assert z.shape == (3, 2, WIDTH)


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ([["reg", "cls"]], "task 'bin' is in no group"),
        ([["reg", "cls"], ["bin", "reg"]], "task 'reg' appears in more than one place"),
        ([["reg", "cls", "bin"], ["oops"]], "unknown task 'oops'"),
        ([["reg", "cls", "bin"], []], "empty"),
        (["reg", "cls", "bin"], "list of lists"),
    ],
)
def test_groups_must_cover_every_task_once(groups, match):
    with pytest.raises(ValueError, match=match):
        GroupSharing(encoder, WIDTH, OUTPUT_SIZES, groups=groups)


def test_each_head_reads_its_groups_trunk():
    model = make("groups", groups=[["reg"], ["cls", "bin"]])
    x, _ = toy_data(n=5)
    outputs = model(x)
    torch.testing.assert_close(outputs["reg"], model.heads["reg"](model.trunks[0](x)))
    torch.testing.assert_close(outputs["bin"], model.heads["bin"](model.trunks[1](x)))
