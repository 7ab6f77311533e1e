"""One writer per run folder, and a SIGTERM that closes the MLflow run KILLED and keeps a resumable checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvil.config import load_config
from cvil.train.run_lock import LOCK_NAME, RunFolderLocked, RunLock, holder

REPO = Path(__file__).resolve().parents[2]
HOLD = "import sys, time; from cvil.train.run_lock import RunLock; lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"


def _holder_process(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    proc = _holder_process(folder)
    try:
        assert holder(folder) == proc.pid
        with pytest.raises(RunFolderLocked, match=f"run folder {folder} is in use by pid {proc.pid}"):
            RunLock(folder).acquire()
    finally:
        proc.kill()
        proc.wait()
    assert (folder / LOCK_NAME).read_text().strip() == str(proc.pid)  # SIGKILL left the file behind
    assert holder(folder) is None
    with RunLock(folder) as lock:  # stale: taken over, now naming this process
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid()) and holder(folder) == os.getpid()
        with pytest.raises(RunFolderLocked):
            RunLock(folder).acquire()
    assert not lock.path.exists() and holder(folder) is None  # a clean release removes the file


def test_train_refuses_a_locked_output_dir_before_writing_anything(tmp_path, synthetic_config, overrides_for):
    from cvil.train.api import run

    out = tmp_path / "run"
    proc = _holder_process(out)
    try:  # a config that passes the pre-run gate (api.run checks the config first, then takes the lock)
        cfg = load_config(synthetic_config("baseline.yaml"), overrides_for(out, "tracking.enabled=false"))
        with pytest.raises(RunFolderLocked, match=f"in use by pid {proc.pid}"):
            run(cfg)
    finally:
        proc.kill()
        proc.wait()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


@pytest.mark.slow
def test_sigterm_closes_the_run_killed_keeps_a_checkpoint_and_resume_finishes_it(overrides_for, synthetic_config,
                                                                                tmp_path, mlflow_store):
    import torch
    from mlflow.tracking import MlflowClient

    from cvil.train.api import run
    from cvil.train.checkpointing import verified_torch_load

    out = tmp_path / "run"
    overrides = overrides_for(out, "stages.1.epochs=3", "train.checkpoint_every=2", "tracking.enabled=true",
                              f"tracking.uri={mlflow_store}", "evaluate=[val]")
    config = str(synthetic_config("baseline.yaml"))
    proc = subprocess.Popen([sys.executable, "-m", "cvil", "train", "--config", config, *overrides],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            seen = torch.load(ckpt, weights_only=True)["progress"]
            if seen["stage"] == 1 and seen["stage_step"] >= 2:  # inside the second stage's step loop
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    state = verified_torch_load(ckpt)["progress"]
    assert f"stopped by SIGTERM at step {state['global_step']}; checkpoint saved" in err and "--resume" in err
    assert state["stage"] == 1 and state["global_step"] >= seen["global_step"]  # saved where it stopped
    assert not (out / "final").exists() and not (out / LOCK_NAME).exists()

    client = MlflowClient(mlflow_store)
    exp = client.get_experiment_by_name("cvil").experiment_id
    (killed,) = client.search_runs([exp])
    assert killed.info.status == "KILLED" and state["run_id"] == killed.info.run_id

    run(load_config(config, overrides), resume=True)
    (done,) = client.search_runs([exp])  # the same run, re-opened and finished: one FINISHED run, no duplicate
    assert done.info.run_id == killed.info.run_id and done.info.status == "FINISHED"
    assert "val.accuracy" in done.data.metrics  # the final evaluation was logged


@pytest.mark.parametrize("raised, status", [("stop", "KILLED"), ("bug", "FAILED")])
def test_an_on_eval_stop_trial_closes_the_run_killed_any_other_error_failed(raised, status, overrides_for,
                                                                             synthetic_config, tmp_path, mlflow_store):
    """A search stops a trial with the core's `StopTrial` (not by the class name of its optimiser's exception)."""
    from mlflow.tracking import MlflowClient

    from cvil.errors import StopTrial
    from cvil.train.api import run

    error = StopTrial("pruned") if raised == "stop" else RuntimeError("a bug in the callback")

    def on_eval(stage: str, step: int, metrics: dict) -> None:
        raise error

    cfg = load_config(synthetic_config("baseline.yaml"),
                      overrides_for(tmp_path / "run", "tracking.enabled=true", f"tracking.uri={mlflow_store}"))
    with pytest.raises(type(error)):
        run(cfg, on_eval=on_eval)
    client = MlflowClient(mlflow_store)
    (closed,) = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])
    assert closed.info.status == status
