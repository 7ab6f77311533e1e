"""The teacher's seed spread: world v3's teacher stand-in re-trained over train seeds, at each setting of the knob.

The students of every table distil from one teacher per world (train seed 1, as the paper's students all distil from
the one released OSCAR+ checkpoint), so the students' seeds say nothing about how much the teacher itself depends on
its seed. This trains the world's own teacher recipe (`cvil.world.teacher_recipe`: the same config, data and
pre-training length) once per seed, as a grid (`teacher_seeds`, `teacher_seeds_t0`, ...: tracked, skipped when
finished, resumed when interrupted), and reports each seed's English VQA val accuracy; `python -m bench.knob` puts
them beside the knob table. Seed 1 re-trains the world's teacher itself: its accuracy must equal the world's.

    python -m bench.teacher_seeds [--teacher-images 0 2000 6000] [--seeds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys

from bench.grid.spec import Cell, GridSpec
from bench.knob_settings import KNOBS, knob_world

GRID = "teacher_seeds"
CELL = "teacher"
METRIC = "val.accuracy"


def teacher_grid(world: dict, suffix: str, seeds: int) -> GridSpec:
    """One cell, the teacher recipe of the (built) world `world` ({root, preset}), over train seeds 0..seeds-1. The
    world's paths are in the cell's overrides, not in `world:`, which would point the cell at the students' init and
    tokenizer."""
    from cvil.world import teacher_recipe

    config, overrides = teacher_recipe(world["root"])
    return GridSpec(name=GRID + suffix, cells=(Cell(CELL, str(config), tuple(overrides)),), seeds=tuple(range(seeds)),
                    description=f"the teacher stand-in of world {world.get('preset')} over train seeds "
                                f"(English VQA val accuracy per seed)")


def seed_accuracies(suffix: str, tracking_uri: str | None) -> dict[int, float]:
    """Each seed's English val accuracy from the store (the latest finished run per seed); {} if none ran."""
    from bench import runs as run_store

    client = run_store.client(tracking_uri)
    records = run_store.latest_per_seed(run_store.find_runs(client, grid=GRID + suffix, cell=CELL))
    return {int(r.seed): r.metrics[METRIC] for r in records if METRIC in r.metrics}


def main(argv: list[str] | None = None) -> int:
    from bench.grid.runner import GridRunner
    from bench.tracking import tracking_uri
    from cvil.world import ensure_world

    p = argparse.ArgumentParser(prog="python -m bench.teacher_seeds", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-images", nargs="+", type=int, default=list(KNOBS), choices=list(KNOBS),
                   help="the knob settings (train images of the teacher's corpus; default: all)")
    p.add_argument("--seeds", type=int, default=5, help="train seeds 0..N-1 (default %(default)s)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="teachers training at once (default 1)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--runs-dir", default="runs", help="root of the teachers' run folders (default runs/)")
    args = p.parse_args(argv)
    uri = tracking_uri(args.tracking_uri)
    failed = 0
    for images in args.teacher_images:
        suffix = KNOBS[images]
        world = knob_world(suffix)
        ensure_world(world["root"], world.get("preset", "small"), int(world.get("seed", 0)))
        spec = teacher_grid(world, suffix, args.seeds)
        failed += sum(r.status == "failed" for r in GridRunner(spec, jobs=args.jobs, uri=uri, runs_dir=args.runs_dir).run())
        scores = seed_accuracies(suffix, uri)
        print(f"teacher={images}: English val accuracy per seed "
              + " / ".join(f"{s}: {v:.2f}" for s, v in sorted(scores.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
