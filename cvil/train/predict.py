"""`cvil predict`: score a trained run's final model on any split, writing EvalAI results and per-question files.

The run folder written by `cvil train` holds everything needed: `config.yaml` (tokenizer, data layout, stages)
and `final/` (the model). `--data` points at another dataset folder of the same kind (e.g. the real `vg/`).
"""

from __future__ import annotations

import json
from pathlib import Path

from cvil.errors import UsageError
from cvil.train import run_layout


def load_for_prediction(checkpoint: Path, data: str | None, overrides: list[str], *, trust_unverified: bool = False):
    """(`final_eval.EvalContext`, dataset folder) for `final_eval.score_split`; the model folder's files are checked
    against the checksum manifest written when the run saved them."""
    from cvil.config import load_config
    from cvil.models.oscar import OscarVQA
    from cvil.train.checkpointing import verify_manifest
    from cvil.data.tokenizers import load_tokenizer
    from cvil.train.distributed import DistInfo
    from cvil.train.final_eval import EvalContext
    from cvil.precision import resolve_precision

    run_dir = _run_dir(checkpoint)
    if not run_layout.config_path(run_dir).is_file():
        raise UsageError(f"{checkpoint}: no config.yaml in it or its parent (expected a `cvil train` run folder)")
    model_dir = checkpoint if (checkpoint / "config.json").is_file() else run_layout.final_dir(run_dir)
    extra = list(overrides)
    if data:
        folder = Path(data)
        extra += [f"data.root={folder.parent}"]
    cfg = load_config(run_layout.config_path(run_dir), extra)
    verify_manifest(model_dir, trust_unverified=trust_unverified)
    folder = Path(data) if data else Path(cfg.data.root) / cfg.stages[-1].dataset
    dist = DistInfo()
    ctx = EvalContext.of_run(cfg, model=OscarVQA.from_pretrained(model_dir), dist=dist,
                             precision=resolve_precision(cfg.train.precision, dist.device),
                             tokenizer=load_tokenizer(cfg.model.tokenizer or cfg.model.init))
    return ctx, folder


def main(args) -> int:
    from cvil.train.final_eval import record_scored_split, score_split

    if not args.checkpoint:
        raise UsageError("--checkpoint RUN_DIR (or RUN_DIR/final) is required")
    checkpoint = Path(args.checkpoint)
    run_layout.check_no_symlinks(_run_dir(checkpoint))  # it writes predictions (and metrics.jsonl) in there
    ctx, folder = load_for_prediction(checkpoint, args.data, [],
                                      trust_unverified=getattr(args, "trust_unverified", False))
    result = score_split(ctx, folder, args.split)
    if result is None:
        raise UsageError(f"nothing to score in {folder} ({args.split})")
    out = Path(args.out or run_layout.results_path(_run_dir(checkpoint), args.split))  # not inside final/
    tracker = _run_tracker(checkpoint, getattr(args, "run_id", None))
    try:
        metrics = record_scored_split(result, args.split, out, tracker)
        tracker.log_metrics(metrics)
    finally:
        tracker.close()
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"wrote {out} and {run_layout.per_question_beside(out)}")
    return 0


def _run_tracker(checkpoint: Path, run_id: str | None):
    """`--run-id`: the tracked run and the run folder's `metrics.jsonl`, so both hold the same metrics; else none."""
    from cvil.tracking import MLflowTracker, NullTracker
    from cvil.tracking_local import JsonlTracker, TeeTracker

    if not run_id:
        return NullTracker()
    return TeeTracker(JsonlTracker(run_layout.metrics_path(_run_dir(checkpoint))), MLflowTracker(run_id=run_id))


def _run_dir(checkpoint: Path) -> Path:
    """`--checkpoint` names a run folder or its `final/`."""
    return checkpoint if run_layout.config_path(checkpoint).is_file() else checkpoint.parent
