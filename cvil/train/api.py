"""`run(cfg)`: one whole training run, in process — what `cvil train`, grids and searches call.

It sets up the process group (under torchrun), seeds, the rank-0 tracker, saves the resolved config, trains every
stage (resuming from `output_dir` when asked; a finished run resumed is left untouched; a run killed after its last
stage finishes from that checkpoint's weights), scores the final model on the evaluation splits, and closes the
MLflow run as FINISHED, FAILED, or KILLED (when `on_eval` raised `cvil.errors.StopTrial`, e.g. an Optuna prune, or on SIGTERM/SIGINT:
`cvil.train.stop_signals`). It holds the run folder's lock throughout (`cvil.train.run_lock`).
"""

from __future__ import annotations

import json
import logging
import shutil
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
    """Datasets (with digests), source tags and the experiment's kind: what MLflow's run list shows by default."""
    from cvil.train import run_metadata

    tracker.mark_experiment()
    tracker.set_tags(run_metadata.source_tags(git_commit()))
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
    """The earlier run's outputs that `overwrite` will remove; refuses to start over them without it."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue the run in output_dir, "
                         "or replace it, not both")
    if resume:
        return []
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    if found and not overwrite:
        raise UsageError(f"output_dir {out} already holds a run ({', '.join(p.name for p in found)}): pass --resume "
                         f"to continue it, --overwrite to replace it, or choose another output_dir")
    return found


def _remove(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _finished_metrics(cfg: RunConfig, progress, out: Path) -> dict | None:
    """The final metrics of a run whose stages and final evaluation are all done (None when something is left)."""
    done = run_layout.final_metrics_path(out)
    if progress.stage < len(cfg.stages) or not done.is_file():
        return None
    return json.loads(done.read_text(encoding="utf-8"))


def run(cfg: RunConfig, *, resume: bool = False, on_eval: EvalCallback | None = None,
        init_method: str | None = None, overwrite: bool = False, trust_unverified: bool = False) -> dict:
    preflight.check_run(cfg)  # the one pre-run gate, for every caller
    out = Path(cfg.output_dir)
    stale = existing_outputs(out, resume=resume, overwrite=overwrite)  # every rank, before any rank writes
    dist = setup_distributed(init_method)
    lock = RunLock(out).acquire() if dist.is_main else None  # one writer per run folder (cvil.train.run_lock)
    if dist.is_main:
        report_effective_batch(cfg, dist.world_size)
    if stale and dist.is_main:
        log.warning("--overwrite: removing the earlier run's %s from %s", ", ".join(p.name for p in stale), out)
        _remove(stale)
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
        if lock is not None:
            lock.release()
        teardown_distributed()
        return finished
    tracker = _make_tracker(cfg, dist.is_main, trainer.progress.run_id, digest)
    trainer.tracker = tracker
    trainer.progress.run_id = broadcast_object(tracker.run_id or "")
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(run_layout.config_path(out), to_yaml(cfg))
        if resume_state is None:
            tracker.log_params(run_params(cfg, dist.world_size))
            _describe_run(tracker, cfg)
        tracker.log_artifact(run_layout.config_path(out))
    status = "FAILED"
    try:
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
        if lock is not None:
            lock.release()
        teardown_distributed()
