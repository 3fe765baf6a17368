"""Balancer options are checked against the constructor's annotated types (issue 8): a value of
the wrong type, a boolean for a number or a non-finite number is one ConfigError naming the
key, never a balancer silently built on it; every default stays accepted."""

import inspect
import typing

import pytest
import yaml

from polytask.balancers import BALANCERS, build_balancer
from polytask.balancers.registry import GRAMIAN_OPTIONS, PRESETS, options_of
from polytask.checks import check_config
from polytask.config import load_config
from polytask.errors import ConfigError
from tests.conftest import config_dict

TASKS = ["a", "b"]
#: The options the Gramian engine and the wrappers add to every Gramian weighting.
ENGINE_DEFAULTS = {
    "mode": "features",
    "update_every": 1,
    "reuse_jacobian": True,
    "losses_from": None,
}

# Each built a balancer before (NaN trade-offs, float or boolean seeds and counts, a truthy
# string for a flag, a number for a mapping); ``update_every: 0`` is the constructor's check.
BAD = {  # YAML balancer section: the fragment of the one-line error
    "{name: cagrad, c: .nan}": "balancer.c: input should be a finite number, got nan",
    "{name: cagrad, c: .inf}": "balancer.c: input should be a finite number, got inf",
    "{name: cagrad, c: -.inf}": "balancer.c: input should be a finite number",
    "{name: cagrad, rescale: 1}": "balancer.rescale: input should be a valid boolean, got 1",
    "{name: famo, weight_decay: .nan}": "balancer.weight_decay: input should be a finite number",
    "{name: famo, lr: 'nan'}": "balancer.lr: input should be a finite number, got 'nan'",
    "{name: famo, update: 1}": "balancer.update: input should be 'adam' or 'sgd', got 1",
    "{name: uncertainty, init: .nan}": "balancer.init: input should be a finite number",
    "{name: imtl_l, init: [1.0]}": "balancer.init: input should be a valid number",
    "{name: pcgrad, seed: 0.5}": "balancer.seed: input should be a valid integer, got 0.5",
    "{name: pcgrad, seed: 2.0}": "balancer.seed: input should be a valid integer, got 2.0",
    "{name: rlw, seed: true}": "balancer.seed: input should be a valid integer, got true",
    "{name: mgda, reuse_jacobian: 'x'}": "balancer.reuse_jacobian: input should be a valid boolean",
    "{name: mgda, mode: 1}": "balancer.mode: input should be 'features' or 'params', got 1",
    "{name: fixed, weights: 0}": "balancer.weights: input should be a valid dictionary, got 0",
    "{name: fixed, weights: {a: .nan}}": "balancer.weights.a: input should be a finite number",
    "{name: fixed, weights: {a: true}}": "balancer.weights.a: expected a number, got true",
    "{name: pcgrad, update_every: true}": "balancer.update_every: input should be a valid integer",
    "{name: pcgrad, update_every: 1.5}": "balancer.update_every: input should be a valid integer",
    "{name: pcgrad, update_every: 0}": "update_every must be a positive integer, got 0",
    "{name: pcgrad, losses_from: 3}": "balancer.losses_from: input should be a valid string, got 3",
    "{name: dwa, temperature: true}": "balancer.temperature: expected a number, got true",
    "{name: gradnorm, last_params: 1.0}": "balancer.last_params: input should be a valid integer",
    "{name: graddrop, leak: .nan}": "balancer.leak: input should be a finite number",
    "{name: aligned_mtl, scale_mode: max}": "balancer.scale_mode: input should be 'min', 'median'",
    "{name: nash_mtl, on_failure: ignore}": "balancer.on_failure: input should be 'warn'",
}


@pytest.mark.parametrize(("section", "fragment"), BAD.items(), ids=list(BAD))
def test_an_option_of_the_wrong_type_is_one_config_error_naming_the_key(section, fragment):
    options = yaml.safe_load(section)
    name = options.pop("name")
    with pytest.raises(ConfigError) as caught:
        build_balancer(name, TASKS, **options)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert fragment in message, message
    assert f"balancer '{name}'" in message, message


def test_a_config_file_with_a_nan_option_fails_before_anything_runs(tmp_path):
    raw = config_dict("table.csv", balancer={"name": "cagrad", "c": float("nan")})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert "c: .nan" in path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^balancer\.c: input should be a finite number"):
        check_config(load_config(path))


def test_unknown_options_keep_their_did_you_mean_message():
    with pytest.raises(ConfigError) as caught:
        build_balancer("cagrad", TASKS, cc=0.4)
    assert str(caught.value) == (
        "balancer.cc: 'cagrad' has no option 'cc' (did you mean 'c'?); its options are "
        "['c', 'rescale', 'mode', 'update_every', 'reuse_jacobian', 'losses_from']"
    )
    with pytest.raises(ConfigError, match=r"^balancer.losses_from: 'imtl' has no option"):
        build_balancer("imtl", TASKS, losses_from="uw")  # fixed by its preset


def _defaults(name: str) -> dict[str, typing.Any]:
    """Every option of ``name`` with the default value it takes when left out."""
    method = BALANCERS[name]
    own = inspect.signature(method.__init__).parameters
    defaults = {k: own[k].default if k in own else ENGINE_DEFAULTS[k] for k in options_of(method)}
    return {k: v for k, v in defaults.items() if k not in PRESETS.get(name, {})}


@pytest.mark.parametrize("name", sorted(BALANCERS))
def test_every_default_passed_explicitly_is_accepted(name):
    defaults = _defaults(name)
    assert build_balancer(name, TASKS).name == build_balancer(name, TASKS, **defaults).name
    for key, value in defaults.items():
        build_balancer(name, TASKS, **{key: value})


@pytest.mark.parametrize("name", sorted(BALANCERS))
def test_every_option_is_annotated(name):
    """An unannotated option would take any value unchecked."""
    method = BALANCERS[name]
    own = set(options_of(method)) - set(GRAMIAN_OPTIONS)
    assert own <= set(typing.get_type_hints(method.__init__)), name


def test_numbers_take_ints_and_numeric_strings_and_keep_their_value():
    famo = build_balancer("famo", TASKS, lr="1e-3", weight_decay=0)  # YAML reads 1e-3 as a string
    assert (famo.lr, famo.weight_decay) == (1e-3, 0.0)
    fixed = build_balancer("fixed", TASKS, weights={"a": 2, "b": "0.5"})
    assert fixed.weights == {"a": 2.0, "b": 0.5}
    cagrad = build_balancer("cagrad", TASKS, c=1, rescale=False)
    assert (cagrad.weighting.c, cagrad.weighting.rescale) == (1.0, False)
    assert build_balancer("pcgrad", TASKS, update_every=3).every == 3


def test_a_preset_is_refused_on_a_balancer_that_is_not_a_gramian_weighting():
    from polytask.balancers import BALANCERS, UncertaintyWeighting, register_balancer

    with pytest.raises(TypeError, match="presets compose Gramian weightings only"):
        register_balancer("uw_preset_test", init=1.0)(UncertaintyWeighting)
    assert "uw_preset_test" not in BALANCERS
