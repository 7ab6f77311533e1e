"""Experiment tracking behind one small protocol: MLflow on rank 0, nothing elsewhere.

The training loop only ever talks to a `Tracker`. `MLflowTracker` logs to any MLflow store (default
`sqlite:///mlflow.db` in the working folder); `NullTracker` is used on ranks > 0, in tests, and when tracking is
off. Training must never die because the store is unreachable: the MLflow tracker warns once, then keeps going
with local logs only (`metrics.jsonl` in the run's output folder is always written by the loop).
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# MLflow 3's UI opens an experiment without this tag in its GenAI layout ("Evaluations"); this is model training.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
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
                          step: int = 0) -> None: ...
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
                          step: int = 0) -> None: ...
    def mark_experiment(self) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


def resolve_tracking_uri(uri: str = "") -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class MLflowTracker:
    """One MLflow run, created or re-attached (resume) at construction.

    Every call goes through `_safe`, which turns the first store failure into one warning and disables further
    calls, so a dead tracking server costs a warning, not a training run.
    """

    def __init__(
        self,
        *,
        uri: str = "",
        experiment: str = "cvil",
        run_name: str = "",
        run_id: str | None = None,
        parent_run_id: str = "",
        tags: dict[str, Any] | None = None,
    ) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self._alive = True
        self.run_id = None
        self.uri = resolve_tracking_uri(uri)
        try:
            self._client = MlflowClient(tracking_uri=self.uri)
            if run_id:
                self._client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
            else:
                exp = self._client.get_experiment_by_name(experiment)
                exp_id = exp.experiment_id if exp else _create_experiment(self._client, experiment)
                all_tags = {k: str(v) for k, v in (tags or {}).items()}
                if parent_run_id:
                    all_tags["mlflow.parentRunId"] = parent_run_id
                run = self._client.create_run(exp_id, run_name=run_name or None, tags=all_tags)
                self.run_id = run.info.run_id
        except Exception as exc:  # unreachable or broken store
            self._disable(exc)
        self._mlflow = mlflow

    def _disable(self, exc: BaseException) -> None:
        if self._alive:
            warnings.warn(f"MLflow tracking disabled ({self.uri}): {exc!r}; training continues with local logs", stacklevel=3)
        self._alive = False

    def _safe(self, fn, *args, **kwargs) -> None:
        if not self._alive or self.run_id is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            self._disable(exc)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._safe(self._client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
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
                          step: int = 0) -> None:
        """The run's final model as an MLflow LoggedModel (the Models column) that *points at* `path`.

        An external model: MLflow stores no weights (a real student is GBs), only the folder's location as the tag
        `cvil.model_path` and the params given; the run is its source and lists it as an output at `step`.
        """
        self._safe(self._log_model_pointer, Path(path), name, params or {}, step)

    def _log_model_pointer(self, path: Path, name: str, params: dict, step: int) -> None:
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        run = self._client.get_run(self.run_id)
        model = self._client.create_logged_model(
            run.info.experiment_id, name=name, source_run_id=self.run_id, model_type="cvil-oscar-vqa",
            tags={"mlflow.model.isExternal": "true", "cvil.model_path": str(path.resolve())},
            params={k: _param_value(v) for k, v in params.items()})
        self._client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        self._client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step)])

    def mark_experiment(self) -> None:
        """Tag the run's experiment as model development (once), for experiments created before the tag existed."""
        self._safe(self._mark_experiment)

    def _mark_experiment(self) -> None:
        exp_id = self._client.get_run(self.run_id).info.experiment_id
        if self._client.get_experiment(exp_id).tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            self._client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    def close(self, status: str = "FINISHED") -> None:
        self._safe(self._client.set_terminated, self.run_id, status)


def _create_experiment(client, name: str) -> str:
    """Create the experiment, tolerating a concurrent creator (grid cells start at the same time)."""
    try:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
