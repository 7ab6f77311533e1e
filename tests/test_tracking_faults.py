"""The MLflow tracker under faults: it never stops training, never crashes, and never leaves a reachable run RUNNING.

Real stores only: a corrupt SQLite file, an unknown URI scheme, a fresh store migrated by two processes at once, a
SQLite lock held past MLflow's 20 s busy timeout, and an HTTP server that answers 503.
"""

from __future__ import annotations

import http.server
import os
import sqlite3
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cvil.tracking import MLflowTracker

REPO = Path(__file__).resolve().parents[1]


def _exercise(tracker: MLflowTracker, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    tracker.log_params({"p": 1})
    tracker.log_metrics({"m": 1.0}, step=1)
    tracker.set_tags({"t": "v"})
    tracker.log_artifact(tmp_path / "a.txt")
    tracker.log_text("x", "b.txt")
    tracker.close("FINISHED")


@pytest.mark.parametrize("store", ["corrupt_sqlite", "unknown_scheme"])
def test_a_store_that_cannot_be_opened_warns_once_and_every_call_is_a_no_op(store, tmp_path):
    if store == "corrupt_sqlite":
        (tmp_path / "mlflow.db").write_bytes(b"this is not a database" * 100)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        uri = "nosuchscheme://host/x"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = MLflowTracker(uri=uri)
        _exercise(tracker, tmp_path)  # used to raise AttributeError: 'MLflowTracker' object has no attribute '_client'
    disabled = [w for w in caught if "MLflow tracking disabled" in str(w.message)]
    assert len(disabled) == 1 and uri in str(disabled[0].message) and tracker.run_id is None


RACER = r'''
import os, sys, time, warnings
from cvil.tracking import MLflowTracker
uri, go = sys.argv[1], sys.argv[2]
open(f"{go}.{os.getpid()}", "w").close()  # imported: ready
while not os.path.exists(go):
    time.sleep(0.01)
if sys.argv[3] == "grid":  # what `cvil-bench grid` does first on its store
    from bench import tracking
    c = tracking.client(uri)
    print("OK" if tracking.experiment_id(c, "grid-exp") else "DEAD")
    sys.exit()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    t = MLflowTracker(uri=uri, run_name=f"p{os.getpid()}")
    t.log_metrics({"x": 1.0}, step=1)
    t.close()
bad = [str(w.message) for w in caught if "MLflow" in str(w.message)]
print("OK" if t.run_id and not bad else f"DEAD {bad}")
'''


@pytest.mark.slow
def test_a_first_run_and_a_grid_starting_together_on_a_fresh_sqlite_store_both_work(tmp_path):
    script, go, db = tmp_path / "racer.py", tmp_path / "go", tmp_path / "fresh" / "mlflow.db"
    script.write_text(RACER)
    db.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), f"sqlite:///{db}", str(go), mode], cwd=db.parent,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for mode in ("train", "grid")]
    import time

    while len(list(tmp_path.glob("go.*"))) < 2 and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    go.touch()  # both imported: they create their clients at the same moment
    outs = [p.communicate(timeout=120) for p in procs]
    assert [o[0].strip() for o in outs] == ["OK", "OK"], [o[1][-1500:] for o in outs]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])
    assert run.info.status == "FINISHED" and client.get_experiment_by_name("grid-exp") is not None


@pytest.mark.slow
def test_a_lock_outlasting_mlflows_wait_is_buffered_then_delivered_or_the_run_closed_failed(mlflow_store, tmp_path):
    """Two runs hit a SQLite lock held for longer than MLflow's busy timeout. Both keep training (their calls
    return); when the lock goes, the one whose buffer held everything delivers it all and closes FINISHED; the one
    whose buffer overflowed closes FAILED, naming where its local results are. Neither stays RUNNING."""
    from mlflow.tracking import MlflowClient

    full = MLflowTracker(uri=mlflow_store, run_name="full", local_dir=tmp_path / "full")
    small = MLflowTracker(uri=mlflow_store, run_name="small", local_dir=tmp_path / "small")
    small.max_pending = 2
    blocker = sqlite3.connect(mlflow_store.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(2) as pool:  # both wait out the busy timeout at the same time
            list(pool.map(lambda t: t.log_metrics({"loss": 1.0}, step=1), (full, small)))
        for tracker in (full, small):
            for step in (2, 3, 4):  # buffered (the retry is not due yet); `small` overflows at step 3
                tracker.log_metrics({"loss": 1.0 / step}, step=step)
        blocker.execute("ROLLBACK")
        full.log_metrics({"test.accuracy": 0.5})
        full.close("FINISHED")
        small.close("FINISHED")
    assert any("buffering" in str(w.message) for w in caught)

    client = MlflowClient(mlflow_store)
    done = client.get_run(full.run_id)
    assert done.info.status == "FINISHED" and done.data.metrics["test.accuracy"] == 0.5
    assert [m.step for m in client.get_metric_history(full.run_id, "loss")] == [1, 2, 3, 4]
    partial = client.get_run(small.run_id)
    assert partial.info.status == "FAILED"
    assert partial.data.tags["cvil.local_results"] == str(tmp_path / "small")
    assert partial.data.tags["cvil.tracking.undelivered"] == "2"
    assert [m.step for m in client.get_metric_history(small.run_id, "loss")] == [1, 2]


class _Unavailable(http.server.BaseHTTPRequestHandler):
    requests = 0

    def _answer(self):
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


def test_an_unavailable_server_costs_a_few_requests_not_minutes(tmp_path, monkeypatch):
    """MLflow's defaults retry a failing request 7 times with doubling backoff (258 s before training starts on a
    closed port); the tracker's defaults (used unless the user set them) bound it to 3 requests."""
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(key, "0")
        monkeypatch.delenv(key)  # restored (to unset) after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = MLflowTracker(uri=f"http://127.0.0.1:{server.server_address[1]}")
            _exercise(tracker, tmp_path)
    finally:
        server.shutdown()
    # the health probe (it answers, so MLflow is tried), then one call with MLFLOW_HTTP_REQUEST_MAX_RETRIES=2 retries;
    # then tracking is off
    assert _Unavailable.requests == 4
    assert tracker.run_id is None and any("MLflow tracking disabled" in str(w.message) for w in caught)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
