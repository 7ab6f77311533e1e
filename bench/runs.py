"""Read grid runs from the MLflow tracking store (schema: docs/architecture.md §3).

The only module that talks to MLflow for reading: `cvil-bench compare` and the leaderboards both find runs by the
tags `cvil.grid` / `cvil.cell` / `cvil.seed` and fetch the per-question CSV artifact through here. Unfinished and
failed runs are returned too, so a table can say "failed: reason" instead of silently dropping a cell.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cvil import tracking_schema as schema
from cvil.tracking import all_pages

GRID_TAG, CELL_TAG, SEED_TAG, PARENT_TAG = schema.GRID, schema.CELL, schema.SEED, schema.PARENT_RUN
#: tags that may hold why a run failed, first hit wins
FAILURE_TAGS = schema.FAILURE_TAGS


@dataclass(frozen=True)
class RunRecord:
    """The parts of an MLflow run the benchmark layer reads."""

    run_id: str
    experiment_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    start_time: int | None = None
    end_time: int | None = None

    @property
    def grid(self) -> str | None:
        return self.tags.get(GRID_TAG)

    @property
    def cell(self) -> str | None:
        return self.tags.get(CELL_TAG)

    @property
    def seed(self) -> str:
        return self.tags.get(SEED_TAG, self.run_id[:8])

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    def lookup(self, key: str) -> str | None:
        """'tags.X' / 'params.X' / 'metrics.X' -> value or None."""
        kind, _, name = key.partition(".")
        source = {"tags": self.tags, "params": self.params, "metrics": self.metrics}.get(kind, {})
        value = source.get(name)
        return None if value is None else str(value)

    def failure_reason(self) -> str:
        for tag in FAILURE_TAGS:
            if self.tags.get(tag):
                return self.tags[tag].strip().splitlines()[0]
        return f"run {self.run_id[:8]} {self.status.lower()}"


def client(tracking_uri: str | None = None):
    from mlflow import MlflowClient

    from bench.tracking import apply_http_defaults

    apply_http_defaults()  # a few seconds per failed call to a server, not MLflow's minutes
    return MlflowClient(tracking_uri=tracking_uri)


def _record(run) -> RunRecord:
    return RunRecord(run_id=run.info.run_id, experiment_id=run.info.experiment_id, status=run.info.status,
                     tags=dict(run.data.tags), params=dict(run.data.params), metrics=dict(run.data.metrics),
                     start_time=run.info.start_time, end_time=run.info.end_time)


def get_run(mlflow_client, run_id: str) -> RunRecord:
    return _record(mlflow_client.get_run(run_id))


def find_runs(mlflow_client, *, grid: str | None = None, cell: str | None = None) -> list[RunRecord]:
    """All runs (any status, any experiment) with the given grid/cell tags, oldest first; runs a grid re-run
    replaced (`cvil.replaced_by`, `bench.replaced`) are left out, as the UI's suggested filter leaves them out."""
    clauses = [f"tags.`{GRID_TAG}` = '{_quote(grid)}'" if grid else None,
               f"tags.`{CELL_TAG}` = '{_quote(cell)}'" if cell else None, schema.ACTIVE_RUNS_FILTER]
    filter_string = " AND ".join(c for c in clauses if c)
    experiment_ids = [e.experiment_id for e in all_pages(mlflow_client.search_experiments)]
    if not experiment_ids:
        return []
    runs = all_pages(mlflow_client.search_runs, experiment_ids, filter_string=filter_string,
                order_by=["attributes.start_time ASC"])
    return [_record(r) for r in runs]


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def latest_per_seed(records: list[RunRecord]) -> list[RunRecord]:
    """One finished run per seed (the latest, as a re-run of a cell supersedes an earlier one)."""
    best: dict[str, RunRecord] = {}
    for r in records:
        if r.finished and (r.seed not in best or (r.start_time or 0) >= (best[r.seed].start_time or 0)):
            best[r.seed] = r
    return [best[s] for s in sorted(best)]


def parent_run_id(records: list[RunRecord]) -> str | None:
    """The grid's parent run: the run the children point to, else a grid-tagged run without a cell tag."""
    parents = {r.tags[PARENT_TAG] for r in records if r.tags.get(PARENT_TAG)}
    if len(parents) == 1:
        return parents.pop()
    untagged = [r.run_id for r in records if r.cell is None]
    return untagged[-1] if untagged else None


def read_per_question_csv(path: str | Path) -> pd.DataFrame:
    """The per-question CSV (cvil.eval's reader: int ids, float scores, verbatim answers), indexed by question_id."""
    from cvil.eval.results_io import read_per_question

    frame = read_per_question(path)
    if frame["question_id"].duplicated().any():
        dup = frame.loc[frame["question_id"].duplicated(), "question_id"].iloc[0]
        raise ValueError(f"{path}: question_id {dup!r} appears more than once")
    return frame.set_index("question_id")


def grid_failures(mlflow_client, records: list[RunRecord]) -> dict[str, str]:
    """cell -> why its last attempt failed, from the grid parent's ``summary/summary.json`` (bench.grid writes it;
    a job that failed before logging a child run is only recorded there)."""
    parent = parent_run_id(records)
    if parent is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="cvil-summary-") as tmp:
        try:
            local = mlflow_client.download_artifacts(parent, "summary/summary.json", tmp)
        except Exception:  # no summary yet (grid still running): nothing to add
            return {}
        try:
            summary = json.loads(Path(local).read_text(encoding="utf-8"))
            failed = [(str(item.get("cell")), str(item.get("error", ""))) for item in summary.get("failed", [])]
        except Exception as exc:  # damaged: say so, the failed cells' reasons are not shown
            warnings.warn(f"grid summary of run {parent} (summary/summary.json) cannot be read back "
                          f"({type(exc).__name__}); failure reasons from it are not shown", stacklevel=2)
            return {}
    out = {}
    for cell, error in failed:
        lines = [ln.strip() for ln in error.splitlines() if ln.strip()]
        out[cell] = (lines[-1] if lines else "unknown error")[:120]
    return out


def per_question(mlflow_client, run_id: str, split: str = "test") -> pd.DataFrame | None:
    """The run's ``predictions/<split>_per_question.csv`` as a frame, or None when the run has no such artifact."""
    artifact = schema.per_question_artifact(split)
    with tempfile.TemporaryDirectory(prefix="cvil-pq-") as tmp:
        try:
            local = mlflow_client.download_artifacts(run_id, artifact, tmp)
        except Exception:  # MLflow raises backend-specific errors for a missing artifact
            return None
        return read_per_question_csv(local)
