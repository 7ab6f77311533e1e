"""MLflow helpers shared by the grid runner and the search: the store, parent runs, children, lock retries.

Both a grid and a study are one *parent* run whose children are training runs. The parent is found again by its
tags (`cvil.kind` + the grid or study name), so re-running a grid or resuming a study keeps adding to the same
parent and can see which children already finished.

SQLite under concurrency: MLflow's SQLAlchemy store runs ``PRAGMA busy_timeout = 20000`` on every session, so a
writer waits up to 20 s for another's lock, and it turns a remaining ``OperationalError`` ("database is locked")
into ``MlflowException(TEMPORARILY_UNAVAILABLE)`` without retrying. What it does *not* survive is several processes
migrating a fresh database at once, or racing to create the same experiment. Hence: the parent process migrates
the store and creates the experiment and the parent run before spawning anything, and its own writes go through
`retry_locked`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from cvil import tracking_schema as schema
from cvil.tracking import unreachable

T = TypeVar("T")

KIND_TAG = schema.KIND  # "grid" or "search" on parent runs
PARENT_TAG = schema.PARENT_RUN


def tracking_uri(uri: str | None = None) -> str:
    """The store `cvil train` would use (`cvil.tracking.resolve_tracking_uri`), with a relative SQLite path made
    absolute: the runner hands it to child jobs, which may run from another folder or node."""
    from cvil.tracking import resolve_tracking_uri

    resolved = resolve_tracking_uri(uri or "")
    prefix = "sqlite:///"
    if resolved.startswith(prefix) and not resolved[len(prefix):].startswith("/"):
        return prefix + str(Path(resolved[len(prefix):]).absolute())
    return resolved


def is_locked_error(exc: BaseException) -> bool:
    """A SQLite lock (worth retrying), not a broken store: MLflow reports every SQLite OperationalError (a read-only,
    deleted or corrupt database too) as TEMPORARILY_UNAVAILABLE, so the code alone counts only for other stores."""
    text = str(exc).lower()
    code = getattr(exc, "error_code", "")
    if "database is locked" in text or "database table is locked" in text:
        return True
    return code == "TEMPORARILY_UNAVAILABLE" and "operationalerror" not in text


def retry_locked(fn: Callable[..., T], *args: Any, attempts: int = 6, base_delay: float = 0.25, **kwargs: Any) -> T:
    """Call `fn`, retrying with backoff while SQLite reports a lock that outlasted MLflow's busy timeout."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MlflowException or a raw OperationalError
            if i == attempts - 1 or not is_locked_error(exc):
                raise
            time.sleep(base_delay * 2**i)
    raise AssertionError("unreachable")


def apply_http_defaults() -> dict[str, str]:
    """`cvil.tracking`'s HTTP retry settings (a few seconds per failed call to a server, where MLflow's own wait
    258 s on a closed port), unless the user set them; the settings as they now are, for child jobs' environment."""
    from cvil.tracking import _HTTP_DEFAULTS

    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in _HTTP_DEFAULTS}


def client(uri: str):
    """A client on `uri`; a fresh SQLite store is migrated under its file lock (`cvil.tracking.store_setup_lock`),
    so two grids, or a grid and a `cvil train`, starting together on a new store do not race."""
    from mlflow.tracking import MlflowClient

    from cvil.tracking import store_setup_lock

    apply_http_defaults()
    with store_setup_lock(uri):
        return MlflowClient(tracking_uri=uri)


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _DropDbTracebacks(logging.Filter):
    """MLflow logs a full traceback (ERROR) for every SQLite OperationalError before raising it; the store's
    one warning names the error instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


class Store:
    """The MLflow store as a grid or a search uses it. A store that cannot be used (closed port, a server that
    never answers, a corrupt, read-only or deleted SQLite file) costs one warning and switches tracking off for the
    rest of the command, and the work goes on with local results, as `cvil train` does (`cvil.tracking`). Calls
    the store rejects (a bad value) are warned about and skipped; they do not switch tracking off."""

    def __init__(self, uri: str, warn: Callable[[str], None]):
        self.uri, self._warn, self.client, self.why_off = uri, warn, None, ""
        self.http_env = apply_http_defaults()
        db_log = logging.getLogger("mlflow.store.db.utils")
        if not any(isinstance(f, _DropDbTracebacks) for f in db_log.filters):
            db_log.addFilter(_DropDbTracebacks())
        problem = unreachable(uri)
        if problem:
            self.off(problem)
            return
        try:
            self.client = client(uri)
        except Exception as exc:
            self.off(exc)

    @property
    def on(self) -> bool:
        return self.client is not None

    def off(self, why: BaseException | str) -> None:
        if self.why_off:
            return
        self.client, self.why_off = None, one_line(why)
        self._warn(f"warning: MLflow store {self.uri} unusable ({self.why_off}); tracking off, the work goes on "
                   "(results stay in the run folders and the summary)")

    def run(self, fn: Callable[[Any], T], default: Any = None) -> T | Any:
        """`fn(client)`; `default` when tracking is off or the store fails (which switches it off)."""
        if self.client is None:
            return default
        try:
            return fn(self.client)
        except Exception as exc:
            from cvil.tracking import _rejected

            cause = exc.__cause__ or exc.__context__  # a SQLAlchemy error is the database failing, not the call
            if _rejected(exc) and not type(cause).__module__.startswith("sqlalchemy"):
                self._warn(f"warning: MLflow store {self.uri} rejected a call ({one_line(exc)}); skipped")
            else:
                self.off(exc)
            return default

    def call(self, method: str, *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """`client.<method>(*args, **kwargs)`, retrying SQLite locks, guarded as `run`."""
        return self.run(lambda c: retry_locked(getattr(c, method), *args, **kwargs), default)


def experiment_id(c, name: str) -> str:
    """Get or create an experiment (`cvil.tracking.get_or_create_experiment`), retrying SQLite locks."""
    from cvil.tracking import get_or_create_experiment

    return get_or_create_experiment(c, name, call=retry_locked)


def tag_filter(tags: dict[str, Any]) -> str:
    """An MLflow filter string matching all `tags` (backticks: our tag names contain dots)."""
    parts = []
    for k, v in tags.items():
        value = str(v).replace("'", "\\'")
        parts.append(f"tags.`{k}` = '{value}'")
    return " and ".join(parts)


def search_all(c, exp_id: str, filter_string: str) -> list:
    """Every matching run (all pages), newest first."""
    from cvil.tracking import all_pages

    return all_pages(retry_locked, c.search_runs, [exp_id], filter_string=filter_string, max_results=1000,
                     order_by=["attributes.start_time DESC"])


def open_parent(c, exp_id: str, kind: str, name: str, *, tags: dict[str, str], reuse: bool = True) -> str:
    """The parent run of grid/study `name`: the newest existing one (marked RUNNING again) or a new one."""
    if reuse:
        found = search_all(c, exp_id, tag_filter({KIND_TAG: kind, f"cvil.{kind}": name}))
        if found:
            run_id = found[0].info.run_id
            retry_locked(c.update_run, run_id, status="RUNNING")
            return run_id
    run = retry_locked(c.create_run, exp_id, run_name=name, tags={KIND_TAG: kind, f"cvil.{kind}": name, **tags})
    return run.info.run_id


def children(c, exp_id: str, parent_id: str, tags: dict[str, Any] | None = None) -> list:
    """Child runs of `parent_id` (optionally with more tags), newest first."""
    return search_all(c, exp_id, tag_filter({PARENT_TAG: parent_id, **(tags or {})}))


def close_parent(c, run_id: str, status: str) -> None:
    """FINISHED, FAILED (some child failed) or KILLED (interrupted); a re-run reopens it."""
    retry_locked(c.set_terminated, run_id, status=status)
