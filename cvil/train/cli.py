"""The training-side commands, beside the code they run:

- `cvil train --config FILE [--resume | --overwrite] [key=value ...]` (also under `torchrun -m cvil train`);
- `cvil predict --checkpoint RUN_DIR`: answer a split with a trained model (`cvil.train.predict`);
- `cvil kd-cache --config FILE --out DIR`: precompute the teacher cache (`cvil.train.kd_cache`); `cvil kd-cache
  --verify --out DIR` hashes an existing one (opening a cache for training does not).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    """A bad config or run folder raises a `CvilError` (`ConfigError`, `CheckpointError`, ...) before any data is
    read; the dispatcher prints it as one line with exit code 2."""
    from cvil.config import load_config

    from cvil.train.progress_report import configure_logging

    configure_logging(logging.INFO)  # under torchrun: INFO lines from rank 0 only
    cfg = load_config(args.config, args.overrides)
    from cvil.train.api import run  # its first step is the pre-run gate (cvil.train.preflight.check_run)
    from cvil.train.stop_signals import RunInterrupted

    try:
        metrics = run(cfg, resume=args.resume, overwrite=args.overwrite, trust_unverified=args.trust_unverified)
    except RunInterrupted as exc:  # SIGTERM/SIGINT: the run is closed KILLED, its last checkpoint kept
        print(f"cvil train: {exc}; resume with --resume (output_dir {cfg.output_dir})", file=sys.stderr)
        return 128 + exc.signum
    if metrics:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from cvil.train.predict import main

    return main(args)


def _kd_cache(args: argparse.Namespace) -> int:
    from cvil.train.kd_cache import build_kd_cache, verify_kd_cache

    if args.verify:
        for folder, count in verify_kd_cache(args.out).items():
            print(f"{folder}: {count} questions, every shard matches its sha256")
        return 0
    if not args.config:
        from cvil.errors import UsageError

        raise UsageError("cvil kd-cache: --config is required to build a cache (or pass --verify to check one)")

    manifests = build_kd_cache(config=args.config, out=args.out, overrides=args.overrides, overwrite=args.overwrite)
    for split, manifest in manifests.items():
        print(f"{split}: {manifest['count']} questions cached in {Path(args.out) / split}")
    return 0


def register(subparsers) -> None:
    """Add `train`, `predict` and `kd-cache`."""
    p = subparsers.add_parser("train", help="train a schedule of stages (BASELINE, AUG, KD, TEACHER, ...)",
                              description="`cvil train --config FILE [--resume | --overwrite] [key=value ...]` "
                                          "(also under `torchrun -m cvil train`).")
    p.add_argument("--config", required=True, help="YAML run config (see configs/)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in output_dir (without it, or --resume, an existing run is refused)")
    p.add_argument("--trust-unverified", action="store_true",
                   help="--resume from a checkpoint whose .sha256 checksum file is missing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.seed=3")
    p.set_defaults(func=_train)

    pr = subparsers.add_parser(
        "predict", help="write an EvalAI results file from a trained checkpoint",
        description="Answer every question of one split with a trained model and write the EvalAI results file "
                    '([{"question_id", "answer"}]) and a per-question CSV, print the official scores, and '
                    "optionally log them to the model's MLflow run.")
    pr.add_argument("--checkpoint", help="a `cvil train` run folder (its output_dir) or its final/ model folder")
    pr.add_argument("--data", help="dataset folder to answer, e.g. <data.root>/vg (default: the run's last stage's)")
    pr.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to answer (default test)")
    pr.add_argument("--out", help="results JSON to write (default RUN_DIR/predictions/<split>_results.json, also "
                                  "for --checkpoint RUN_DIR/final)")
    pr.add_argument("--run-id", help="MLflow run to log the summary metrics and files to")
    pr.add_argument("--trust-unverified", action="store_true",
                    help="use a model folder that has no SHA256SUMS checksum manifest (e.g. from an older cvil)")
    pr.set_defaults(func=_predict)

    kd = subparsers.add_parser("kd-cache", help="precompute teacher hidden states keyed by question id",
                               description="Precompute the teacher cache a run can use instead of the online teacher "
                                           "(kd.teacher_cache=DIR): DIR/train and DIR/val for the config's first KD "
                                           "stage.")
    kd.add_argument("--config", help="the KD run config whose first KD stage is cached (required to build)")
    kd.add_argument("--out", required=True, help="cache folder (then train with kd.teacher_cache=OUT)")
    kd.add_argument("--overwrite", action="store_true", help="replace an existing cache in --out")
    kd.add_argument("--verify", action="store_true",
                    help="build nothing: hash every shard of the cache in --out (OUT, or OUT/train and OUT/val) "
                         "against its manifest")
    kd.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. data.root=...")
    kd.set_defaults(func=_kd_cache)
