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

import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from cvil import tracking_schema as schema

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
    text = str(exc).lower()
    code = getattr(exc, "error_code", "")
    return "database is locked" in text or "database table is locked" in text or code == "TEMPORARILY_UNAVAILABLE"


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


def client(uri: str):
    """A client on `uri`; a fresh SQLite store is migrated under its file lock (`cvil.tracking.store_setup_lock`),
    so two grids, or a grid and a `cvil train`, starting together on a new store do not race."""
    from mlflow.tracking import MlflowClient

    from cvil.tracking import store_setup_lock

    with store_setup_lock(uri):
        return MlflowClient(tracking_uri=uri)


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
