"""Experiment tracking behind one small protocol: MLflow on rank 0, nothing elsewhere.

The training loop only ever talks to a `Tracker`. `MLflowTracker` logs to any MLflow store (default
`sqlite:///mlflow.db` in the working folder); `NullTracker` is used on ranks > 0, in tests, and when tracking is
off. Training must never die because the store is unreachable: the MLflow tracker warns, buffers and retries, and
keeps going with local logs (`metrics.jsonl` in the run's output folder is always written by the loop).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

from cvil import tracking_schema as schema

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# MLflow 3's UI opens an experiment without this tag in its GenAI layout ("Evaluations"); this is model training.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = schema.EXPERIMENT_KIND_TAG, schema.EXPERIMENT_KIND
_PARAM_MAX = 6000  # MLflow's param value limit (characters)


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_datasets(self, datasets: list[dict[str, str]]) -> None: ...
    def log_model_pointer(self, path: str | Path, *, name: str, params: dict[str, Any] | None = None,
                          step: int = 0, metrics: dict[str, float] | None = None,
                          datasets: dict[str, str] | None = None) -> None: ...
    def mark_experiment(self) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracks nothing (non-zero ranks, tests, `tracking.enabled=false`)."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_datasets(self, datasets: list[dict[str, str]]) -> None: ...
    def log_model_pointer(self, path: str | Path, *, name: str, params: dict[str, Any] | None = None,
                          step: int = 0, metrics: dict[str, float] | None = None,
                          datasets: dict[str, str] | None = None) -> None: ...
    def mark_experiment(self) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


PROBE_TIMEOUT_S = 5.0  # a server that accepts connections and never answers costs this, once, not 3 x 30 s per call


def unreachable(uri: str) -> str:
    """Why the HTTP store at `uri` cannot be used now (nothing answers within `PROBE_TIMEOUT_S`); "" when something
    answers (any HTTP status, a TLS handshake) or the store is not HTTP."""
    if not uri.startswith(("http://", "https://")):
        return ""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.SSLError:
        return ""  # a server answered; MLflow's own TLS settings decide
    except requests.exceptions.Timeout:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except requests.exceptions.RequestException as exc:
        return f"cannot connect ({type(exc).__name__})"
    return ""


def resolve_tracking_uri(uri: str = "") -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class MLflowTracker:
    """One MLflow run, created or re-attached (resume) at construction.

    A store that cannot be reached at construction (corrupt SQLite file, unknown URI scheme, server down) costs one
    warning: the run is tracked locally only (`metrics.jsonl`). A store that fails later (a SQLite lock held past
    MLflow's 20 s busy timeout, a server restart) does not switch tracking off: what could not be logged is buffered
    and retried with backoff, within `retry_budget_s` seconds of failed calls per run. `close()` delivers what is
    left; if it cannot, the run is closed FAILED with `cvil.local_results` naming the folder with the local results
    (a run is never left RUNNING by a tracker that can still reach its store). Errors the store gives for the call
    itself (a rejected value) are not retried; they are counted in `cvil.tracking.rejected`.
    """

    first_delay_s, max_delay_s, max_pending = 2.0, 60.0, 20000

    def __init__(
        self,
        *,
        uri: str = "",
        experiment: str = "cvil",
        run_name: str = "",
        run_id: str | None = None,
        parent_run_id: str = "",
        tags: dict[str, Any] | None = None,
        local_dir: str | Path | None = None,
        retry_budget_s: float = 120.0,
    ) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        for key, value in _HTTP_DEFAULTS.items():  # MLflow's own: 7 retries with backoff, 258 s on a closed port
            os.environ.setdefault(key, value)
        self._client: Any = _NoClient()
        self._alive = True
        self.run_id = None
        self.uri = resolve_tracking_uri(uri)
        self.local_dir = str(local_dir) if local_dir else ""
        self._pending: list[tuple[Any, tuple, dict]] = []
        self._dropped = self._rejected = 0
        self._warned: set[str] = set()
        self._stamps: dict[tuple[str, int], int] = {}  # (metric, step) -> timestamp of its last logged point
        self._budget_s, self._delay_s, self._next_try = retry_budget_s, self.first_delay_s, 0.0
        self._mlflow = mlflow
        problem = unreachable(self.uri)  # one short probe, not MLflow's retries per call (+94 s before training)
        if problem:
            self._disable(ConnectionError(f"{self.uri}: {problem}"))
            return
        try:
            with store_setup_lock(self.uri):
                client = MlflowClient(tracking_uri=self.uri)  # a fresh SQLite store is migrated here
                if run_id:
                    client.update_run(run_id, status="RUNNING")
                    self.run_id = run_id
                else:
                    exp_id = get_or_create_experiment(client, experiment)
                    all_tags = {k: str(v) for k, v in (tags or {}).items()}
                    if parent_run_id:
                        all_tags[schema.PARENT_RUN] = parent_run_id
                    run = client.create_run(exp_id, run_name=run_name or None, tags=all_tags)
                    self.run_id = run.info.run_id
            self._client = client
        except Exception as exc:  # unreachable or broken store
            self._disable(exc)
        self._mlflow = mlflow

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=4)

    def _disable(self, exc: BaseException) -> None:
        self._warn("disabled", f"MLflow tracking disabled ({self.uri}): {exc!r}; training continues with local logs")
        self._alive = False

    def _safe(self, fn, *args, **kwargs) -> None:
        """Deliver one store call now, or buffer it behind earlier undelivered ones."""
        if not self._alive or self.run_id is None:
            return
        if len(self._pending) >= self.max_pending:
            self._dropped += 1
            return
        self._pending.append((fn, args, kwargs))
        if len(self._pending) == 1 or time.monotonic() >= self._next_try:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> bool:
        """Send buffered calls in order until one fails; True when nothing is left."""
        while self._pending:
            if not final and self._budget_s <= 0:
                return False
            fn, args, kwargs = self._pending[0]
            t0 = time.monotonic()
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                if _rejected(exc):  # the store answered: this call is wrong, retrying cannot help
                    self._pending.pop(0)
                    self._rejected += 1
                    self._warn("rejected", f"MLflow rejected a call ({self.uri}): {exc!r}; not retried")
                    continue
                now = time.monotonic()
                self._budget_s -= now - t0
                self._next_try = now + self._delay_s
                self._delay_s = min(2 * self._delay_s, self.max_delay_s)
                self._warn("outage", f"MLflow store {self.uri} failed: {exc!r}; buffering what is logged and "
                                     "retrying with backoff; training continues (local results in metrics.jsonl)")
                return False
            self._pending.pop(0)
            self._delay_s = self.first_delay_s
        return True

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._safe(self._client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        self._stamps.update({(m.key, m.step): now for m in items})
        self._safe(self._client.log_batch, self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._safe(self._client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._safe(self._client.log_artifact, self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._safe(self._client.log_text, self.run_id, text, artifact_file)

    def log_datasets(self, datasets: list[dict[str, str]]) -> None:
        """MLflow dataset inputs (the run list's Dataset column): each a dict with name, digest, source, context
        and optionally profile (`cvil.train.run_metadata.dataset_inputs`); the files stay where they are."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(d["name"], d["digest"], "local", d["source"], profile=d.get("profile")),
                               [InputTag("mlflow.data.context", d["context"])]) for d in datasets]
        if inputs:
            self._safe(self._client.log_inputs, self.run_id, datasets=inputs)

    def log_model_pointer(self, path: str | Path, *, name: str, params: dict[str, Any] | None = None,
                          step: int = 0, metrics: dict[str, float] | None = None,
                          datasets: dict[str, str] | None = None) -> None:
        """The run's final model as an MLflow LoggedModel (the Models column) that *points at* `path`.

        An external model: MLflow stores no weights (a real student is GBs), only the folder's location as the tag
        `cvil.model_path` and the params given; the run is its source and lists it as an output at `step`. The
        `metrics` (the final scores, `<split>.<name>`, already logged to the run by `log_metrics`) are linked to the
        model, each with the dataset it was measured on: `datasets` maps a split to its dataset input's name
        (`vg/test`), whose digest is the one the run logged (`log_datasets`), so the model's page shows its scores
        and the data behind them.
        """
        self._safe(self._log_model_pointer, Path(path), name, params or {}, step, dict(metrics or {}),
                   dict(datasets or {}))

    def _log_model_pointer(self, path: Path, name: str, params: dict, step: int, metrics: dict,
                           datasets: dict) -> None:
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric

        run = self._client.get_run(self.run_id)
        model = self._client.create_logged_model(
            run.info.experiment_id, name=name, source_run_id=self.run_id, model_type="cvil-oscar-vqa",
            tags={"mlflow.model.isExternal": "true", schema.MODEL_PATH: str(path.resolve())},
            params={k: _param_value(v) for k, v in params.items()})
        self._client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        self._client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step)])
        if not metrics:
            return
        digests = {d.dataset.name: d.dataset.digest for d in (run.inputs.dataset_inputs if run.inputs else [])}
        linked = []
        for key, value in metrics.items():
            if value is None:
                continue
            dataset = datasets.get(key.split(".", 1)[0])
            digest = digests.get(dataset) if dataset else None
            # the same timestamp and step as the run's own point (`log_metrics`): the run's history gets no duplicate
            stamp = self._stamps.get((key, step), int(time.time() * 1000))
            linked.append(Metric(key, float(value), stamp, step, model_id=model.model_id,
                                 dataset_name=dataset if digest else None, dataset_digest=digest))
        for i in range(0, len(linked), 100):
            self._client.log_batch(self.run_id, metrics=linked[i : i + 100])

    def mark_experiment(self) -> None:
        """Tag the run's experiment as model development (once), for experiments created before the tag existed."""
        self._safe(self._mark_experiment)

    def _mark_experiment(self) -> None:
        exp_id = self._client.get_run(self.run_id).info.experiment_id
        if self._client.get_experiment(exp_id).tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            self._client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    def close(self, status: str = "FINISHED") -> None:
        """Deliver the buffer, then close the run; an incomplete run is closed FAILED, naming its local results."""
        if not self._alive or self.run_id is None:
            return
        delivered = self._flush(final=True)
        lost = len(self._pending) + self._dropped
        if delivered and not lost:
            if self._rejected:
                self.set_tags({"cvil.tracking.rejected": self._rejected})
            self._safe(self._client.set_terminated, self.run_id, status)
            if self._flush(final=True):
                return
            lost = len(self._pending)
        note = {schema.LOCAL_RESULTS: self.local_dir or "metrics.jsonl in the run's output_dir",
                "cvil.tracking.undelivered": lost, "cvil.tracking.rejected": self._rejected}
        self._pending = []
        from mlflow.entities import RunTag

        self._safe(self._client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in note.items()])
        self._safe(self._client.set_terminated, self.run_id, "FAILED" if status == "FINISHED" else status)
        if self._flush(final=True):
            self._warn("failed", f"MLflow run {self.run_id}: {lost} logging calls could not be delivered; closed "
                                 f"FAILED, local results in {note['cvil.local_results']}")
        else:
            self._warn("left", f"MLflow run {self.run_id} could not be closed ({self.uri} unreachable): it shows "
                               f"RUNNING until a grid re-run closes it; local results in {note['cvil.local_results']}")


def finish_open_run(uri: str, run_id: str, metrics: dict[str, float], *, step: int = 0) -> bool:
    """Close run `run_id` as FINISHED if it is still RUNNING (its process was killed after the run's work was done),
    first logging those of `metrics` it does not hold; True when it closed it. A store that cannot be reached, or a
    SQLite file that does not exist, costs one warning and changes nothing."""
    uri = resolve_tracking_uri(uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        return False
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        run = client.get_run(run_id)
        if run.info.status != "RUNNING":
            return False
        now = int(time.time() * 1000)
        missing = [Metric(k, float(v), now, step) for k, v in metrics.items()
                   if v is not None and k not in run.data.metrics]
        if missing:
            client.log_batch(run_id, metrics=missing)
        client.set_terminated(run_id, "FINISHED")
        return True
    except Exception as exc:  # unreachable store, unknown run: the run's own results are safe in its folder
        warnings.warn(f"MLflow run {run_id} could not be closed ({uri}): {exc!r}", stacklevel=2)
        return False


class _NoClient:
    """Stands in for a client that could not be created, so `self._client.method` never raises AttributeError."""

    def __getattr__(self, name: str):
        return _no_op


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


_HTTP_DEFAULTS = {  # used unless the user set them: a few seconds, not minutes, per failed call to a server
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_REJECTED_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE",
                   "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_REQUEST"}


def _rejected(exc: BaseException) -> bool:
    return getattr(exc, "error_code", "") in _REJECTED_CODES


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (None for other stores and in-memory databases)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def store_setup_lock(uri: str, timeout_s: float = 300.0):
    """Hold `<db>.lock` while a client is first created on a SQLite store.

    MLflow migrates a fresh SQLite database in the client's constructor, and two processes migrating the same file
    at once kill one of them (two runs or two grids starting together on a new store). Other stores need nothing.
    """
    db = sqlite_path(uri)
    if db is None or not db.parent.is_dir():
        yield
        return
    fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.warning("%s.lock still held after %.0f s; going on without it", db, timeout_s)
                    break
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def get_or_create_experiment(client, name: str, *, call=_call) -> str:
    """The id of experiment `name`, created (tagged as model development) when missing, tolerating a concurrent
    creator (grid cells start at the same time). `call(fn, *args)` runs each store call (e.g. with retries)."""
    exp = call(client.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    try:
        return call(client.create_experiment, name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def all_pages(method, *args, **kwargs) -> list:
    """Every item of a paged MLflow search: `method(*args, page_token=..., **kwargs)` until the last page."""
    out, token = [], None
    while True:
        page = method(*args, page_token=token, **kwargs)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _PARAM_MAX else text[: _PARAM_MAX - 3] + "..."


def git_commit() -> str:
    """The code's commit (with `+dirty` for uncommitted changes), for provenance; "unknown" outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
