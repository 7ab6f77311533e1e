"""`cvil demo`: the main job on the embedded default, from nothing to scores.

Builds the synthetic world (if missing), its mBERT stand-in and its trained OSCAR+ stand-in (the teacher), then
trains a BASELINE, a cViL_AUG and a cViL_KD student (Table I(a)'s three rows; `--no-kd` leaves KD out) on the
Japanese JVG-like task and prints their scores beside the teacher's English accuracy. Every run is tracked in MLflow (`mlflow.db` here).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cvil import tracking_schema as schema

SCHEDULES = {"baseline": "baseline.yaml", "aug": "aug.yaml", "kd": "kd.yaml"}
COLUMNS = ("test.accuracy", "test.accuracy_covered", "test.coverage", "test.bleu", "val.accuracy")


def _demo(args: argparse.Namespace) -> int:
    import logging

    from cvil.errors import UsageError
    from cvil.world import check_world_matches, ensure_world, percent

    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    root = args.root or f"worlds/{args.preset}"
    check_world_matches(root, args.preset, args.world_seed)  # before anything is built or imported
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    out = args.out or f"runs/demo/{args.preset}"
    world = ensure_world(root, preset=args.preset, seed=args.world_seed)
    teacher = json.loads((Path(root) / "teacher" / "teacher_metrics.json").read_text())
    runs = [(name, seed, [*world.overrides(), *overrides])
            for name, seed, overrides in demo_runs(args.preset, args.world_seed, args.kd, args.seeds, out)]
    jobs = min(args.jobs or os.cpu_count() or 1, len(runs))
    if jobs > 1:  # one single-threaded run per core, as the grids run their cells (same numbers as one at a time)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train, name, overrides) for name, _, overrides in runs]
            rows = [(name, seed, *f.result()) for (name, seed, _), f in zip(runs, futures)]
    else:
        rows = [(name, seed, *_train(name, overrides)) for name, seed, overrides in runs]
    print(f"\nteacher (English, synthetic VQA val): VQA accuracy {percent(teacher.get('val.accuracy'))}")
    print(f"{'system':<10}{'seed':>5}" + "".join(f"{c:>24}" for c in COLUMNS) + f"{'seconds':>10}")
    for name, seed, metrics, secs in rows:
        print(f"{name:<10}{seed:>5}" + "".join(f"{metrics.get(c, float('nan')):>24.2f}" for c in COLUMNS) + f"{secs:>10.0f}")
    print("(scores in %, BLEU 0-100)")
    print(f"total {time.perf_counter() - start:.0f} s; runs in {out}/, tracking in MLflow (`cvil-bench ui`)")
    return 0


def _train(name: str, overrides: list[str]) -> tuple[dict, float]:
    """Train one demo student (in this process or a pool worker): its final metrics and seconds."""
    import logging

    from cvil.config import load_config
    from cvil.train.api import run
    from cvil.world import CONFIG_DIR

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    metrics = run(load_config(CONFIG_DIR / "synthetic" / SCHEDULES[name], overrides), resume=True)
    return metrics, time.perf_counter() - t0


def demo_runs(preset: str, world_seed: int, kd: bool, seeds: int, out: str) -> list[tuple[str, int, list[str]]]:
    """(system, seed, overrides) of every student the demo trains. The world is part of each run's identity: its
    name (`demo-small-aug-s1`), the tag `cvil.world` and the cell (`small/aug`, what MLflow's "Group by cvil.cell"
    averages), so a `--preset tiny` demo and a default one in the same store never share a group."""
    from cvil.data.synth.manifest import world_identity

    world = world_identity(preset, world_seed)
    names = ["baseline", "aug"] + (["kd"] if kd else [])
    return [(name, seed, [f"output_dir={out}/{name}/seed{seed}", f"train.seed={seed}",
                          f"tracking.run_name=demo-{world}-{name}-s{seed}", f"tracking.tags.{schema.GRID}=demo",
                          f"tracking.tags.{schema.CELL}={world}/{name}", f"tracking.tags.{schema.WORLD}={world}"])
            for name in names for seed in range(1, seeds + 1)]


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the main job on the embedded synthetic world: teacher, BASELINE, AUG, KD",
                              description=__doc__)
    from cvil.data.synth.presets import DEFAULT_PRESET, PRESETS

    p.add_argument("--root", default=None,
                   help="where the synthetic world lives (default worlds/<preset>; made if missing, refused if it "
                        "holds another preset)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help=f"synthetic world size, smallest first: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world (default 0)")
    p.add_argument("--seeds", type=int, default=1, help="student seeds per system (default 1)")
    p.add_argument("--no-kd", dest="kd", action="store_false",
                   help="skip the cViL_KD student (BASELINE and AUG only; the default trains Table I(a)'s three rows)")
    p.add_argument("--kd", action="store_true",
                   help="no effect: cViL_KD is trained by default (kept for commands written before it was)")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="students trained at once, one thread each (default: one per CPU core)")
    p.add_argument("--out", default=None, help="root of the students' run folders (default runs/demo/<preset>)")
    p.set_defaults(func=_demo)
