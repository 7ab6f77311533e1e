"""One metrics sink: `metrics.jsonl` is a tracker beside MLflow, so both hold the same metrics, key by key.

Before: the trainer wrote the file by hand while the final evaluation and the stage ends logged to MLflow only; a tiny
BASELINE run had 25 metrics in MLflow (both `selected_step`s, every final `val.*`/`test.*`) that the file lacked, and
`cvil predict --run-id` logged to MLflow only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cvil.config import load_config
from cvil.tracking_local import JsonlTracker, TeeTracker, read_metrics
from cvil.train import run_layout
from cvil.train.api import run

REPO = Path(__file__).resolve().parents[2]


def _store_metrics(uri: str, run_id: str) -> dict[tuple[str, int], float]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    out = {}
    for key in client.get_run(run_id).data.metrics:
        for m in client.get_metric_history(run_id, key):
            out[(m.key, m.step)] = m.value
    return out


def _file_metrics(out: Path) -> dict[tuple[str, int], float]:
    return {(k, r["step"]): float(v) for r in read_metrics(run_layout.metrics_path(out)) for k, v in r.items()
            if k != "step"}


@pytest.mark.slow
def test_metrics_jsonl_and_mlflow_hold_the_same_metrics_for_a_run_and_for_predict(
        overrides_for, synthetic_config, tmp_path, mlflow_store):
    from mlflow import MlflowClient

    out = tmp_path / "baseline"
    metrics = run(load_config(synthetic_config("baseline.yaml"), overrides_for(
        out, "tracking.enabled=true", f"tracking.uri={mlflow_store}")))
    client = MlflowClient(mlflow_store)
    (info,) = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])
    in_file, in_store = _file_metrics(out), _store_metrics(mlflow_store, info.info.run_id)
    assert in_file.keys() == in_store.keys()
    for key, value in in_store.items():
        assert in_file[key] == pytest.approx(value, rel=1e-6), key
    names = {k for k, _ in in_file}
    assert {"jvg_head.selected_step", "jvg_full.selected_step"} <= names  # stage ends
    assert {k for k in metrics} <= names  # the final evaluation

    proc = subprocess.run([sys.executable, "-m", "cvil", "predict", "--checkpoint", str(out), "--split", "val",
                           "--out", str(tmp_path / "again_results.json"), "--run-id", info.info.run_id],
                          capture_output=True, text=True, cwd=REPO, env={**__import__("os").environ,
                                                                          "MLFLOW_TRACKING_URI": mlflow_store})
    assert proc.returncode == 0, proc.stderr[-2000:]
    in_file, in_store = _file_metrics(out), _store_metrics(mlflow_store, info.info.run_id)
    assert in_file.keys() == in_store.keys()
    tags = client.get_run(info.info.run_id).data.tags
    assert tags["val.row_keys"] == "q_id" and "val.answer_source" in tags  # predict sets the run's tags too


def test_a_tee_feeds_every_tracker_and_the_file_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        JsonlTracker(tmp_path / "run" / "metrics.jsonl").log_metrics({"a": 1.0}, 3)
    assert victim.read_text() == "mine"
    a, b = JsonlTracker(tmp_path / "a.jsonl"), JsonlTracker(tmp_path / "b.jsonl")
    tee = TeeTracker(a, b)
    tee.log_metrics({"x": 1.5, "y": float("nan"), "skip": None}, step=7)
    tee.set_tags({"t": 1})
    for path in (a.path, b.path):
        (record,) = read_metrics(path)
        assert record["step"] == 7 and record["x"] == 1.5 and record["y"] != record["y"] and "skip" not in record
