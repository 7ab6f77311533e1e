"""`run(cfg)`: one whole training run, in process — what `cvil train`, grids and searches call.

It sets up the process group (under torchrun), seeds, the rank-0 tracker, saves the resolved config, trains every
stage (resuming from `output_dir` when asked; a finished run resumed is left untouched, except that a tracked run a
kill left RUNNING is closed FINISHED; a run killed after its last stage finishes from that checkpoint's weights),
scores the final model on the evaluation splits, and closes the
MLflow run as FINISHED, FAILED, or KILLED (when `on_eval` raised `cvil.errors.StopTrial`, e.g. an Optuna prune, or on SIGTERM/SIGINT:
`cvil.train.stop_signals`). It holds the run folder's lock throughout (`cvil.train.run_lock`).

Before anything is written it refuses a run folder holding a symlink, and `--overwrite` replaces only a folder marked
as a cvil run, and there only what cvil wrote (`cvil.train.run_layout`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from cvil.config import RunConfig, config_hash, flatten, to_yaml
from cvil import tracking_schema as schema
from cvil.errors import StopTrial, UsageError
from cvil.fileio import atomic_write
from cvil.tracking import MLflowTracker, NullTracker, git_commit
from cvil.tracking_local import JsonlTracker, TeeTracker
from cvil.train import run_layout
from cvil.train import preflight
from cvil.train.distributed import broadcast_object, setup_distributed, teardown_distributed
from cvil.train.run_lock import RunLock
from cvil.train.stop_signals import stop_on_signals
from cvil.train.trainer import EvalCallback, Trainer, seed_everything

log = logging.getLogger(__name__)

PAPER_EFFECTIVE_BATCH = 128  # 32 per GPU x 4 GPUs x no accumulation (reference §2.8)


def effective_batch_size(cfg: RunConfig, world_size: int) -> int:
    """Examples per optimizer step: per-process `data.batch_size` x processes x `train.grad_accum`."""
    return cfg.data.batch_size * world_size * cfg.train.grad_accum


def report_effective_batch(cfg: RunConfig, world_size: int) -> int:
    """The effective batch, with one warning line when it is not the paper's 128."""
    size = effective_batch_size(cfg, world_size)
    if size != PAPER_EFFECTIVE_BATCH:
        log.warning("effective batch %d = data.batch_size %d x %d process(es) x train.grad_accum %d, not the paper's "
                    "%d (32 per GPU x 4 GPUs): set train.grad_accum or data.batch_size to match it",
                    size, cfg.data.batch_size, world_size, cfg.train.grad_accum, PAPER_EFFECTIVE_BATCH)
    return size


def run_params(cfg: RunConfig, world_size: int) -> dict:
    """The MLflow params of a run: the flattened config and the effective batch size."""
    return {**flatten(cfg), schema.EFFECTIVE_BATCH_SIZE: effective_batch_size(cfg, world_size)}


def _run_tags(cfg: RunConfig, digest: str) -> dict:
    last = cfg.stages[-1] if cfg.stages else None
    tags = {
        schema.SCHEDULE: cfg.schedule,
        schema.LANGUAGE: last.lang if last else "",
        schema.DATASET: f"{cfg.data.root}/{last.dataset}" if last else cfg.data.root,
        schema.SEED: cfg.train.seed,
        schema.GIT_COMMIT: git_commit(),
        schema.CONFIG_HASH: digest,
    }
    tags.update(cfg.tracking.tags)
    return tags


def _describe_run(tracker, cfg: RunConfig) -> None:
    """Datasets (with digests), source tags and the experiment's kind: what MLflow's run list shows by default; and
    the library versions and thread settings (`run_metadata.environment_tags`) the numbers depend on."""
    from cvil.train import run_metadata

    tracker.mark_experiment()
    world = {} if schema.WORLD in cfg.tracking.tags else run_metadata.world_tags(cfg)  # a tag given wins
    tracker.set_tags({**world, **run_metadata.source_tags(git_commit()), **run_metadata.environment_tags()})
    tracker.log_datasets(run_metadata.dataset_inputs(cfg))


def _make_tracker(cfg: RunConfig, is_main: bool, run_id: str, digest: str):
    """Rank 0: the run folder's `metrics.jsonl` and (unless tracking is off) MLflow, fed by one `TeeTracker`, so both
    hold every metric; other ranks track nothing."""
    if not is_main:
        return NullTracker()
    local = JsonlTracker(run_layout.metrics_path(cfg.output_dir))
    if not cfg.tracking.enabled:
        return TeeTracker(local)
    return TeeTracker(local, _mlflow_tracker(cfg, run_id, digest))


def _mlflow_tracker(cfg: RunConfig, run_id: str, digest: str) -> MLflowTracker:
    return MLflowTracker(uri=cfg.tracking.uri, experiment=cfg.tracking.experiment, run_name=cfg.tracking.run_name,
                         run_id=run_id or None, parent_run_id=cfg.tracking.parent_run_id, tags=_run_tags(cfg, digest),
                         local_dir=Path(cfg.output_dir).absolute())


RUN_OUTPUTS = run_layout.OUTPUTS  # what a run writes into its output_dir


def existing_outputs(out: Path, *, resume: bool, overwrite: bool) -> list[Path]:
    """The earlier run's outputs that `overwrite` will remove; refuses to start over them without it, and refuses to
    replace (or to resume into) a folder that is not recognisably a cvil run (`run_layout.replaceable_outputs`)."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue the run in output_dir, "
                         "or replace it, not both")
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    if resume:
        if found and not run_layout.checkpoint_path(out).exists() and not run_layout.has_marker(out):
            raise run_layout.RunFolderError(
                f"--resume refused: {found[0]} is in {out}, which has neither a checkpoint nor a {run_layout.MARKER} "
                "marker, so it is not recognisably a cvil run folder and its files may be yours: move them away, "
                "or choose another output_dir")
        return []
    if found and not overwrite:
        raise UsageError(f"output_dir {out} already holds a run ({', '.join(p.name for p in found)}): pass --resume "
                         f"to continue it, --overwrite to replace it, or choose another output_dir")
    return run_layout.replaceable_outputs(out) if found else []


def _finished_metrics(cfg: RunConfig, progress, out: Path) -> dict | None:
    """The final metrics of a run whose stages and final evaluation are all done (None when something is left).

    `final_metrics.json` is written atomically and last, so a damaged one was damaged afterwards: rather than guess
    (re-running the final evaluation would replace `final/` and the predictions, and log the metrics again to the
    tracked run), it is an error naming the file, which the user deletes to have `--resume` redo the evaluation."""
    done = run_layout.final_metrics_path(out)
    if progress.stage < len(cfg.stages) or not done.is_file():
        return None
    try:
        metrics = json.loads(done.read_text(encoding="utf-8"))
        problem = "" if isinstance(metrics, dict) and all(
            isinstance(v, (int, float)) for v in metrics.values()) else "expected a JSON object of metric values"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"not readable JSON ({exc})"
    if problem:
        raise run_layout.RunFolderError(
            f"{done}: {problem}; it marks the run as finished: delete it to re-run the final evaluation with --resume")
    return metrics


def _close_left_open_run(cfg: RunConfig, progress, metrics: dict) -> None:
    """A run killed after writing `final_metrics.json` but before closing its tracked run left it RUNNING: close it
    as FINISHED (with the final metrics, where they did not reach the store)."""
    if cfg.tracking.enabled and progress.run_id:
        from cvil.tracking import finish_open_run

        if finish_open_run(cfg.tracking.uri, progress.run_id, metrics, step=progress.global_step):
            log.info("--resume: closed the tracked run %s, left RUNNING, as FINISHED", progress.run_id)


def run(cfg: RunConfig, *, resume: bool = False, on_eval: EvalCallback | None = None,
        init_method: str | None = None, overwrite: bool = False, trust_unverified: bool = False) -> dict:
    preflight.check_run(cfg)  # the one pre-run gate, for every caller
    out = Path(cfg.output_dir)
    run_layout.check_no_symlinks(out)  # before anything is written (cvil never makes one: run_layout)
    stale = existing_outputs(out, resume=resume, overwrite=overwrite)  # every rank, before any rank writes
    dist = setup_distributed(init_method, shared_folders={"data.root": cfg.data.root, "output_dir": cfg.output_dir})
    lock = None
    try:
        lock = RunLock(out).acquire() if dist.is_main else None  # one writer per run folder (cvil.train.run_lock)
        return _run_locked(cfg, out, dist, stale, resume=resume, on_eval=on_eval, trust_unverified=trust_unverified)
    finally:
        if lock is not None:
            lock.release()
        teardown_distributed()


def _run_locked(cfg: RunConfig, out: Path, dist, stale: list[Path], *, resume: bool, on_eval: EvalCallback | None,
                trust_unverified: bool) -> dict:
    if dist.is_main:
        report_effective_batch(cfg, dist.world_size)
    if stale and dist.is_main:
        log.warning("--overwrite: removing the earlier run's %s from %s", ", ".join(p.name for p in stale), out)
        run_layout.remove_outputs(stale)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    digest = config_hash(cfg)
    trainer = Trainer(cfg, dist=dist, on_eval=on_eval)
    trainer.progress.config_hash = digest
    resume_state = trainer.load_resume_state(trust_unverified=trust_unverified) if resume else None
    if resume and resume_state is None:
        log.info("--resume: no checkpoint in %s yet, starting from the beginning", out)
    finished = _finished_metrics(cfg, trainer.progress, out) if resume_state is not None else None
    if finished is not None:  # nothing to do: leave final/, the metrics and the tracked run as they are
        log.info("--resume: %s already finished (final_metrics.json); nothing to do", out)
        if dist.is_main:
            _close_left_open_run(cfg, trainer.progress, finished)
        return finished
    tracker = _make_tracker(cfg, dist.is_main, trainer.progress.run_id, digest)
    trainer.tracker = tracker
    trainer.progress.run_id = broadcast_object(tracker.run_id or "")
    status = "FAILED"
    try:
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            run_layout.ensure_marker(out)  # before its first output: what --overwrite recognises
            atomic_write(run_layout.config_path(out), to_yaml(cfg))
            if resume_state is None:
                tracker.log_params(run_params(cfg, dist.world_size))
                _describe_run(tracker, cfg)
            tracker.log_artifact(run_layout.config_path(out))
        with stop_on_signals(trainer):
            trainer.run(resume_state)
            from cvil.train.final_eval import finish_run

            metrics = finish_run(cfg, trainer.eval_context(), trainer.tracker, step=trainer.progress.global_step)
        status = "FINISHED"
        return metrics
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (StopTrial, KeyboardInterrupt)) else "FAILED"
        raise
    finally:
        tracker.close(status)
