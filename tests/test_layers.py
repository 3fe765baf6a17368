"""The layers of ``src/polytask`` import only downward (README, "Architecture of the code").

Every module of the package belongs to the layer named by its first component
(``polytask.data.text`` is in ``data``); a module may import its own layer and the layers below
it, never one above. Every import counts: module level, inside functions, under
``TYPE_CHECKING``, relative or absolute. The package root (``polytask/__init__.py``) re-exports
the public names and sits above every layer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

LAYERS = (  # lowest first
    "errors",
    "options",
    "config",
    "builtin_options",
    "tasks",
    "evaluation",
    "data",
    "device",
    "distributed",
    "models",
    "inference",
    "balancers",
    "training",
    "checks",
    "relationships",
    "results",
    "rundir",
    "predict",
    "export",
    "reporting",
    "tracking",
    "experiment",
    "compare",
    "auto",
    "sklearn",
    "lightning",
    "cli",
    "testing",
    "__main__",
)


@dataclass(frozen=True)
class Edge:
    """One import of ``target`` by ``module``, at ``path:line``."""

    module: str
    target: str
    path: Path
    line: int
    statement: str


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (a folder under ``root``) by dotted name."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(root: Path, package: str) -> Iterator[Edge]:
    """Every import of a module of ``package`` by a module of ``package``, wherever it stands."""
    modules = module_names(root, package)
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        here = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # ``from pkg import name``: the submodule pkg.name when there is one
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target == package or target.startswith(f"{package}."):
                    yield Edge(module, target, path, node.lineno, ast.unparse(node))


def layer_of(module: str, layers: Sequence[str]) -> int | None:
    """The index of ``module``'s layer; ``len(layers)`` for the package root; None if unknown."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(layers)
    return layers.index(parts[1]) if parts[1] in layers else None


def violations(
    root: Path, package: str, layers: Sequence[str], allowed: Collection[tuple[str, str]] = ()
) -> list[str]:
    """One line per module outside ``layers`` and per import of a higher layer (``allowed``
    lists (module, target) pairs to let through)."""
    problems = [
        f"{path.relative_to(root)}: module {module} is in no layer; add "
        f"'{module.split('.')[1]}' to LAYERS where its imports put it"
        for module, path in module_names(root, package).items()
        if layer_of(module, layers) is None
    ]
    for edge in imports(root, package):
        low, high = layer_of(edge.module, layers), layer_of(edge.target, layers)
        if low is None or high is None or high <= low or (edge.module, edge.target) in allowed:
            continue
        lower = edge.module.split(".")[1]
        higher = f"layer '{edge.target.split('.')[1]}'" if "." in edge.target else "package root"
        problems.append(
            f"{edge.path.relative_to(root)}:{edge.line}: {edge.module} (layer '{lower}') imports "
            f"{edge.target} ({higher}, above it): `{edge.statement}`"
        )
    return problems


# -- the package -----------------------------------------------------------------------------


def test_polytask_layers_import_only_downward():
    problems = violations(SRC, "polytask", LAYERS)
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_readme_lists_the_same_layers_in_the_same_order():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture of the code", 1)[1].split("\n## ", 1)[0]
    assert tuple(re.findall(r"^\| (\w+) \| `", section, re.M)) == LAYERS


def test_every_layer_exists():
    present = {m.split(".")[1] for m in module_names(SRC, "polytask") if "." in m}
    assert set(LAYERS) == present


# -- the checker on a small fake package --------------------------------------------------------

FAKE_LAYERS = ("low", "mid", "high")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"fake/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "fake/low/__init__.py": "",
            "fake/low/base.py": "X = 1\n",
            "fake/mid.py": "from fake.low.base import X\nimport fake.low\n",
            "fake/high.py": "from fake import mid\nfrom .low import base\n",
        },
    )


def test_downward_imports_pass(fake):
    assert violations(fake, "fake", FAKE_LAYERS) == []


@pytest.mark.parametrize(
    ("source", "line", "target", "where"),
    [
        ("from fake.high import thing\n", 1, "fake.high", "layer 'high'"),
        ("import fake.mid\n", 1, "fake.mid", "layer 'mid'"),
        ("def f():\n    from fake import high\n    return high\n", 2, "fake.high", "layer 'high'"),
        ("from ..mid import thing\n", 1, "fake.mid", "layer 'mid'"),
        ("from .. import high\n", 1, "fake.high", "layer 'high'"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fake.high\n",
            3,
            "fake.high",
            "layer 'high'",
        ),
        ("from fake import something_of_the_root\n", 1, "fake", "package root"),
    ],
)
def test_an_upward_import_is_named(fake, source, line, target, where):
    (fake / "fake/low/base.py").write_text(source)
    statement = source.splitlines()[line - 1].strip()
    assert violations(fake, "fake", FAKE_LAYERS) == [
        f"fake/low/base.py:{line}: fake.low.base (layer 'low') imports {target} ({where}, "
        f"above it): `{statement}`"
    ]


def test_an_allowed_edge_passes(fake):
    (fake / "fake/low/base.py").write_text("import fake.high\n")
    assert violations(fake, "fake", FAKE_LAYERS, {("fake.low.base", "fake.high")}) == []
    assert len(violations(fake, "fake", FAKE_LAYERS, {("fake.low.base", "fake.mid")})) == 1


def test_a_module_outside_the_layers_is_reported(fake):
    write(fake, {"fake/extra.py": "import fake.low\n"})
    assert violations(fake, "fake", FAKE_LAYERS) == [
        "fake/extra.py: module fake.extra is in no layer; add 'extra' to LAYERS where its imports "
        "put it"
    ]


def test_other_packages_are_ignored(fake):
    (fake / "fake/low/base.py").write_text("import os\nfrom fakeish import high\n")
    assert violations(fake, "fake", FAKE_LAYERS) == []
