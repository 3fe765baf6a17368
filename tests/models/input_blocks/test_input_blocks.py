"""Input blocks chosen by ``model.encoder``: shapes, every architecture over them, and clear
errors when the block does not fit the data or the config mixes options."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field
from torch import nn

from polytask.config import InputBlockConfig, ModelConfig, parse_config
from polytask.data.features import FeaturePreprocessor
from polytask.errors import ConfigError
from polytask.models.build import build_network
from polytask.models.input_blocks import (
    INPUT_BLOCKS,
    CNNOptions,
    ConvEncoder,
    GRUOptions,
    SequenceEncoder,
    image_shape,
    register_input_block,
    sequence_layout,
)
from polytask.options import INPUT_BLOCK_OPTIONS, Options
from polytask.tasks import task_from_dict

TASKS = [
    task_from_dict({"type": "multiclass", "name": "a", "columns": ("a",), "classes": tuple("xyz")}),
    task_from_dict(
        {"type": "regression", "name": "b", "columns": ("b",), "mean": (0.0,), "std": (1.0,)}
    ),
]


def features(numeric: list[str], categorical: tuple[str, ...] = ()) -> FeaturePreprocessor:
    vocab = {c: ["p", "q"] for c in categorical}
    return FeaturePreprocessor(
        list(numeric), list(categorical), [0.0] * len(numeric), [1.0] * len(numeric), vocab
    )


def pixels(n: int) -> FeaturePreprocessor:
    return features([f"px_{i}" for i in range(n)])


def inputs(encoder: FeaturePreprocessor, n: int = 5) -> dict[str, torch.Tensor]:
    return {
        "numeric": torch.randn(n, len(encoder.numeric)),
        "categorical": torch.randint(0, 3, (n, len(encoder.categorical))),
    }


def model_config(**encoder) -> ModelConfig:
    return ModelConfig(trunk=[16, 8], head=[4], encoder=InputBlockConfig(**encoder))


# --- config -----------------------------------------------------------------------------


def test_default_is_tabular_and_a_string_is_shorthand():
    assert ModelConfig().encoder.type == "tabular"
    raw = {"tasks": [{"name": "a", "type": "binary"}], "data": {"source": "x.csv"}}
    config = parse_config({**raw, "model": {"encoder": "cnn"}})
    assert config.model.encoder.type == "cnn" and config.model.encoder.options["channels"] == 1


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        ({"type": "cnn", "hidden": 8}, "'hidden' is an option of encoder 'gru', not of 'cnn'"),
        ({"type": "gru"}, "encoder 'gru' needs 'sequence'"),
        ({"type": "rnn"}, "model.encoder.type"),
        ({"type": "cnn", "kernal": 3}, "unknown key 'model.encoder.kernal' (did you mean 'kernel'"),
        ({"type": "tabular", "conv": [4]}, "'conv' is an option of encoder 'cnn'"),
    ],
)
def test_config_errors_name_the_key(encoder, message):
    raw = {"tasks": [{"name": "a", "type": "binary"}], "data": {"source": "x.csv"}}
    with pytest.raises(ConfigError, match="model.encoder") as info:
        parse_config({**raw, "model": {"encoder": encoder}})
    assert message in str(info.value)


def test_a_dumped_config_validates_again():
    for encoder in ({}, {"type": "cnn", "height": 4}, {"type": "gru", "sequence": ["y_"]}):
        config = ModelConfig(encoder=InputBlockConfig(**encoder))
        again = ModelConfig.model_validate(config.model_dump(mode="json"))
        assert again.encoder == config.encoder


# --- cnn --------------------------------------------------------------------------------


def test_cnn_shapes_and_square_inference():
    assert image_shape(CNNOptions(), pixels(324)) == (1, 18, 18)
    assert image_shape(CNNOptions(channels=3), pixels(3 * 64)) == (3, 8, 8)
    assert image_shape(CNNOptions(height=6), pixels(48)) == (1, 6, 8)
    block = ConvEncoder(1, 18, 18, [4, 8], 16)
    assert block(inputs(pixels(324))).shape == (5, 16)
    odd = ConvEncoder(2, 5, 3, [4, 4, 4], 7, kernel=5)  # pooling stops at 1 pixel
    assert odd(inputs(pixels(30))).shape == (5, 7)


@pytest.mark.parametrize(
    ("config", "data", "message"),
    [
        ({}, pixels(300), "model.encoder: 'cnn' needs the 300 numeric feature columns"),
        ({"height": 10, "width": 10}, pixels(324), "1×10×10 = 100, but the data has 324"),
        ({"height": 7}, pixels(324), "do not divide into 1 channel(s) × 7"),
        ({}, features(["a", "b", "c", "d"], ("colour",)), "model.encoder.type: 'cnn' reads"),
    ],
)
def test_cnn_mismatch_is_a_config_error(config, data, message):
    with pytest.raises(ConfigError) as info:
        build_network(model_config(type="cnn", **config), data, TASKS)
    assert message in str(info.value)


# --- gru --------------------------------------------------------------------------------


def lagged() -> FeaturePreprocessor:
    lags = [f"y_lag_{k}" for k in (3, 2, 1, 0)]
    temps = [f"t_lag_{k}" for k in (3, 2, 1, 0)]
    return features(["hour_sin", *lags, *temps, "wind"], ("weekday",))


def test_gru_layout_and_shapes():
    data = lagged()
    channels, static = sequence_layout(GRUOptions(sequence=["y_lag_", "t_lag_"]), data)
    assert channels == [[1, 2, 3, 4], [5, 6, 7, 8]] and static == [0, 9]
    block = SequenceEncoder(channels, static, data.cardinalities, 12, hidden=6, layers=2)
    assert block(inputs(data)).shape == (5, 12)
    only = features([f"y_lag_{k}" for k in range(6)])
    alone = SequenceEncoder(*sequence_layout(GRUOptions(sequence=["y_"]), only), [], 3)
    assert alone.static is None and alone(inputs(only)).shape == (5, 3)


def test_gru_reads_oldest_first():
    data = features(["y_lag_1", "y_lag_0"])
    block = SequenceEncoder([[0, 1]], [], [], 2, hidden=1)
    seen = {}
    block.gru.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    block({"numeric": torch.tensor([[1.0, 2.0]]), "categorical": torch.zeros(1, 0).long()})
    assert seen["x"].tolist() == [[[1.0], [2.0]]]
    assert data.numeric[0] == "y_lag_1"


@pytest.mark.parametrize(
    ("sequence", "message"),
    [
        (["z_lag_"], "no numeric feature column starts with 'z_lag_'"),
        (["y_lag_", "t_lag_1"], "every prefix must match the same number of steps"),
        (["y_lag_", "y_lag_0"], "every prefix must match"),
    ],
)
def test_gru_mismatch_is_a_config_error(sequence, message):
    with pytest.raises(ConfigError, match="model.encoder.sequence") as info:
        build_network(model_config(type="gru", sequence=sequence), lagged(), TASKS)
    assert message in str(info.value)


# --- every architecture over every encoder ------------------------------------------------

ARCHS = [
    {"arch": "hard"},
    {"arch": "soft"},
    {"arch": "mmoe", "experts": 2},
    {"arch": "cgc"},
    {"arch": "ple", "levels": 2},
    {"arch": "cross_stitch"},
    {"arch": "tied", "tied": [0]},
    {"arch": "groups", "groups": [["a"], ["b"]]},
]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a["arch"])
@pytest.mark.parametrize(
    ("encoder", "data"),
    [
        ({"type": "tabular"}, lagged()),
        ({"type": "cnn", "conv": [4]}, pixels(64)),
        ({"type": "gru", "sequence": ["y_lag_", "t_lag_"], "hidden": 4}, lagged()),
    ],
    ids=["tabular", "cnn", "gru"],
)
def test_every_architecture_gets_the_chosen_body(arch, encoder, data):
    config = ModelConfig(trunk=[16, 8], head=[4], encoder=InputBlockConfig(**encoder), **arch)
    model = build_network(config, data, TASKS)
    kind = {"tabular": "TabularEncoder", "cnn": "ConvEncoder", "gru": "SequenceEncoder"}
    names = {type(m).__name__ for m in model.modules()}
    assert kind[encoder["type"]] in names
    out = model(inputs(data))
    assert out["a"].shape == (5, 3) and out["b"].shape == (5, 1)
    out["a"].sum().backward()


# --- a new input block is one registration ------------------------------------------------


class ScaledOptions(Options):
    scale: float = Field(1.0, gt=0)


def scaled_block(options, features, out_features, dropout):
    def build() -> nn.Module:
        linear = nn.Linear(len(features.numeric), out_features)
        return nn.Sequential(_Numeric(), linear, _Scale(options.scale))

    return build


class _Numeric(nn.Module):
    def forward(self, inputs):
        return inputs["numeric"]


class _Scale(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


@pytest.fixture
def scaled(monkeypatch):
    monkeypatch.setitem(INPUT_BLOCKS, "scaled", None)
    register_input_block("scaled", ScaledOptions, scaled_block)
    yield
    INPUT_BLOCK_OPTIONS.unregister("scaled")


def test_a_registered_input_block_is_configured_by_name(scaled):
    raw = {"tasks": [{"name": "a", "type": "multiclass"}], "data": {"source": "x.csv"}}
    config = parse_config({**raw, "model": {"encoder": {"type": "scaled", "scale": 2.0}}})
    assert config.model.encoder.options == {"scale": 2.0}
    model = build_network(
        config.model.model_copy(update={"trunk": [4], "head": []}), lagged(), TASKS
    )
    assert any(isinstance(m, _Scale) and m.scale == 2.0 for m in model.modules())
    assert model(inputs(lagged()))["a"].shape == (5, 3)
    with pytest.raises(ConfigError, match=r"unknown key 'model.encoder.scal' \(did you mean"):
        parse_config({**raw, "model": {"encoder": {"type": "scaled", "scal": 2.0}}})
