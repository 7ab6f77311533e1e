"""`cvil predict`: score a trained run's final model on any split, writing EvalAI results and per-question files.

The run folder written by `cvil train` holds everything needed: `config.yaml` (tokenizer, data layout, stages)
and `final/` (the model). `--data` points at another dataset folder of the same kind (e.g. the real `vg/`).
"""

from __future__ import annotations

import json
from pathlib import Path

from cvil.errors import UsageError
from cvil.tracking_schema import PREDICTIONS_DIR
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

    run_dir = checkpoint if run_layout.config_path(checkpoint).is_file() else checkpoint.parent
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
    from cvil.eval.results_io import write_per_question, write_results
    from cvil.train.final_eval import score_split

    if not args.checkpoint:
        raise UsageError("--checkpoint RUN_DIR (or RUN_DIR/final) is required")
    ctx, folder = load_for_prediction(Path(args.checkpoint), args.data, [],
                                      trust_unverified=getattr(args, "trust_unverified", False))
    result = score_split(ctx, folder, args.split)
    if result is None:
        raise UsageError(f"nothing to score in {folder} ({args.split})")
    out = Path(args.out or run_layout.results_path(args.checkpoint, args.split))
    write_results(out, dict(zip(result.per_question["question_id"], result.per_question["prediction"])))
    per_question = run_layout.per_question_beside(out)
    write_per_question(per_question, result.per_question)
    metrics = result.metrics(args.split)
    if getattr(args, "run_id", None):
        from cvil.tracking import MLflowTracker

        tracker = MLflowTracker(run_id=args.run_id)
        tracker.log_metrics(metrics)
        tracker.log_artifact(out, PREDICTIONS_DIR)
        tracker.log_artifact(per_question, PREDICTIONS_DIR)
        tracker.close()
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"wrote {out} and {per_question}")
    return 0
