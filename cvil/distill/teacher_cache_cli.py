"""`cvil kd-cache --config FILE [key=value ...]`: precompute the teacher cache a run can use instead of the
online teacher (`kd.teacher_cache=DIR`). Writes `DIR/train` and `DIR/val` for the config's first KD stage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from cvil.config import load_config
    from cvil.distill.teacher_cache import build_teacher_cache
    from cvil.train import model_setup
    from cvil.train.data_setup import build_stage_data, load_tokenizer
    from cvil.train.distributed import DistInfo

    cfg = load_config(args.config, args.overrides)
    stage = next((s for s in cfg.stages if s.distils), None)
    if stage is None:
        print(f"cvil kd-cache: {args.config} has no KD stage", file=sys.stderr)
        return 2
    dist = DistInfo()
    data = build_stage_data(stage, cfg.data, cfg.kd, tokenizer=load_tokenizer(cfg.model.tokenizer or cfg.model.init),
                            teacher_tokenizer=load_tokenizer(cfg.kd.teacher_tokenizer or cfg.kd.teacher), dist=dist,
                            seed=cfg.train.seed)
    teacher = model_setup.load_teacher(cfg, dist.device)
    for split, loader in (("train", data.train), ("val", data.val)):
        manifest = build_teacher_cache(teacher, loader.dataset, Path(args.out) / split, cfg.kd.layers,
                                       batch_size=cfg.data.eval_batch_size, teacher_path=cfg.kd.teacher,
                                       overwrite=args.overwrite)
        print(f"{split}: {manifest['count']} questions cached in {Path(args.out) / split}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("kd-cache", help="precompute teacher hidden states keyed by question id",
                              description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="cache folder (then train with kd.teacher_cache=OUT)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=_build)
