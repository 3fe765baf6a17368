"""Importing polytask or its command line, and reading a config, load neither torch nor
scikit-learn nor matplotlib: a config typo is reported before the heavy libraries are imported
(issue 8: "a config typo is reported in under 1 s")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .test_layers import SRC

HEAVY = ("torch", "sklearn", "matplotlib")


def heavy_after(code: str) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter; the heavy modules it left imported."""
    probe = f"{code}\nimport sys\nprint('HEAVY', *[m for m in {HEAVY!r} if m in sys.modules])\n"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("HEAVY")), None)
    assert line is not None, done.stderr
    return line.split()[1:], done


def test_importing_the_package_is_light_and_its_names_still_resolve():
    heavy, _ = heavy_after("import polytask\nassert polytask.__version__")
    assert heavy == []
    heavy, _ = heavy_after("from polytask import Trainer, load_run\nassert Trainer and load_run")
    assert "torch" in heavy  # the names are there; they import what they need when asked for


def test_the_package_lists_its_public_names():
    import polytask

    assert set(polytask.__all__) <= set(dir(polytask))
    for name in polytask.__all__:
        assert getattr(polytask, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        polytask.no_such_name  # noqa: B018


def test_importing_the_cli_is_light():
    heavy, _ = heavy_after("import polytask.cli")
    assert heavy == []


def train_with_a_typo(tmp_path) -> tuple[list[str], subprocess.CompletedProcess]:
    """``polytask train`` on a config with a misspelt key, in a fresh interpreter."""
    config = tmp_path / "typo.yaml"
    config.write_text(
        "data: {source: table.csv}\ntasks: [{name: y, type: binary}]\ntraining: {epocs: 3}\n"
    )
    code = (
        "import sys\nfrom polytask import cli\n"
        f"sys.argv = ['polytask', 'train', {str(config)!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit as exc:\n    print('EXIT', exc.code)\n"
    )
    heavy, done = heavy_after(code)
    assert "EXIT 2" in done.stdout
    assert "did you mean 'epochs'" in done.stderr
    return heavy, done


def test_a_config_typo_is_reported_before_torch_is_imported(tmp_path):
    heavy, _ = train_with_a_typo(tmp_path)
    assert heavy == []


def test_a_config_typo_loads_neither_scikit_learn_nor_matplotlib(tmp_path):
    heavy, _ = train_with_a_typo(tmp_path)
    assert "sklearn" not in heavy and "matplotlib" not in heavy
