"""Where a grid job's `cvil train` command runs: a local subprocess, or a job on a cluster scheduler via submitit.

Every launcher does the same thing on the executing node — `run_command`: run the command with its stdout/stderr
going to log files beside the grid's outputs — so the runner reads the outcome (exit code, stderr tail) the same
way whichever launcher ran it. The local launcher is a plain `Popen` (each job in its own process group, so an
interrupt reaches the whole job and nothing else; on Linux a job also gets SIGTERM if the grid dies); the submitit launchers pickle `run_command` to a scheduler job
(`AutoExecutor(cluster="slurm")`, or `cluster="local"`, which is also how the tests exercise this path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

LAUNCHERS = ("local", "submitit-local", "slurm")


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stderr_tail: str


def tail(path: str | Path, lines: int = 12) -> str:
    """The last `lines` lines of a log file ("" when missing): what a failed job's summary shows."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_command(cmd: list[str], cwd: str, env: dict[str, str], stdout_path: str, stderr_path: str) -> int:
    """Run one job's command to completion on this node; the exit code is the job's result."""
    Path(stdout_path).parent.mkdir(parents=True, exist_ok=True)
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        return subprocess.call(cmd, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=err)


class Handle(Protocol):
    def poll(self) -> Outcome | None: ...

    def interrupt(self) -> None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    def start(self, cmd: list[str], *, cwd: str, env: dict[str, str], stdout_path: str, stderr_path: str) -> Handle: ...


# ------------------------------------------------------------------------------------------------------ local


class _LocalHandle:
    def __init__(self, proc: subprocess.Popen, stderr_path: str, files: list):
        self.proc, self.stderr_path, self.files = proc, stderr_path, files

    def poll(self) -> Outcome | None:
        rc = self.proc.poll()
        if rc is None:
            return None
        for f in self.files:
            f.close()
        return Outcome(rc, tail(self.stderr_path))

    def interrupt(self) -> None:
        """Ctrl-C for this job's process group: the trainer closes its run (KILLED) and can be resumed later."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def _die_with_parent(parent_pid: int):
    """Linux: the job gets SIGTERM when the grid dies, even by SIGKILL (which the grid cannot catch to stop its jobs),
    so a killed grid leaves no orphan training; the trainer closes its run KILLED on that SIGTERM."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None

    def set_parent_death_signal() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the grid died before the call above
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


class LocalLauncher:
    def start(self, cmd, *, cwd, env, stdout_path, stderr_path) -> _LocalHandle:
        Path(stdout_path).parent.mkdir(parents=True, exist_ok=True)
        out, err = open(stdout_path, "w"), open(stderr_path, "w")
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        return _LocalHandle(proc, stderr_path, [out, err])


# --------------------------------------------------------------------------------------------------- submitit


class _SubmititHandle:
    def __init__(self, job, stderr_path: str):
        self.job, self.stderr_path = job, stderr_path

    def poll(self) -> Outcome | None:
        if not self.job.done():
            return None
        try:
            rc = int(self.job.result())
        except Exception as exc:  # the scheduler job itself failed (node lost, timeout, pickling)
            return Outcome(-1, (tail(self.stderr_path) + f"\nsubmitit job {self.job.job_id} failed: {exc}").strip())
        return Outcome(rc, tail(self.stderr_path))

    def interrupt(self) -> None:
        self.job.cancel(check=False)

    kill = interrupt


class SubmititLauncher:
    """Jobs on a scheduler through submitit; `options` go to `AutoExecutor.update_parameters`.

    For Slurm pass e.g. `--launcher-opt slurm_partition=gpu --launcher-opt gpus_per_node=1
    --launcher-opt timeout_min=240`. The submitit folder (pickles, scheduler logs) lives under the grid's runs dir.
    """

    def __init__(self, cluster: str, folder: str, options: dict | None = None):
        import submitit

        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self.executor.update_parameters(**{"timeout_min": 24 * 60, **(options or {})})

    def start(self, cmd, *, cwd, env, stdout_path, stderr_path) -> _SubmititHandle:
        job = self.executor.submit(run_command, cmd, cwd, env, stdout_path, stderr_path)
        return _SubmititHandle(job, stderr_path)


def make_launcher(name: str, *, folder: str, options: dict | None = None) -> Launcher:
    if name == "local":
        if options:
            raise ValueError("the local launcher takes no --launcher-opt")
        return LocalLauncher()
    if name == "submitit-local":
        return SubmititLauncher("local", folder, options)
    if name == "slurm":
        return SubmititLauncher("slurm", folder, options)
    raise ValueError(f"unknown launcher {name!r}; choose from {', '.join(LAUNCHERS)}")


def stop_all(handles: list[Handle], grace_s: float = 15.0, poll_s: float = 0.2) -> None:
    """Interrupt every running job at once, give them `grace_s` to close their runs, then kill the rest."""
    for h in handles:
        h.interrupt()
    deadline = time.monotonic() + grace_s
    try:
        while time.monotonic() < deadline and any(h.poll() is None for h in handles):
            time.sleep(poll_s)
    except KeyboardInterrupt:  # a second Ctrl-C: kill now
        pass
    for h in handles:
        if h.poll() is None:
            h.kill()
