"""MLflow: one MLflow run per polytask run (``logging: {mlflow: {tracking_uri, experiment}}``;
needs ``pip install 'polytask[mlflow]'``).

The default store is the SQLite database ``<output_dir>/mlflow.db``, with the artifacts of the
experiments it creates under ``<output_dir>/mlflow-artifacts`` (MLflow's plain file store,
``./mlruns``, is refused by MLflow 3 unless ``MLFLOW_ALLOW_FILE_STORE=true``). The experiment
(default: the config's ``name``) is found or created before any training (:func:`mlflow_target`),
with a single try and a short timeout, so that a server that cannot be reached is one error at
once rather than minutes of retries; a new SQLite database is created under a lock, so that
runs started together can share it. The run is named after the run folder and tagged with its
path (``polytask.run_dir``); ``--resume`` continues that MLflow run. At the end, the run
folder's files (weights, plots, config, ``metrics.json``) are logged as artifacts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polytask.config import MlflowConfig
from polytask.errors import ConfigError
from polytask.tracking.base import Param, missing_extra

DATABASE = "mlflow.db"
"""The default store's file in the output folder."""

ARTIFACTS = "mlflow-artifacts"
"""The default artifact folder (of the experiments created in a local store) in the output
folder."""

RUN_DIR_TAG = "polytask.run_dir"
"""The MLflow run's tag holding the polytask run folder (``--resume`` finds the run by it)."""

PROBE_TIMEOUT = 10
"""Seconds the first request to a tracking server may take (one try)."""

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")

_MAX_PARAMS = 100  # per log_batch call (MLflow's limits)
_MAX_METRICS = 1000
_MAX_VALUE = 6000  # characters of a parameter's value
_INVALID_KEY = re.compile(r"[^/\w.\- ]")


def default_tracking_uri(output_dir: Path) -> str:
    """``sqlite:///<output_dir>/mlflow.db`` (absolute)."""
    return f"sqlite:///{Path(output_dir).resolve() / DATABASE}"


def mlflow_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a key replaced by ``_``."""
    return _INVALID_KEY.sub("_", name)[:250]


def require_mlflow(tracking_uri: str) -> Any:
    """The ``mlflow`` module (and, for a database store, SQLAlchemy and Alembic); a
    ConfigError naming the extra without them."""
    try:
        import mlflow

        if _scheme(tracking_uri) in DATABASE_SCHEMES:
            import alembic  # noqa: F401
            import sqlalchemy  # noqa: F401
    except ImportError:
        raise missing_extra("mlflow", "mlflow") from None
    # its INFO lines on creating a database's tables are not the user's business
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    return mlflow


@dataclass(frozen=True)
class MlflowTarget:
    """Where a run's MLflow run goes: the store and the experiment's id."""

    tracking_uri: str
    experiment_id: str


def mlflow_target(settings: MlflowConfig, output_dir: Path, experiment: str) -> MlflowTarget:
    """Resolve the store and find or create the experiment (``experiment`` unless the settings
    name one): one try, :data:`PROBE_TIMEOUT` seconds; any failure is a ConfigError naming
    ``logging.mlflow``."""
    uri = settings.tracking_uri or default_tracking_uri(output_dir)
    name = settings.experiment or experiment
    require_mlflow(uri)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    where = "logging.mlflow.tracking_uri" if settings.tracking_uri else "logging.mlflow"
    try:
        if settings.tracking_uri is None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
        with _one_quick_try(), _first_use(uri):  # the client opens a database store at once
            client = MlflowClient(tracking_uri=uri)
            return MlflowTarget(uri, _experiment_id(client, name, uri, output_dir))
    except ConfigError:
        raise
    except Exception as exc:  # MLflow's, the HTTP client's, the database driver's errors
        reason = " ".join(str(getattr(exc, "message", exc)).split())
        if not isinstance(exc, MlflowException):
            reason = f"{type(exc).__name__}: {reason}"
        raise ConfigError(f"{where}: the MLflow store {uri} cannot be used ({reason})") from exc


def _experiment_id(client: Any, name: str, uri: str, output_dir: Path) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        location = None
        if _scheme(uri) not in REMOTE_SCHEMES:  # not ./mlruns of the working folder
            location = (Path(output_dir).resolve() / ARTIFACTS).as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException:  # another run created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ConfigError(
            f"logging.mlflow.experiment: '{name}' is a deleted experiment in {uri}; restore it "
            "(mlflow experiments restore) or name another"
        )
    return str(found.experiment_id)


@contextlib.contextmanager
def _one_quick_try() -> Iterator[None]:
    """MLflow's HTTP requests without retries and with a short timeout, for the probe."""
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT),
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _first_use(uri: str) -> Iterator[None]:
    """For a SQLite store, a lock beside its file (``mlflow.db.lock``) held while this process
    opens it: MLflow creates a new database's tables without one, so two runs creating it at
    once collide (measured: "duplicate column name" in one of them). The other databases and
    servers need none."""
    database = _sqlite_file(uri)
    if database is None:
        yield
        return
    from filelock import FileLock

    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(database) + ".lock"):
        yield


def _sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///path`` URI (None for another store or an in-memory one)."""
    if _scheme(uri) != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def _scheme(uri: str) -> str:
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    return scheme.lower()


class MlflowTracker:
    """Writes a run's values to one MLflow run (a new one, or the run of ``run_dir`` when
    resuming)."""

    name = "mlflow"

    def __init__(self, target: MlflowTarget, run_dir: Path, *, resume: bool = False) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=target.tracking_uri)
        path = str(Path(run_dir).resolve())
        run = self._previous_run(target, path) if resume else None
        if run is None:
            run = self._client.create_run(
                target.experiment_id, run_name=Path(run_dir).name, tags={RUN_DIR_TAG: path}
            )
        elif run.info.status != "RUNNING":
            self._client.update_run(run.info.run_id, status="RUNNING")
        self.run_id: str = run.info.run_id
        self._logged = set(run.data.params)

    def _previous_run(self, target: MlflowTarget, path: str) -> Any:
        if "'" in path or "\\" in path:
            return None  # not expressible in a filter string: a new run
        found = self._client.search_runs(
            [target.experiment_id],
            filter_string=f"tags.`{RUN_DIR_TAG}` = '{path}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0] if found else None

    def log_params(self, params: Mapping[str, Param]) -> None:
        from mlflow.entities import Param as MlflowParam

        entries = [
            MlflowParam(mlflow_key(key), _text(value))
            for key, value in params.items()
            if mlflow_key(key) not in self._logged  # a resumed run has them
        ]
        for start in range(0, len(entries), _MAX_PARAMS):
            self._client.log_batch(self.run_id, params=entries[start : start + _MAX_PARAMS])
        self._logged |= {entry.key for entry in entries}

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        self._log_metrics(scalars, step=epoch)

    def _log_metrics(self, scalars: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(mlflow_key(k), float(v), now, step) for k, v in scalars.items()]
        for start in range(0, len(entries), _MAX_METRICS):
            self._client.log_batch(self.run_id, metrics=entries[start : start + _MAX_METRICS])

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self._client.log_image(self.run_id, image, key=mlflow_key(tag), step=step)

    def finish(
        self, summary: Mapping[str, float], files: Sequence[Path], *, failed: bool = False
    ) -> None:
        self._log_metrics(summary, step=0)
        for path in files:
            self._client.log_artifact(self.run_id, str(path))
        self._client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def _text(value: Param) -> str:
    text = str(value)
    if len(text) > _MAX_VALUE:
        note = " … (cut; config.json holds it all)"
        text = text[: _MAX_VALUE - len(note)] + note
    return text
