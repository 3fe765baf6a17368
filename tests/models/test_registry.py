import pytest
from torch import nn

from polytask.errors import ConfigError
from polytask.models import ARCHITECTURES, HardSharing, build_model, options_for
from polytask.options import ARCHITECTURE_OPTIONS, Options

from .toy import OUTPUT_SIZES, WIDTH, encoder


def _build(arch, **options):
    return build_model(
        arch, encoder_factory=encoder, encoder_width=WIDTH, output_sizes=OUTPUT_SIZES, **options
    )


def test_registry_names():
    expected = {"hard", "soft", "tied", "cross_stitch", "mmoe", "cgc", "ple", "groups"}
    assert expected <= set(ARCHITECTURES)  # the README registers one more
    for arch in ARCHITECTURES:  # every architecture's options are what the config validates
        assert issubclass(options_for(arch), Options)
        assert ARCHITECTURE_OPTIONS.options(arch) is options_for(arch)


def test_hard_uses_head_factory():
    model = _build(
        "hard", head_factory=lambda i, o: nn.Sequential(nn.Linear(i, 2), nn.Linear(2, o))
    )
    assert isinstance(model, HardSharing)
    assert isinstance(model.heads["cls"], nn.Sequential)


def test_unknown_architecture_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'mmoe'"):
        _build("mmeo")


def test_unknown_option_suggests_a_name():
    with pytest.raises(ConfigError, match=r"model\.expert: .*did you mean 'experts'"):
        _build("mmoe", expert=3)


def test_missing_required_option():
    with pytest.raises(ConfigError, match="needs option 'groups'"):
        _build("groups")


@pytest.mark.parametrize(
    ("arch", "options", "match"),
    [
        ("groups", {"groups": [["reg"], ["cls"]]}, "task 'bin' is in no group"),
        ("mmoe", {"experts": 0}, "experts"),
        ("soft", {"penalty": "l1"}, "penalty"),
        ("tied", {"tied": ["nope"]}, "not a submodule"),
    ],
)
def test_configurations_an_architecture_cannot_serve(arch, options, match):
    with pytest.raises(ConfigError, match=match):
        _build(arch, **options)


def test_cross_stitch_rejects_a_non_sequential_body():
    with pytest.raises(ConfigError, match=r"nn\.Sequential"):
        build_model(
            "cross_stitch",
            encoder_factory=lambda: nn.Linear(3, WIDTH),
            encoder_width=WIDTH,
            output_sizes=OUTPUT_SIZES,
        )


def test_bad_output_sizes():
    with pytest.raises(ConfigError, match="output size"):
        build_model("hard", encoder_factory=encoder, encoder_width=WIDTH, output_sizes={"a": 0})
