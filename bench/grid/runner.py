"""`cvil-bench grid`: run a paper table's grid — every cell × seed a `cvil train` child of one MLflow parent run.

Why subprocesses: each job is exactly what a user would run by hand (`cvil train --config ... key=value ...`), it
can crash without taking the grid down, K of them run in parallel, and the same command goes to a cluster
scheduler unchanged (`bench.grid.launchers`).

Re-running a grid is cheap and safe: a cell × seed whose *finished* child run carries the same `cvil.config_hash`
as the config it would run now is skipped; one that was interrupted and left a checkpoint in its `output_dir` is
resumed (`--resume`); one that failed is run again. A cell whose run folder is locked by a live trainer (another
grid, an orphan, a hand-started run: `cvil.train.run_lock`) is reported as held and not started; otherwise its stale
RUNNING child runs (a job killed before it could close its run) are closed KILLED first. SIGTERM, like Ctrl-C, stops
the running jobs before the grid exits. One failing job never stops the others; the summary (CSV and
JSON, locally under `runs/<grid>/` and as artifacts of the parent run) lists every job, with the tail of stderr
for the failed ones.

The train command is `python -m cvil train` unless `--train-cmd`, `$CVIL_TRAIN_CMD` or the grid file's
`train_cmd:` says otherwise (the tests use a fake trainer that way).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import tracking
from bench.grid.spec import GridSpec, Job, expand, slug, world_overrides
from bench.grid.launchers import Handle, Outcome, make_launcher, stop_all
from cvil import tracking_schema as schema
from cvil.train import run_layout
from cvil.train.run_lock import HELD_MARKER, RunFolderLocked, RunLock

TRAIN_CMD_ENV = "CVIL_TRAIN_CMD"
HASH_TAG = schema.CONFIG_HASH


def has_checkpoint(output_dir: str | Path) -> bool:
    """Whether `cvil train --resume` has something to resume from (the trainer's `checkpoints/last.pt`)."""
    return run_layout.checkpoint_path(output_dir).is_file()


def train_command(spec: GridSpec, explicit: str | None = None) -> list[str]:
    if explicit:
        return shlex.split(explicit)
    if os.environ.get(TRAIN_CMD_ENV):
        return shlex.split(os.environ[TRAIN_CMD_ENV])
    if spec.train_cmd:
        return list(spec.train_cmd)
    return [sys.executable, "-m", "cvil", "train"]


@dataclass
class JobResult:
    cell: str
    seed: int
    status: str  # finished | skipped | failed
    run_id: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    resumed: bool = False
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class _Plan:
    job: Job
    digest: str = ""
    resume: bool = False
    skip_run: Any = None  # the finished run that makes this job unnecessary
    error: str = ""  # the config does not even load


def _plan(job: Job, previous: list) -> _Plan:
    """Skip, resume, or (re)run: decided from this job's earlier child runs (newest first) and its output folder.

    Resume only what was interrupted under the *same* config: the trainer refuses a checkpoint written by another
    config, and a changed config must start afresh anyway.
    """
    from cvil.config import ConfigError, config_hash, load_config

    try:
        digest = config_hash(load_config(job.config, list(job.overrides)))
    except (ConfigError, OSError) as exc:
        return _Plan(job, error=f"config error: {exc}")
    for run in previous:
        if run.info.status == "FINISHED" and run.data.tags.get(HASH_TAG) == digest:
            return _Plan(job, digest, skip_run=run)
    latest = previous[0] if previous else None
    same_unfinished = latest is None or (latest.info.status != "FINISHED" and latest.data.tags.get(HASH_TAG) == digest)
    return _Plan(job, digest, resume=has_checkpoint(job.output_dir) and same_unfinished)


def _final_metrics(run) -> dict[str, float]:
    return dict(sorted(run.data.metrics.items())) if run is not None else {}


class GridRunner:
    """Plans, launches and summarises one grid; `run()` returns the per-job results."""

    def __init__(
        self,
        spec: GridSpec,
        *,
        jobs: int = 1,
        seeds: int | None = None,
        cells: tuple[str, ...] = (),
        launcher: str = "local",
        launcher_options: dict | None = None,
        overrides: tuple[str, ...] = (),
        uri: str | None = None,
        runs_dir: str = "runs",
        train_cmd: str | None = None,
        echo: Callable[[str], None] = print,
        poll_s: float = 0.2,
    ):
        self.spec, self.jobs, self.seeds, self.cells = spec, max(1, jobs), seeds, tuple(cells)
        self.overrides, self.runs_dir, self.echo, self.poll_s = tuple(overrides), runs_dir, echo, poll_s
        self.uri = tracking.tracking_uri(uri)
        self.cmd = train_command(spec, train_cmd)
        self.grid_dir = Path(runs_dir) / slug(spec.name)
        self.launcher = make_launcher(launcher, folder=str(self.grid_dir / "submitit"), options=launcher_options)

    # -------------------------------------------------------------------------------------------- the run

    def validate(self) -> list[Job]:
        """The grid's jobs without the world, every cell config loaded with its overrides: a ConfigError (unknown
        cell, bad key, missing file) here costs nothing, where after the world and the teacher it cost minutes."""
        from cvil.config import ConfigError, load_config

        jobs = expand(self.spec, seeds=self.seeds, extra_overrides=self.overrides, runs_dir=self.runs_dir,
                      cells=self.cells)
        checked: set = set()
        for job in jobs:
            key = (job.config, tuple(o for o in job.overrides if not o.startswith(("train.seed=", "output_dir=",
                                                                                "tracking."))))
            if key in checked:
                continue
            checked.add(key)
            try:
                load_config(job.config, list(job.overrides))
            except ConfigError as exc:
                raise ConfigError(f"grid {self.spec.name!r} cell {job.cell!r}: {exc}") from None
        return jobs

    def dry_run(self) -> list[str]:
        """What `run()` would launch, one line per cell x seed (config path, seed, overrides), without any work."""
        jobs = self.validate()
        if self.spec.paths:
            where = f"real data and checkpoints {dict(self.spec.paths)}"
        elif self.spec.world:
            w = self.spec.world
            where = (f"synthetic world preset {w.get('preset', 'small')} seed {w.get('seed', 0)} at "
                     f"{w.get('root', 'worlds/small')} (built if missing; its paths are added to every job)")
        else:
            where = "the paths in each cell's config"
        lines = [f"[grid {self.spec.name}] dry run: {len(jobs)} jobs on {where}; store {self.uri}"]
        for job in jobs:
            lines.append(f"{job.key}: {' '.join(shlex.quote(a) for a in [*self.cmd, '--config', job.config])}")
            lines.append("    " + " ".join(shlex.quote(o) for o in job.overrides))
        return lines

    def run(self) -> list[JobResult]:
        self.validate()
        world = world_overrides(self.spec.world, self.spec.paths, self.overrides)
        all_jobs = expand(self.spec, seeds=self.seeds, extra_overrides=self.overrides, world=world,
                          runs_dir=self.runs_dir, cells=self.cells)
        c = tracking.client(self.uri)
        exp_id = tracking.experiment_id(c, self.spec.experiment)  # migrates a fresh store before any child runs
        parent = tracking.open_parent(c, exp_id, "grid", self.spec.name,
                                      tags={schema.NOTE: self.spec.description} if self.spec.description
                                      else {})
        tracking.retry_locked(c.log_text, parent, self.spec.source, f"grid/{slug(self.spec.name)}.yaml")
        self.echo(f"[grid {self.spec.name}] {len(all_jobs)} jobs, parent run {parent}, store {self.uri}")

        previous = tracking.children(c, exp_id, parent)
        plans = [_plan(j, [r for r in previous if r.data.tags.get(schema.CELL) == j.cell
                           and r.data.tags.get(schema.SEED) == str(j.seed)]) for j in all_jobs]
        results: dict[str, JobResult] = {}
        todo: deque[_Plan] = deque()
        for p in plans:
            if p.skip_run is not None:
                results[p.job.key] = JobResult(p.job.cell, p.job.seed, "skipped", p.skip_run.info.run_id,
                                               metrics=_final_metrics(p.skip_run))
                self.echo(f"[grid {self.spec.name}] skip   {p.job.key} (finished run {p.skip_run.info.run_id})")
            elif p.error:
                results[p.job.key] = JobResult(p.job.cell, p.job.seed, "failed", error=p.error)
                self.echo(f"[grid {self.spec.name}] failed {p.job.key}: {p.error}")
            else:
                todo.append(p)

        try:
            results.update(self._launch_all(todo, parent, c, exp_id))
        except KeyboardInterrupt:
            tracking.close_parent(c, parent, "KILLED")
            raise
        ordered = [results[p.job.key] for p in plans]
        failed = [r for r in ordered if r.status == "failed"]
        self._write_summary(c, parent, ordered)
        tracking.close_parent(c, parent, "FAILED" if failed else "FINISHED")
        done = sum(r.status != "failed" for r in ordered)
        self.echo(f"[grid {self.spec.name}] {done}/{len(ordered)} ok, {len(failed)} failed; "
                  f"summary {self.grid_dir / 'summary.csv'}")
        return ordered

    def _launch_all(self, todo: deque[_Plan], parent: str, c, exp_id: str) -> dict[str, JobResult]:
        running: dict[str, tuple[_Plan, Handle, float, int]] = {}
        results: dict[str, JobResult] = {}
        total = len(todo)
        try:
            while todo or running:
                while todo and len(running) < self.jobs:
                    p = todo.popleft()
                    held = self._claim(p, parent, c, exp_id)
                    if held is not None:
                        results[p.job.key] = self._held(p, held)
                        continue
                    started_ms = int(time.time() * 1000)
                    try:
                        handle = self._start(p, parent)
                    except Exception as exc:  # e.g. the train command or the scheduler is missing
                        error = f"launch failed: {exc!r}"
                        results[p.job.key] = JobResult(p.job.cell, p.job.seed, "failed", error=error)
                        self.echo(f"[grid {self.spec.name}] FAILED {p.job.key}: {error}")
                        continue
                    running[p.job.key] = (p, handle, time.monotonic(), started_ms)
                    what = " (resume)" if p.resume else ""
                    self.echo(f"[grid {self.spec.name}] start  {p.job.key}{what} "
                              f"[{total - len(todo)}/{total}, {len(running)} running]")
                for key, (p, handle, t0, started_ms) in list(running.items()):
                    outcome = handle.poll()
                    if outcome is None:
                        continue
                    del running[key]
                    results[key] = self._finish(p, outcome, time.monotonic() - t0, started_ms, parent, c, exp_id)
                if running:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self.echo(f"[grid {self.spec.name}] interrupted: stopping {len(running)} running jobs "
                      "(re-run the same command to resume)")
            stop_all([h for _, h, _, _ in running.values()])
            raise
        return results

    def _claim(self, p: _Plan, parent: str, c, exp_id: str) -> int | None:
        """Close the cell's stale RUNNING runs (a child killed before it could close its run) while holding the run
        folder's lock, so that no live trainer's run is touched; the holder's pid when somebody trains it now."""
        job = p.job
        try:
            with RunLock(job.output_dir):
                runs = tracking.children(c, exp_id, parent, {schema.CELL: job.cell, schema.SEED: str(job.seed)})
                for run in runs:
                    if run.info.status == "RUNNING":
                        tracking.retry_locked(c.set_terminated, run.info.run_id, status="KILLED")
                        self.echo(f"[grid {self.spec.name}] closed stale RUNNING run {run.info.run_id} of "
                                  f"{job.key} as KILLED")
        except RunFolderLocked as exc:
            return exc.pid or -1
        return None

    def _held(self, p: _Plan, pid: int) -> JobResult:
        """Another grid or `cvil train` trains this cell right now: report it, do not train it twice."""
        error = f"held: {p.job.output_dir} is in use by pid {pid}; not started"
        self.echo(f"[grid {self.spec.name}] skip   {p.job.key} ({error})")
        return JobResult(p.job.cell, p.job.seed, "skipped", error=error)

    def _start(self, p: _Plan, parent: str) -> Handle:
        """Launch one job: `--resume` what was interrupted under the same config, else `--overwrite` the folder (the
        plan decided a fresh attempt: a failed run without checkpoint, or a changed config)."""
        job = p.job
        argv = [*self.cmd, "--config", job.config, *(["--resume"] if p.resume else ["--overwrite"]), *job.overrides,
                f"tracking.parent_run_id={parent}", f"tracking.uri={self.uri}"]
        logs = self.grid_dir / "logs" / f"{slug(job.cell)}-s{job.seed}"
        return self.launcher.start(argv, cwd=str(Path.cwd()), env={"MLFLOW_TRACKING_URI": self.uri},
                                   stdout_path=f"{logs}.out", stderr_path=f"{logs}.err")

    def _finish(self, p: _Plan, outcome: Outcome, seconds: float, started_ms: int, parent: str, c,
                exp_id: str) -> JobResult:
        job = p.job
        held = re.search(HELD_MARKER + r" (\d+)", outcome.stderr_tail) if outcome.returncode != 0 else None
        if held:  # the job lost the race for its folder's lock to another grid or trainer: nothing was trained
            return self._held(p, int(held.group(1)))
        runs = tracking.children(c, exp_id, parent, {schema.CELL: job.cell, schema.SEED: str(job.seed)})
        if not p.resume:  # a fresh attempt made a new run; a resumed one re-opened its old run
            runs = [r for r in runs if r.info.start_time >= started_ms - 2000]
        run = runs[0] if runs else None
        ok = outcome.returncode == 0
        error = "" if ok else (outcome.stderr_tail or f"exit code {outcome.returncode}, no stderr")
        if ok and run is None:
            ok, error = False, "the train command succeeded but logged no child run under the grid's parent run"
        result = JobResult(job.cell, job.seed, "finished" if ok else "failed", run.info.run_id if run else "",
                           round(seconds, 2), outcome.returncode, p.resume, error,
                           _final_metrics(run) if ok else {})
        headline = next(iter(k for k in ("test.accuracy", "val.score") if k in result.metrics), None)
        extra = f" {headline}={result.metrics[headline]:.4f}" if headline else ""
        last = error.strip().splitlines()[-1] if error.strip() else ""
        self.echo(f"[grid {self.spec.name}] {'done  ' if ok else 'FAILED'} {job.key} in {seconds:.1f}s"
                  + (extra if ok else f" (exit {outcome.returncode}): {last}"))
        return result

    # ---------------------------------------------------------------------------------------------- summary

    def _merged(self, json_path: Path, rows: list[JobResult]) -> list[JobResult]:
        """This run's rows plus the earlier summary's rows for the cells x seeds it did not run (a `--cells` or
        `--seeds` re-run updates the grid's summary instead of replacing it with the subset)."""
        try:
            earlier = json.loads(json_path.read_text(encoding="utf-8")).get("jobs", [])
            old = [JobResult(**j) for j in earlier]
        except (OSError, ValueError, TypeError, AttributeError):
            return rows
        names = [c.name for c in self.spec.cells]
        fresh = {(r.cell, r.seed) for r in rows}
        kept = [r for r in old if r.cell in names and (r.cell, r.seed) not in fresh]
        return sorted([*rows, *kept], key=lambda r: (r.seed, names.index(r.cell)))

    def _write_summary(self, c, parent: str, rows: list[JobResult]) -> None:
        self.grid_dir.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = self.grid_dir / "summary.csv", self.grid_dir / "summary.json"
        rows = self._merged(json_path, rows)
        metric_names = sorted({m for r in rows for m in r.metrics})
        base = ["cell", "seed", "status", "run_id", "seconds", "returncode", "resumed", "error"]
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(base + metric_names)
            for r in rows:
                d = asdict(r)
                w.writerow([d[k] for k in base] + [r.metrics.get(m, "") for m in metric_names])
        summary = {
            "grid": self.spec.name,
            "parent_run_id": parent,
            "tracking_uri": self.uri,
            "counts": {s: sum(r.status == s for r in rows) for s in ("finished", "skipped", "failed")},
            "failed": [{"cell": r.cell, "seed": r.seed, "error": r.error} for r in rows if r.status == "failed"],
            "jobs": [asdict(r) for r in rows],
        }
        json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
        for path in (csv_path, json_path):
            tracking.retry_locked(c.log_artifact, parent, str(path), "summary")
        tracking.retry_locked(c.set_tag, parent, schema.GRID_FAILED, str(len(summary["failed"])))


# ------------------------------------------------------------------------------------------------------- CLI
