"""`cvil train --config FILE [--resume | --overwrite] [key=value ...]` (also under `torchrun -m cvil train`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _train(args: argparse.Namespace) -> int:
    from cvil.config import ConfigError, load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        from cvil.train.preflight import check_run

        check_run(cfg, resume=args.resume, trust_unverified=args.trust_unverified)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"cvil train: {exc}", file=sys.stderr)
        return 2
    from cvil.train.api import run
    from cvil.train.stop_signals import RunInterrupted

    try:
        metrics = run(cfg, resume=args.resume, overwrite=args.overwrite, trust_unverified=args.trust_unverified)
    except RunInterrupted as exc:  # SIGTERM/SIGINT: the run is closed KILLED, its last checkpoint kept
        print(f"cvil train: {exc}; resume with --resume (output_dir {cfg.output_dir})", file=sys.stderr)
        return 128 + exc.signum
    if metrics:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a schedule of stages (BASELINE, AUG, KD, TEACHER, ...)",
                              description=__doc__)
    p.add_argument("--config", required=True, help="YAML run config (see configs/)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in output_dir (without it, or --resume, an existing run is refused)")
    p.add_argument("--trust-unverified", action="store_true",
                   help="--resume from a checkpoint whose .sha256 checksum file is missing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.seed=3")
    p.set_defaults(func=_train)
