"""The run folder's own metrics sink, and one tracker that feeds several.

`metrics.jsonl` in a run's output folder holds every metric the run logs, whether MLflow is on, off or unreachable.
It is a tracker like MLflow's (the `cvil.tracking.Tracker` protocol), not a second code path: the run logs once to
a `TeeTracker` of both, so the file and the tracking store always hold the same metrics (torchtune's metric
loggers have the same shape). Lines are `{"step": int, "<metric>": float, ...}`, appended in logging order.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from cvil.tracking import NullTracker


class JsonlTracker(NullTracker):
    """Appends each `log_metrics` call as one JSON line to `path`; everything else a tracker does is not its job."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        kept = {k: float(v) for k, v in metrics.items() if v is not None}
        if not kept:
            return
        line = json.dumps({"step": int(step or 0), **{k: _json_number(v) for k, v in kept.items()}}) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink planted in the run folder must not redirect the log to a file outside it
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line)


def _json_number(value: float) -> float | str:
    """JSON has no NaN/inf: write them as the strings Python's float() reads back."""
    return value if math.isfinite(value) else repr(value)


def read_metrics(path: str | Path) -> list[dict]:
    """The lines of a `metrics.jsonl` (NaN/inf restored), for tests and tools that compare sinks."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            out.append({k: (float(v) if isinstance(v, str) else v) for k, v in record.items()})
    return out


class TeeTracker:
    """One tracker that forwards every call to each of `trackers` (the run's JSONL file and MLflow)."""

    def __init__(self, *trackers) -> None:
        self.trackers = trackers

    @property
    def run_id(self) -> str | None:
        return next((t.run_id for t in self.trackers if t.run_id), None)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def forward(*args, **kwargs) -> None:
            for tracker in self.trackers:
                getattr(tracker, name)(*args, **kwargs)

        return forward
