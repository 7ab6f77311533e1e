"""`cvil demo`: the main job on the embedded default, from nothing to scores.

Builds the synthetic world (if missing), its mBERT stand-in and its trained OSCAR+ stand-in (the teacher), then
trains a BASELINE and a cViL_AUG student (and, with `--kd`, a cViL_KD student) on the Japanese JVG-like task and
prints their scores beside the teacher's English accuracy. Every run is tracked in MLflow (`mlflow.db` here).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cvil import tracking_schema as schema

SCHEDULES = {"baseline": "baseline.yaml", "aug": "aug.yaml", "kd": "kd.yaml"}
COLUMNS = ("test.accuracy", "test.accuracy_covered", "test.coverage", "test.bleu", "val.accuracy")


def _demo(args: argparse.Namespace) -> int:
    import logging

    from cvil.config import load_config
    from cvil.train.api import run
    from cvil.world import CONFIG_DIR, ensure_world

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    root = args.root or f"worlds/{args.preset}"
    out = args.out or f"runs/demo/{args.preset}"
    world = ensure_world(root, preset=args.preset, seed=args.world_seed)
    teacher = json.loads((Path(root) / "teacher" / "teacher_metrics.json").read_text())
    rows = []
    names = ["baseline", "aug"] + (["kd"] if args.kd else [])
    for name in names:
        for seed in range(1, args.seeds + 1):
            cfg = load_config(CONFIG_DIR / "synthetic" / SCHEDULES[name], [
                *world.overrides(), f"output_dir={out}/{name}/seed{seed}", f"train.seed={seed}",
                f"tracking.run_name=demo-{name}-s{seed}", f"tracking.tags.{schema.GRID}=demo", f"tracking.tags.{schema.CELL}={name}"])
            t0 = time.perf_counter()
            metrics = run(cfg, resume=True)
            rows.append((name, seed, metrics, time.perf_counter() - t0))
    print(f"\nteacher (English, synthetic VQA val): VQA accuracy {teacher.get('val.accuracy', float('nan')):.2f}")
    print(f"{'system':<10}{'seed':>5}" + "".join(f"{c:>24}" for c in COLUMNS) + f"{'seconds':>10}")
    for name, seed, metrics, secs in rows:
        print(f"{name:<10}{seed:>5}" + "".join(f"{metrics.get(c, float('nan')):>24.2f}" for c in COLUMNS) + f"{secs:>10.0f}")
    print(f"total {time.perf_counter() - start:.0f} s; runs in {out}/, tracking in MLflow (`cvil-bench ui`)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the main job on the embedded synthetic world: teacher, BASELINE, AUG",
                              description=__doc__)
    from cvil.data.synth.presets import DEFAULT_PRESET, PRESETS

    p.add_argument("--root", default=None,
                   help="where the synthetic world lives (default worlds/<preset>; made if missing, refused if it "
                        "holds another preset)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help=f"synthetic world size, smallest first: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world (default 0)")
    p.add_argument("--seeds", type=int, default=1, help="student seeds per system (default 1)")
    p.add_argument("--kd", action="store_true", help="also train the cViL_KD student")
    p.add_argument("--out", default=None, help="root of the students' run folders (default runs/demo/<preset>)")
    p.set_defaults(func=_demo)
