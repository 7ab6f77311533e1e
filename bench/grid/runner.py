"""`cvil-bench grid`: run a paper table's grid — every cell × seed a `cvil train` child of one MLflow parent run.

Why subprocesses: each job is exactly what a user would run by hand (`cvil train --config ... key=value ...`), it
can crash without taking the grid down, K of them run in parallel, and the same command goes to a cluster
scheduler unchanged (`bench.grid.launchers`).

Re-running a grid is cheap and safe: a cell × seed whose *finished* child run carries the same `cvil.config_hash`
as the config it would run now is skipped; one that was interrupted and left a checkpoint in its `output_dir` is
resumed (`--resume`); one that failed is run again. A cell whose run folder is locked by a live trainer (another
grid, an orphan, a hand-started run: `cvil.train.run_lock`) is reported as held and not started; otherwise its stale
RUNNING child runs (a job killed before it could close its run) are closed KILLED first. Under that lock the cell is
looked at again: one that another copy of the grid finished since this one planned (a FINISHED run with the same
hash, or `final_metrics.json` under the same config in its folder) is skipped, not trained over. A store that cannot
be used (closed port, a server that never answers, a corrupt SQLite file) costs one warning: tracking is off for the
grid and its jobs, and the run folders and the summary hold the results. SIGTERM, like Ctrl-C, stops
the running jobs before the grid exits. One failing job never stops the others; the summary (CSV and
JSON, locally under `runs/<grid>/` and as artifacts of the parent run) lists every job, with the tail of stderr
for the failed ones; an earlier summary that cannot be read back is kept as `summary.json.corrupt` and its rows are
rebuilt from the store and the run folders, with a warning naming any it could not find.

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
from bench.grid.spec import GridSpec, Job, expand, folder_name, slug, world_overrides
from bench.grid.launchers import Handle, Outcome, make_launcher, stop_all
from cvil import tracking_schema as schema
from cvil.fileio import atomic_write
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


def finished_locally(output_dir: str | Path, digest: str) -> dict[str, float] | None:
    """The final metrics of a run folder whose run finished under the config hashing to `digest` (its
    `final_metrics.json` is there and its `config.yaml` hashes the same), else None. Works without any store."""
    from cvil.config import config_hash, load_config

    done, config = run_layout.final_metrics_path(output_dir), run_layout.config_path(output_dir)
    if not digest or not done.is_file() or not config.is_file():
        return None
    try:
        if config_hash(load_config(config)) != digest:
            return None
        metrics = json.loads(done.read_text(encoding="utf-8"))
    except Exception:  # an unreadable folder is not a finished run: the job runs again (--overwrite)
        return None
    if not isinstance(metrics, dict):
        return None
    return {k: float(v) for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


_FIELDS = ("cell", "seed", "status", "run_id", "seconds", "returncode", "resumed", "error", "metrics")


def read_summary(path: Path) -> tuple[list[JobResult], str]:
    """The job rows of a grid's `summary.json`, and "" — or no rows and why the file cannot be read back."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = []
        for i, job in enumerate(data["jobs"]):
            row = JobResult(**{k: job[k] for k in _FIELDS if k in job})
            if not (isinstance(row.cell, str) and type(row.seed) is int and isinstance(row.metrics, dict)
                    and row.status in ("finished", "skipped", "failed")):
                raise ValueError(f"jobs[{i}] is not a job row")
            rows.append(row)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return [], tracking.one_line(exc)
    return rows, ""


def headline(metrics: dict) -> str:
    """The score a job's progress line shows: the test score, else (a teacher: no test split) the official val
    accuracy, else the in-loop val score; "" when it logged none of them."""
    key = next((k for k in ("test.accuracy", "val.accuracy", "val.score") if k in metrics), None)
    return f" {key}={metrics[key]:.4f}" if key else ""


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
        warn: Callable[[str], None] | None = None,
        replaced: str = "tag",
    ):
        self.spec, self.jobs, self.seeds, self.cells = spec, max(1, jobs), seeds, tuple(cells)
        self.replaced = replaced  # what happens to a cell x seed's superseded runs: bench.replaced (tag | delete)
        self.overrides, self.runs_dir, self.echo, self.poll_s = tuple(overrides), runs_dir, echo, poll_s
        self.warn = warn or (lambda line: print(f"[grid {spec.name}] {line}", file=sys.stderr, flush=True))
        self.uri = tracking.tracking_uri(uri)
        self.cmd = train_command(spec, train_cmd)
        self.grid_dir = Path(runs_dir) / folder_name(spec.name, "grid")
        self.store: tracking.Store | None = None
        self._world: list[str] = []
        self.launcher = make_launcher(launcher, folder=str(self.grid_dir / "submitit"), options=launcher_options,
                                      grid_options=spec.slurm)

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
        self._world = list(world)
        store = self.store = tracking.Store(self.uri, self.warn)  # an unusable store: one warning, tracking off
        # migrates a fresh store before any child runs
        exp_id = store.run(lambda c: tracking.experiment_id(c, self.spec.experiment), default="")
        tags = {schema.NOTE: self.spec.description} if self.spec.description else {}
        parent = store.run(lambda c: tracking.open_parent(c, exp_id, "grid", self.spec.name, tags=tags), default="")
        store.call("log_text", parent, self.spec.source, f"grid/{slug(self.spec.name)}.yaml")
        self.echo(f"[grid {self.spec.name}] {len(all_jobs)} jobs, "
                  + (f"parent run {parent}, store {self.uri}" if store.on else "tracking off"))

        previous = store.run(lambda c: tracking.children(c, exp_id, parent), default=[])
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
            results.update(self._launch_all(todo, parent, store, exp_id))
        except KeyboardInterrupt:
            store.call("set_terminated", parent, status="KILLED")
            raise
        ordered = [results[p.job.key] for p in plans]
        failed = [r for r in ordered if r.status == "failed"]
        self._retire_replaced(store, exp_id, parent, ordered)
        self._write_summary(store, parent, ordered, exp_id)
        store.call("set_terminated", parent, status="FAILED" if failed else "FINISHED")
        done = sum(r.status != "failed" for r in ordered)
        self.echo(f"[grid {self.spec.name}] {done}/{len(ordered)} ok, {len(failed)} failed; "
                  f"summary {self.grid_dir / 'summary.csv'}")
        return ordered

    def _retire_replaced(self, store, exp_id: str, parent: str, rows: list[JobResult]) -> None:
        """One valid run per cell x seed under the parent: the others are marked `cvil.replaced_by` (or deleted,
        `--replaced delete`), so MLflow's "Group by cvil.cell" averages what compare and the leaderboards use."""
        from bench.replaced import retire_replaced

        for r in rows:
            if not r.run_id or r.status == "failed":
                continue
            runs = store.run(lambda c: tracking.children(c, exp_id, parent, {schema.CELL: r.cell,
                                                                            schema.SEED: str(r.seed)}), [])
            retired = store.run(lambda c: retire_replaced(c, runs, r.run_id, mode=self.replaced,
                                                          call=tracking.retry_locked), [])
            for old in retired or []:
                self.echo(f"[grid {self.spec.name}] {'deleted' if self.replaced == 'delete' else 'marked'} run "
                          f"{old} of {r.cell}/seed{r.seed} as replaced by {r.run_id}")

    def _launch_all(self, todo: deque[_Plan], parent: str, store, exp_id: str) -> dict[str, JobResult]:
        running: dict[str, tuple[_Plan, Handle, float, int]] = {}
        results: dict[str, JobResult] = {}
        total = len(todo)
        try:
            while todo or running:
                while todo and len(running) < self.jobs:
                    p = todo.popleft()
                    claimed = self._claim(p, parent, store, exp_id)
                    if claimed is not None:  # held by a live trainer, or finished meanwhile
                        results[p.job.key] = claimed
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
                    results[key] = self._finish(p, outcome, time.monotonic() - t0, started_ms, parent, store,
                                                exp_id)
                if running:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self.echo(f"[grid {self.spec.name}] interrupted: stopping {len(running)} running jobs "
                      "(re-run the same command to resume)")
            stop_all([h for _, h, _, _ in running.values()])
            raise
        return results

    def _claim(self, p: _Plan, parent: str, store, exp_id: str) -> JobResult | None:
        """Take the run folder's lock and look again: a cell that another copy of this grid finished since the plan
        (a FINISHED run with this config hash, or `final_metrics.json` under this config in its folder) is skipped,
        not trained a second time over the first; the cell's stale RUNNING runs (a child killed before it could
        close its run) are closed KILLED, under the lock so that no live trainer's run is touched. None: start it;
        else the job's result (held by a live trainer, or finished)."""
        job = p.job
        try:
            with RunLock(job.output_dir):
                runs = store.run(lambda c: tracking.children(c, exp_id, parent, {schema.CELL: job.cell,
                                                                                 schema.SEED: str(job.seed)}), [])
                done = next((r for r in runs if r.info.status == "FINISHED"
                             and r.data.tags.get(HASH_TAG) == p.digest), None)
                if done is not None:
                    self.echo(f"[grid {self.spec.name}] skip   {job.key} (finished meanwhile: run {done.info.run_id})")
                    return JobResult(job.cell, job.seed, "skipped", done.info.run_id, metrics=_final_metrics(done))
                local = finished_locally(job.output_dir, p.digest)
                if local is not None:
                    self.echo(f"[grid {self.spec.name}] skip   {job.key} (finished: "
                              f"{run_layout.final_metrics_path(job.output_dir)})")
                    return JobResult(job.cell, job.seed, "skipped", metrics=local)
                for run in runs:
                    if run.info.status == "RUNNING":
                        store.call("set_terminated", run.info.run_id, status="KILLED")
                        self.echo(f"[grid {self.spec.name}] closed stale RUNNING run {run.info.run_id} of "
                                  f"{job.key} as KILLED")
        except RunFolderLocked as exc:
            return self._held(p, exc.pid or -1)
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
        store = self.store
        tracked = [f"tracking.parent_run_id={parent}", f"tracking.uri={self.uri}"] if store is None or store.on \
            else ["tracking.enabled=false"]  # the grid found the store unusable: the jobs do not wait on it either
        argv = [*self.cmd, "--config", job.config, *(["--resume"] if p.resume else ["--overwrite"]), *job.overrides,
                *tracked]
        logs = self.grid_dir / "logs" / f"{slug(job.cell)}-s{job.seed}"
        env = {"MLFLOW_TRACKING_URI": self.uri, **(store.http_env if store is not None else {})}
        return self.launcher.start(argv, cwd=str(Path.cwd()), env=env,
                                   stdout_path=f"{logs}.out", stderr_path=f"{logs}.err")

    def _finish(self, p: _Plan, outcome: Outcome, seconds: float, started_ms: int, parent: str, store,
                exp_id: str) -> JobResult:
        job = p.job
        held = re.search(HELD_MARKER + r" (\d+)", outcome.stderr_tail) if outcome.returncode != 0 else None
        if held:  # the job lost the race for its folder's lock to another grid or trainer: nothing was trained
            return self._held(p, int(held.group(1)))
        runs = store.run(lambda c: tracking.children(c, exp_id, parent, {schema.CELL: job.cell,
                                                                         schema.SEED: str(job.seed)}), [])
        if not p.resume:  # a fresh attempt made a new run; a resumed one re-opened its old run
            runs = [r for r in runs if r.info.start_time >= started_ms - 2000]
        run = runs[0] if runs else None
        ok = outcome.returncode == 0
        error = "" if ok else (outcome.stderr_tail or f"exit code {outcome.returncode}, no stderr")
        metrics = _final_metrics(run) if ok else {}
        if ok and run is None:  # tracking off (here or in the job): the run folder has the results
            local = finished_locally(job.output_dir, p.digest)
            if local is not None:
                metrics = local
            elif store.on:
                ok, error = False, "the train command succeeded but logged no child run under the grid's parent run"
        result = JobResult(job.cell, job.seed, "finished" if ok else "failed", run.info.run_id if run else "",
                           round(seconds, 2), outcome.returncode, p.resume, error, metrics)
        extra = headline(result.metrics)
        last = error.strip().splitlines()[-1] if error.strip() else ""
        self.echo(f"[grid {self.spec.name}] {'done  ' if ok else 'FAILED'} {job.key} in {seconds:.1f}s"
                  + (extra if ok else f" (exit {outcome.returncode}): {last}"))
        return result

    # ---------------------------------------------------------------------------------------------- summary

    def _merged(self, json_path: Path, rows: list[JobResult], store, exp_id: str, parent: str) -> list[JobResult]:
        """This run's rows plus the earlier summary's rows for the cells x seeds it did not run (a `--cells` or
        `--seeds` re-run updates the grid's summary instead of replacing it with the subset). An earlier summary
        that cannot be read back is kept as `summary.json.corrupt` and its rows rebuilt from the store and the run
        folders, with a warning naming what could not be."""
        names = [c.name for c in self.spec.cells]
        fresh = {(r.cell, r.seed) for r in rows}
        old: list[JobResult] = []
        if json_path.exists():
            old, problem = read_summary(json_path)
            if problem:
                old = self._rebuilt(json_path, problem, fresh, store, exp_id, parent)
        kept = [r for r in old if r.cell in names and (r.cell, r.seed) not in fresh]
        return sorted([*rows, *kept], key=lambda r: (r.seed, names.index(r.cell)))

    def _rebuilt(self, json_path: Path, problem: str, fresh: set, store, exp_id: str,
                 parent: str) -> list[JobResult]:
        """The rows of the cells x seeds not run now, from their newest child run, else their run folder."""
        from cvil.config import config_hash, load_config

        kept = json_path.with_name(json_path.name + ".corrupt")
        json_path.replace(kept)
        newest: dict[tuple[str, str], Any] = {}
        for run in store.run(lambda c: tracking.children(c, exp_id, parent), []):  # newest first
            newest.setdefault((run.data.tags.get(schema.CELL), run.data.tags.get(schema.SEED)), run)
        rows, missing = [], []
        for job in expand(self.spec, world=self._world, extra_overrides=self.overrides, runs_dir=self.runs_dir):
            if (job.cell, job.seed) in fresh:
                continue
            run = newest.get((job.cell, str(job.seed)))
            if run is not None:
                status = "finished" if run.info.status == "FINISHED" else "failed"
                rows.append(JobResult(job.cell, job.seed, status, run.info.run_id, metrics=_final_metrics(run),
                                      error="" if status == "finished" else f"run {run.info.status}"))
                continue
            try:
                local = finished_locally(job.output_dir, config_hash(load_config(job.config, list(job.overrides))))
            except Exception:
                local = None
            if local is not None:
                rows.append(JobResult(job.cell, job.seed, "finished", metrics=local))
            else:
                missing.append(job.key)
        self.warn(f"warning: {json_path} could not be read back ({problem}); kept it as {kept.name}, rebuilt "
                  f"{len(rows)} rows from the tracking store and the run folders"
                  + (f"; no record of {', '.join(missing)} (never run, or only in the lost file)" if missing else ""))
        return rows

    def _write_summary(self, store, parent: str, rows: list[JobResult], exp_id: str = "") -> None:
        self.grid_dir.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = self.grid_dir / "summary.csv", self.grid_dir / "summary.json"
        rows = self._merged(json_path, rows, store, exp_id, parent)
        metric_names = sorted({m for r in rows for m in r.metrics})
        base = ["cell", "seed", "status", "run_id", "seconds", "returncode", "resumed", "error"]

        def write_csv(path: Path) -> None:
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(base + metric_names)
                for r in rows:
                    d = asdict(r)
                    w.writerow([d[k] for k in base] + [r.metrics.get(m, "") for m in metric_names])

        atomic_write(csv_path, write_csv)
        summary = {
            "grid": self.spec.name,
            "parent_run_id": parent,
            "tracking_uri": self.uri,
            "counts": {s: sum(r.status == s for r in rows) for s in ("finished", "skipped", "failed")},
            "failed": [{"cell": r.cell, "seed": r.seed, "error": r.error} for r in rows if r.status == "failed"],
            "jobs": [asdict(r) for r in rows],
        }
        if not store.on:
            summary["tracking"] = f"off: {store.why_off}"
        atomic_write(json_path, json.dumps(summary, indent=2, ensure_ascii=False))  # never half a summary
        for path in (csv_path, json_path):
            store.call("log_artifact", parent, str(path), "summary")
        store.call("set_tag", parent, schema.GRID_FAILED, str(len(summary["failed"])))


# ------------------------------------------------------------------------------------------------------- CLI
