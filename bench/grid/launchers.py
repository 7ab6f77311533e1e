"""Where a grid job's `cvil train` command runs: a local subprocess, or a job on a cluster scheduler via submitit.

Every launcher does the same thing on the executing node — `run_command`: run the command with its stdout/stderr
going to log files beside the grid's outputs — so the runner reads the outcome (exit code, stderr tail) the same
way whichever launcher ran it. The local launcher is a plain `Popen` (each job in its own process group, so an
interrupt reaches the whole job and nothing else; on Linux a job also gets SIGTERM if the grid dies); the submitit launchers pickle `run_command` to a scheduler job
(`AutoExecutor(cluster="slurm")`, or `cluster="local"`, which is also how the tests exercise this path).

Slurm (`SlurmLauncher`): one job per cell x seed with `nodes` nodes, one task per node, `gpus_per_node` GPUs and
`cpus_per_task` CPUs per node, from the grid's `slurm:` mapping, overridden by `--gpus-per-node`, `--cpus-per-task`,
`--nodes`, `--torchrun` (or `--launcher-opt`). With several GPUs or nodes the train command runs under torchrun
(`torchrun` prefix, default `python -m torch.distributed.run` of this interpreter): `--standalone` on one node, a
c10d rendezvous on the job's first node otherwise (`run_on_node` fills in the node and the job id). The paper grids
ask for 4 GPUs (the paper's 4 x 32 = 128). Without `sbatch` and `srun` on PATH the grid stops at once with one line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cvil.errors import UsageError

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


# ------------------------------------------------------------------------------------------------------ slurm

SLURM_KEYS = ("gpus_per_node", "cpus_per_task", "nodes", "torchrun")  # the grid's `slurm:` mapping and its flags
RDZV_PORT = 29500
_HEAD, _JOB = "{cvil_head_node}", "{cvil_job_id}"  # filled in on the node by `run_on_node`


class LauncherError(UsageError):
    """A launcher cannot be used here (e.g. Slurm's tools are not installed): one line, exit 2."""


@dataclass(frozen=True)
class SlurmResources:
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    nodes: int = 1
    torchrun: tuple[str, ...] = ()  # () = `python -m torch.distributed.run` of this interpreter

    @classmethod
    def from_options(cls, options: dict) -> "SlurmResources":
        def count(key: str) -> int | None:
            value = options.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LauncherError(f"slurm {key.replace('_', '-')} must be an integer >= 1, got {value!r}")
            return value

        torchrun = options.get("torchrun") or ()
        return cls(count("gpus_per_node"), count("cpus_per_task"), count("nodes") or 1,
                   tuple(shlex.split(torchrun) if isinstance(torchrun, str) else map(str, torchrun)))

    @property
    def distributed(self) -> bool:
        """Does the job need torchrun (several GPUs or nodes, or a torchrun prefix asked for)?"""
        return self.nodes > 1 or (self.gpus_per_node or 1) > 1 or bool(self.torchrun)

    def executor_parameters(self) -> dict:
        out = {"nodes": self.nodes, "tasks_per_node": 1}  # one torchrun per node starts that node's processes
        if self.gpus_per_node is not None:
            out["gpus_per_node"] = self.gpus_per_node
        if self.cpus_per_task is not None:
            out["cpus_per_task"] = self.cpus_per_task
        return out

    def torchrun_prefix(self) -> list[str]:
        prefix = list(self.torchrun) or [sys.executable, "-m", "torch.distributed.run"]
        procs = f"--nproc_per_node={self.gpus_per_node or 1}"
        if self.nodes == 1:
            return [*prefix, "--standalone", "--nnodes=1", procs]
        return [*prefix, f"--nnodes={self.nodes}", procs, "--rdzv_backend=c10d",
                f"--rdzv_endpoint={_HEAD}:{RDZV_PORT}", f"--rdzv_id={_JOB}"]

    def command(self, cmd: list[str]) -> list[str]:
        """The job's command: `cmd` itself, or under torchrun when the job is distributed. A `python ...` command
        (the default `python -m cvil train`) becomes `torchrun ... -m cvil train ...`; another command is run as given
        (it must start its own processes)."""
        if not self.distributed or not cmd or not re.fullmatch(r"python[0-9.]*", Path(cmd[0]).name):
            return list(cmd)
        return [*self.torchrun_prefix(), *cmd[1:]]


def _head_node() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "")
    if not nodelist:
        return "localhost"
    try:
        names = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        names = [nodelist.split(",")[0]]
    return names[0] if names else "localhost"


def run_on_node(cmd: list[str], cwd: str, env: dict[str, str], stdout_path: str, stderr_path: str) -> int:
    """`run_command` on each node of a Slurm job: the rendezvous placeholders filled in (first node, job id); nodes
    other than the first log to `<log>.node<k>` (the grid reads node 0's, where rank 0 runs)."""
    node = int(os.environ.get("SLURM_NODEID", "0"))
    if any(_HEAD in part or _JOB in part for part in cmd):
        head, job = _head_node(), os.environ.get("SLURM_JOB_ID", "cvil")
        cmd = [part.replace(_HEAD, head).replace(_JOB, job) for part in cmd]
    if node:
        stdout_path, stderr_path = f"{stdout_path}.node{node}", f"{stderr_path}.node{node}"
    return run_command(cmd, cwd, env, stdout_path, stderr_path)


class SlurmLauncher(SubmititLauncher):
    """Jobs on Slurm through submitit, with the GPUs, CPUs and nodes of `SlurmResources` (module docstring)."""

    def __init__(self, folder: str, options: dict | None = None):
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise LauncherError(f"--launcher slurm needs Slurm's {' and '.join(missing)} on PATH, not found here: run "
                                f"the grid where Slurm is installed (a login node), or use --launcher local")
        options = dict(options or {})
        self.resources = SlurmResources.from_options({k: options.pop(k, None) for k in SLURM_KEYS})
        super().__init__("slurm", folder, {**self.resources.executor_parameters(), **options})

    def start(self, cmd, *, cwd, env, stdout_path, stderr_path) -> _SubmititHandle:
        job = self.executor.submit(run_on_node, self.resources.command(list(cmd)), cwd, env, stdout_path, stderr_path)
        return _SubmititHandle(job, stderr_path)


def make_launcher(name: str, *, folder: str, options: dict | None = None, grid_options: dict | None = None) -> Launcher:
    """`grid_options`: the grid's `slurm:` mapping (GPUs per node, CPUs per task, nodes, torchrun prefix), the
    defaults of a `slurm` launcher's `options`; other launchers ignore it."""
    if name == "local":
        if options:
            raise ValueError("the local launcher takes no --launcher-opt")
        return LocalLauncher()
    if name == "submitit-local":
        return SubmititLauncher("local", folder, options)
    if name == "slurm":
        return SlurmLauncher(folder, {**(grid_options or {}), **(options or {})})
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
