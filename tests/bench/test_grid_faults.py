"""Grids under faults, with real processes: a grid stopped by SIGTERM or SIGKILL takes its jobs down with it; a
cell trained by someone else right now is reported held, never trained twice in one folder; a job killed before it
closed its MLflow run leaves no RUNNING run behind once the cell is re-run (one FINISHED run per cell x seed).

The fake trainer behaves like `cvil train` where it matters here: it holds the run folder's lock
(`cvil.train.run_lock`), makes one MLflow child run, and on SIGTERM/SIGINT closes it KILLED. Cells named in
$FAKE_SLEEP train until stopped; cells in $FAKE_DIE SIGKILL themselves right after creating their run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import tracking
from bench.grid.runner import GridRunner
from bench.grid.spec import load_grid

REPO = Path(__file__).resolve().parents[2]

FAKE_TRAIN = textwrap.dedent(
    r'''
    import os, signal, sys, time
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from cvil.config import config_hash, load_config
    from cvil.train.run_lock import RunFolderLocked, RunLock

    argv = [a for a in sys.argv[1:] if a not in ("train", "--resume")]
    config = argv[argv.index("--config") + 1]
    cfg = load_config(config, [a for i, a in enumerate(argv) if "=" in a and argv[i - 1] != "--config"])
    t, out = cfg.tracking, Path(cfg.output_dir)
    try:
        lock = RunLock(out).acquire()
    except RunFolderLocked as exc:
        print(f"cvil train: {exc}", file=sys.stderr)
        sys.exit(2)
    cell = t.tags["cvil.cell"]
    client = MlflowClient(t.uri)
    exp = client.get_experiment_by_name(t.experiment).experiment_id
    run = client.create_run(exp, run_name=t.run_name, tags={"mlflow.parentRunId": t.parent_run_id,
                            "cvil.config_hash": config_hash(cfg), **{k: str(v) for k, v in t.tags.items()}})
    (out / "pid").write_text(str(os.getpid()))
    if cell in os.environ.get("FAKE_DIE", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)

    def stop(signum, frame):
        client.set_terminated(run.info.run_id, "KILLED")
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if cell in os.environ.get("FAKE_SLEEP", "").split(","):
        time.sleep(120)
    client.log_metric(run.info.run_id, "test.accuracy", 0.5)
    client.set_terminated(run.info.run_id, "FINISHED")
    '''
)


@pytest.fixture
def grid_file(mlflow_store, tmp_path, monkeypatch):
    """A 1-cell, 1-seed grid on the fake trainer."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    (tmp_path / "base.yaml").write_text("schedule: baseline\n")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nseeds: 1\ncells:\n  OK: {config: base.yaml}\n")
    monkeypatch.setenv("CVIL_TRAIN_CMD", f"{sys.executable} {script} train")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return grid


def _runs(uri: str) -> list:
    c = tracking.client(uri)
    return tracking.search_all(c, tracking.experiment_id(c, "cvil"), tracking.tag_filter({"cvil.cell": "OK"}))


def _parent_status(uri: str) -> str:
    c = tracking.client(uri)
    (parent,) = tracking.search_all(c, tracking.experiment_id(c, "cvil"), tracking.tag_filter({"cvil.grid": "g",
                                                                                               "cvil.kind": "grid"}))
    return parent.info.status


def _run(grid: Path, uri: str) -> tuple[list, list[str]]:
    lines: list[str] = []
    return GridRunner(load_grid(str(grid)), uri=uri, echo=lines.append, poll_s=0.05).run(), lines


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:] if proc.stderr else ""
        time.sleep(0.05)


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, not yet reaped by its new parent
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_grid_stops_its_job_and_its_run_is_closed_killed(sig, grid_file, mlflow_store, tmp_path,
                                                                   monkeypatch):
    """And while the job trains, the same grid started again reports the cell as held instead of training it too."""
    monkeypatch.setenv("FAKE_SLEEP", "OK")
    grid = subprocess.Popen([sys.executable, "-m", "bench.cli", "grid", str(grid_file), "--tracking-uri", mlflow_store],
                            env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "runs/g/OK/seed0/pid"
    _wait_for(pid_file, grid)
    child = int(pid_file.read_text())

    if sig == signal.SIGTERM:  # one concurrent re-run is enough to show it
        results, lines = _run(grid_file, mlflow_store)
        assert [(r.status, r.error) for r in results] == [
            ("skipped", f"held: runs/g/OK/seed0 is in use by pid {child}; not started")]
        assert [r.info.status for r in _runs(mlflow_store)] == ["RUNNING"]  # the live job's run was left alone

    grid.send_signal(sig)
    grid.communicate(timeout=60)
    assert grid.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert _gone(child), f"job {child} still running after the grid got {sig.name}"
    deadline = time.time() + 30
    while _runs(mlflow_store)[0].info.status == "RUNNING" and time.time() < deadline:
        time.sleep(0.1)
    assert [r.info.status for r in _runs(mlflow_store)] == ["KILLED"]
    if sig == signal.SIGTERM:
        assert _parent_status(mlflow_store) == "KILLED"


@pytest.mark.slow
def test_a_job_killed_before_closing_its_run_leaves_one_finished_run_after_the_rerun(grid_file, mlflow_store,
                                                                                    monkeypatch):
    monkeypatch.setenv("FAKE_DIE", "OK")
    results, _ = _run(grid_file, mlflow_store)
    assert results[0].status == "failed" and [r.info.status for r in _runs(mlflow_store)] == ["RUNNING"]
    stale = _runs(mlflow_store)[0].info.run_id

    monkeypatch.delenv("FAKE_DIE")
    results, lines = _run(grid_file, mlflow_store)
    assert results[0].status == "finished"
    assert any(f"closed stale RUNNING run {stale}" in line for line in lines)
    statuses = {r.info.run_id: r.info.status for r in _runs(mlflow_store)}
    assert statuses[stale] == "KILLED" and sorted(statuses.values()) == ["FINISHED", "KILLED"]
    results, _ = _run(grid_file, mlflow_store)  # nothing left to do, nothing closed
    assert results[0].status == "skipped" and sorted(r.info.status for r in _runs(mlflow_store)) == ["FINISHED",
                                                                                                      "KILLED"]


def test_a_job_refused_by_its_folder_lock_is_reported_held_not_failed(grid_file, tmp_path):
    """The race the up-front check cannot close: another trainer took the folder between the check and the start."""
    from bench.grid.runner import _Plan
    from bench.grid.spec import expand
    from bench.grid.launchers import Outcome
    from cvil.train.run_lock import RunFolderLocked

    runner = GridRunner(load_grid(str(grid_file)), echo=lambda line: None)
    job = expand(runner.spec, seeds=1)[0]
    refusal = f"cvil train: {RunFolderLocked(Path(job.output_dir), 4242)}"
    result = runner._finish(_Plan(job), Outcome(2, refusal), 1.0, 0, "parent", None, "0")
    assert (result.status, result.error) == ("skipped", f"held: {job.output_dir} is in use by pid 4242; not started")
