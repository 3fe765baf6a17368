"""Property tests of the config loader, its checks and the ``train`` command on bad configs.

Every generated config either loads (and passes :func:`~polytask.checks.check_config`) or raises
a :class:`~polytask.errors.PolytaskError` whose message is one line; through the command line,
exit code 2 and one line on stderr. The cases are mutations of a valid config (keys dropped or
misspelt, values of the wrong type, unknown names and options) and raw YAML or byte garbage.
Deterministic (``derandomize``) and without an example database, so nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import polytask.models  # registers the architectures and input blocks
import polytask.tasks  # noqa: F401  (registers the task types)
from polytask import cli
from polytask.balancers import BALANCERS
from polytask.balancers.registry import options_of
from polytask.checks import check_config
from polytask.config import load_config, parse_config
from polytask.data.builtin import BUILTIN_DATASETS
from polytask.errors import ConfigError, PolytaskError
from polytask.options import ARCHITECTURE_OPTIONS, INPUT_BLOCK_OPTIONS, TASK_OPTIONS

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

VALID: dict[str, Any] = {
    "name": "fuzz",
    "output_dir": "runs",
    "data": {
        "source": "absent-table.csv",
        "split": {"validation": 0.2, "test": 0.2, "seed": 1},
        "sampler": "proportional",
        "temperature": 2.0,
    },
    "features": {"numeric": ["x1", "x2"], "categorical": ["colour"], "drop": [], "text": []},
    "tasks": [
        {
            "name": "clicked",
            "type": "binary",
            "positive": "yes",
            "weight": 1.0,
            "lr_schedule": {"type": "plateau", "factor": 0.5, "patience": 1},
        },
        {"name": "segment", "type": "multiclass", "metrics": ["accuracy"]},
        {"name": "spend", "type": "regression", "target": "spend", "auxiliary": False},
    ],
    "model": {
        "arch": "mmoe",
        "experts": 2,
        "trunk": [8],
        "head": [4],
        "dropout": 0.1,
        "encoder": {"type": "tabular"},
    },
    "training": {
        "epochs": 2,
        "batch_size": 16,
        "optimizer": "adam",
        "lr": 0.01,
        "seed": 0,
        "early_stopping": {"patience": 2, "min_delta": 0.0},
        "lr_schedule": {"type": "cosine", "warmup": 1},
    },
    "balancer": {"name": "pcgrad", "seed": 0},
    "evaluation": {"delta_m": "per_task", "affinity": {"method": "cosine", "every": 2}},
}

ODD_NUMBERS = [
    0,
    -1,
    1,
    2**31,
    2**64,
    10**400,
    -(10**30),
    0.5,
    -0.0,
    1e308,
    -1e308,
    1e-320,
    math.nan,
    math.inf,
    -math.inf,
]
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # no lone surrogates
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(ODD_NUMBERS),
    st.integers(),
    st.floats(),
    TEXT,
    st.sampled_from(["", " ", "\n", "yes", "../../escape", "a/b", "x.csv", "adulto", "1e308"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
NAMES = st.one_of(
    st.sampled_from(
        [
            *ARCHITECTURE_OPTIONS.names(),
            *INPUT_BLOCK_OPTIONS.names(),
            *TASK_OPTIONS.names(),
            *BALANCERS,
            "hardd",
            "MMoE",
            "regresion",
            "pc-grad",
            "nash",
        ]
    ),
    TEXT,
)
# sections whose key names a registered entry, and where each name's options go
NAMED = [
    (("model", "arch"), ("model",)),
    (("model", "encoder", "type"), ("model", "encoder")),
    (("balancer", "name"), ("balancer",)),
    (("tasks", 0, "type"), ("tasks", 0)),
    (("tasks", 2, "type"), ("tasks", 2)),
]
KNOWN_OPTIONS = sorted(
    {o for c in BALANCERS.values() for o in options_of(c)}
    | {
        o
        for n in ARCHITECTURE_OPTIONS.names()
        for o in ARCHITECTURE_OPTIONS.options(n).model_fields
    }
    | {o for n in INPUT_BLOCK_OPTIONS.names() for o in INPUT_BLOCK_OPTIONS.options(n).model_fields}
    | {o for n in TASK_OPTIONS.names() for o in TASK_OPTIONS.options(n).model_fields}
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside ``node`` (dict keys and list positions), parents first."""
    found = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        found.append((*prefix, key))
        found += paths(value, (*prefix, key))
    return found


def parent(root: Any, path: tuple) -> Any:
    for key in path[:-1]:
        root = root[key]
    return root


def ensure_section(root: dict, path: tuple) -> dict | None:
    """The mapping at ``path`` (None when a mutation has made it something else)."""
    node: Any = root
    for key in path:
        if isinstance(node, dict):
            inside = key in node
        else:
            inside = isinstance(node, list) and isinstance(key, int) and key < len(node)
        if not inside:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def misspell(draw: Any, word: str) -> str:
    if not word:
        return draw(TEXT)
    i = draw(st.integers(0, len(word) - 1))
    how = draw(st.sampled_from(["drop", "double", "swap", "case", "replace"]))
    if how == "drop":
        return word[:i] + word[i + 1 :]
    if how == "double":
        return word[:i] + word[i] + word[i:]
    if how == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if how == "case":
        return word.upper()
    return word[:i] + draw(st.characters(exclude_categories=("Cs",))) + word[i + 1 :]


@st.composite
def near_valid_configs(draw: Any) -> dict:
    """The valid config above after one to three mutations."""
    raw = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "misspell", "retype", "rename", "option", "add"]))
        if how == "rename":  # an entry's name: registered, misspelt or random; its options stay
            at, _ = draw(st.sampled_from(NAMED))
            section = ensure_section(raw, at[:-1])
            if section is not None:
                section[at[-1]] = draw(NAMES)
            continue
        if how == "option":  # a registered name with one of any entry's options, odd-valued
            at, where = draw(st.sampled_from(NAMED))
            section = ensure_section(raw, where)
            if section is not None:
                section[at[-1]] = draw(NAMES)
                section[draw(st.sampled_from(KNOWN_OPTIONS))] = draw(VALUES)
            continue
        everywhere = paths(raw)
        if not everywhere:
            break
        path = draw(st.sampled_from(everywhere))
        holder = parent(raw, path)
        key = path[-1]
        if how == "drop":
            del holder[key]
        elif how == "misspell" and isinstance(key, str):
            holder[misspell(draw, key)] = holder.pop(key)
        elif how == "add" and isinstance(holder, dict):
            holder[draw(st.one_of(TEXT, st.integers(), st.none(), st.booleans()))] = draw(VALUES)
        else:
            holder[key] = draw(VALUES)
    return raw


def assert_one_line(error: PolytaskError) -> None:
    message = str(error)
    assert message.strip(), repr(message)
    assert len(message.splitlines()) == 1, repr(message)


def check(raw: Any) -> None:
    """The property: parse and check, or one PolytaskError line (anything else fails)."""
    try:
        check_config(parse_config(raw))
    except PolytaskError as error:
        assert_one_line(error)


@settings(FUZZ, max_examples=250)
@given(near_valid_configs())
def test_near_valid_configs_parse_or_fail_in_one_line(raw):
    check(raw)


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(sorted(BALANCERS)), st.sampled_from(KNOWN_OPTIONS), VALUES)
def test_any_balancer_option_value_builds_or_fails_in_one_line(name, option, value):
    check({**VALID, "balancer": {"name": name, option: value}})


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


def load_or_fail(path: Path) -> None:
    try:
        check_config(load_config(path))
    except PolytaskError as error:
        assert_one_line(error)


@settings(FUZZ, max_examples=80)
@given(near_valid_configs())
def test_config_files_load_or_fail_in_one_line(folder, raw):
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    load_or_fail(path)


YAML_TOKENS = [
    ":", ": ", "- ", "[", "]", "{", "}", ",", "\t", "\n", "  ", "&a ", "*a", "*b", "? ", "|",
    ">", "'", '"', "#", "%YAML 1.1\n", "---\n", "...\n", "!!python/object:os.system ", "!!binary ",
    "!!int ", "!!float ", "tasks", "name", "data", "source", "model", "~", ".nan", "1e308",
    "\\", "\x00", "\ufeff", "é", "\u2028", "0x1F", "<<: ",
]  # fmt: skip


@settings(FUZZ, max_examples=60)
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=25).map("".join))
def test_yaml_garbage_fails_in_one_line(folder, text):
    path = folder / "garbage.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    load_or_fail(path)


@settings(FUZZ, max_examples=30)
@given(st.binary(max_size=64))
def test_byte_garbage_fails_in_one_line(folder, data):
    path = folder / "bytes.yaml"
    path.write_bytes(data)
    load_or_fail(path)


def run_train(config: Path) -> tuple[int, str]:
    """``polytask train CONFIG`` in this process: exit code and stderr."""
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        patch.setattr(sys, "argv", ["polytask", "train", str(config)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def may_train(config: Path) -> bool:
    """Whether ``train`` could get past reading data: the config loads and names a built-in
    dataset or an existing file (never so here: every table named in VALID or generated is
    absent, so each generated config fails before training)."""
    try:
        config = check_config(load_config(config))
    except PolytaskError:
        return False
    sources = [config.data.source, *(t.data for t in config.tasks)]
    return any(s in BUILTIN_DATASETS or (s and Path(s).is_file()) for s in sources)


@settings(FUZZ, max_examples=40)
@given(near_valid_configs())
def test_train_command_exits_2_with_one_line(folder, raw):
    raw["output_dir"] = str(folder / "runs")
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assume(not may_train(path))
    code, err = run_train(path)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert not (folder / "runs").exists()  # failed before any folder was made


# --- Regression corpus: the concrete cases of issue 8 and the bugs found by the tests above --


def mutated(path: tuple, value: Any) -> dict:
    raw = copy.deepcopy(VALID)
    parent(raw, path)[path[-1]] = value
    return raw


CORPUS = {  # name: (raw config, fragment the one-line error must hold)
    "split column of a list": (mutated(("data", "split", "column"), ["a"]), "data.split.column"),
    "unknown arch": (mutated(("model", "arch"), "hardd"), "did you mean 'hard'"),
    "unknown task type": (mutated(("tasks", 0, "type"), "binar"), "did you mean 'binary'"),
    "unknown balancer": (mutated(("balancer", "name"), "pc-grad"), "unknown balancer"),
    "balancer option of another": (mutated(("balancer", "c"), 0.4), "has no option 'c'"),
    # found by the fuzz tests: each raised a bare exception or a multi-line message before
    "update_every: .inf": (mutated(("balancer", "update_every"), math.inf), "balancer 'pcgrad'"),
    "seed: .inf": (mutated(("balancer", "seed"), math.inf), "balancer 'pcgrad'"),
    "a key with a newline": (mutated(("model", "ex\nperts"), 2), "unknown key 'model.ex\\nperts'"),
    "a task name with a newline": (
        mutated(("tasks", 1), {"name": "seg\nment", "type": "multi"}),
        "tasks[1] (seg\\nment).type",
    ),
}


@pytest.mark.parametrize(("raw", "fragment"), CORPUS.values(), ids=CORPUS)
def test_corpus_config(raw, fragment):
    with pytest.raises(PolytaskError) as caught:
        check_config(parse_config(raw))
    assert_one_line(caught.value)
    assert fragment in str(caught.value)


FILE_CORPUS = {  # file content: fragment of the one-line error
    # before: a ConfigError over four lines (the YAML parser's own layout)
    "tasks: [\n": "not valid YAML (while parsing a flow node",
    "a:\n\tb: 1\n": "not valid YAML",
    # before: UnicodeDecodeError traceback
    b"\xff\xfe\x00garbage": "not a text file in UTF-8",
    "": "the config file is empty",
    "- a\n- b\n": "the top level must be a mapping",
    "!!python/object/apply:os.system [echo]": "not valid YAML",
    # before: ValueError 'embedded null byte' from resolving the data path
    yaml.safe_dump({**VALID, "data": {"source": "a\x00.csv"}}): "a data path cannot be resolved",
}


@pytest.mark.parametrize(("content", "fragment"), FILE_CORPUS.items(), ids=range(len(FILE_CORPUS)))
def test_corpus_config_file(tmp_path, content, fragment):
    path = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_one_line(caught.value)
    assert fragment in str(caught.value)


def test_corpus_overlong_config_path(tmp_path):
    """Before: OSError 'File name too long' from ``Path.is_file``."""
    with pytest.raises(ConfigError, match="no such config file|cannot be read") as caught:
        load_config(tmp_path / ("x" * 300 + ".yaml"))
    assert_one_line(caught.value)


def test_corpus_cli_yaml_error_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("tasks: [\n")
    code, err = run_train(path)
    assert code == 2
    assert len(err.splitlines()) == 1 and "not valid YAML" in err, err


STRICT_CORPUS = {  # name: (raw config, fragment of the error)
    "epochs: true": (mutated(("training", "epochs"), True), "training.epochs"),
    "batch_size: true": (mutated(("training", "batch_size"), True), "training.batch_size"),
    "epochs: 2.0": (mutated(("training", "epochs"), 2.0), "training.epochs"),
    "patience: false": (
        mutated(("training", "early_stopping", "patience"), True),
        "training.early_stopping.patience",
    ),
    "name: ../../escape": (mutated(("name",), "../../escape"), "name"),
    "name: a/b": (mutated(("name",), "a/b"), "name"),
    "name: ..": (mutated(("name",), ".."), "name"),
}


@pytest.mark.parametrize(("raw", "fragment"), STRICT_CORPUS.values(), ids=STRICT_CORPUS)
def test_corpus_strict_integers_and_run_names(raw, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert_one_line(caught.value)
    assert fragment in str(caught.value)


@example(raw=mutated(("training", "epochs"), True))
@example(raw=mutated(("name",), "../../escape"))
@settings(FUZZ, max_examples=1)
@given(st.just(VALID))
def test_corpus_examples_hold_the_property(raw):
    """Whatever the strictness, the cases above never break the one-line property."""
    check(raw)
