"""`run(cfg)`: one whole training run, in process — what `cvil train`, grids and searches call.

It sets up the process group (under torchrun), seeds, the rank-0 tracker, saves the resolved config, trains every
stage (resuming from `output_dir` when asked), scores the final model on the evaluation splits, and closes the
MLflow run as FINISHED, FAILED, or KILLED (when `on_eval` raised, e.g. an Optuna prune).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from cvil.config import RunConfig, config_hash, flatten, to_yaml
from cvil.tracking import MLflowTracker, NullTracker, git_commit
from cvil.train.distributed import broadcast_object, setup_distributed, teardown_distributed
from cvil.train.trainer import EvalCallback, Trainer, seed_everything

log = logging.getLogger(__name__)


def _run_tags(cfg: RunConfig, digest: str) -> dict:
    last = cfg.stages[-1] if cfg.stages else None
    tags = {
        "cvil.schedule": cfg.schedule,
        "cvil.language": last.lang if last else "",
        "cvil.dataset": f"{cfg.data.root}/{last.dataset}" if last else cfg.data.root,
        "cvil.seed": cfg.train.seed,
        "cvil.git_commit": git_commit(),
        "cvil.config_hash": digest,
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
    if not (is_main and cfg.tracking.enabled):
        return NullTracker()
    return MLflowTracker(uri=cfg.tracking.uri, experiment=cfg.tracking.experiment, run_name=cfg.tracking.run_name,
                         run_id=run_id or None, parent_run_id=cfg.tracking.parent_run_id, tags=_run_tags(cfg, digest))


def run(cfg: RunConfig, *, resume: bool = False, on_eval: EvalCallback | None = None,
        init_method: str | None = None) -> dict:
    dist = setup_distributed(init_method)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    digest = config_hash(cfg)
    out = Path(cfg.output_dir)
    trainer = Trainer(cfg, dist=dist, on_eval=on_eval)
    trainer.progress.config_hash = digest
    resume_state = trainer.load_resume_state() if resume else None
    if resume and resume_state is None:
        log.info("--resume: no checkpoint in %s yet, starting from the beginning", out)
    tracker = _make_tracker(cfg, dist.is_main, trainer.progress.run_id, digest)
    trainer.tracker = tracker
    trainer.progress.run_id = broadcast_object(tracker.run_id or "")
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        if resume_state is None:
            tracker.log_params(flatten(cfg))
            _describe_run(tracker, cfg)
        tracker.log_artifact(out / "config.yaml")
    status = "FAILED"
    try:
        trainer.run(resume_state)
        from cvil.train.final_eval import finish_run

        metrics = finish_run(trainer)
        status = "FINISHED"
        return metrics
    except BaseException as exc:
        status = "KILLED" if on_eval is not None and type(exc).__name__ == "TrialPruned" else "FAILED"
        raise
    finally:
        tracker.close(status)
        teardown_distributed()
