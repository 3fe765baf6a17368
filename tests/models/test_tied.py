import pytest
import torch

from polytask.models import TiedCopies

from .toy import OUTPUT_SIZES, WIDTH, encoder, make, toy_data


def test_tied_layer_is_one_object_listed_once():
    model = make("tied", tied=[0])
    copies = list(model.copies.values())
    assert all(c[0] is copies[0][0] for c in copies)
    assert all(c[1] is not copies[0][1] for c in copies[1:])
    shared = list(model.shared_parameters())
    assert {id(p) for p in shared} == {id(p) for p in copies[0][0].parameters()}
    n_shared = sum(p.numel() for p in shared)
    n_untied = sum(p.numel() for p in copies[0][1].parameters())
    n_heads = sum(p.numel() for p in model.heads.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_shared + 3 * n_untied + n_heads


def test_tied_gradient_collects_every_task():
    model = make("tied", tied=["0.embeddings"])
    x, _ = toy_data(n=8)
    outputs = model(x)
    embedding = model.copies["reg"][0].embeddings[0].weight
    grads = [
        torch.autograd.grad(outputs[t].sum(), embedding, retain_graph=True)[0] for t in outputs
    ]
    assert all(g.abs().sum() > 0 for g in grads)
    assert [p is embedding for p in model.shared_parameters()].count(True) == 1


def test_layers_by_name_and_negative_index():
    assert make("tied", tied=["1"]).tied_layers == ("1",)
    assert make("tied", tied=[-1]).tied_layers == ("1",)
    nothing = make("tied", tied=[])
    assert list(nothing.shared_parameters()) == []


@pytest.mark.parametrize(
    ("tied", "match"),
    [([5], "out of range"), (["nope"], "not a submodule"), ([0, "0"], "twice"), ([1.5], "int")],
)
def test_bad_layer_references(tied, match):
    with pytest.raises(ValueError, match=match):
        TiedCopies(encoder, WIDTH, OUTPUT_SIZES, tied=tied)
