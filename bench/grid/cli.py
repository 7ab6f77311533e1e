"""`cvil-bench grid GRID [key=value ...]`: the command over `bench.grid.runner.GridRunner` (parsing, SIGTERM, exit
codes)."""

from __future__ import annotations

import argparse
import contextlib
import signal

from bench.grid.runner import TRAIN_CMD_ENV, GridRunner
from bench.grid.spec import load_grid
from bench.grid.launchers import LAUNCHERS


def _launcher_options(items: list[str]) -> dict:
    import yaml

    from cvil.errors import UsageError

    out = {}
    for item in items or ():
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as exc:
            raise UsageError(f"--launcher-opt {item!r}: the value is not YAML ({' '.join(str(exc).split())})") from None
    return out


def register(subparsers) -> None:
    p = subparsers.add_parser("grid", help="run a grid (cells x seeds) as MLflow child runs of one parent run",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("grid", help="a shipped grid name (e.g. table3_ablations) or a grid YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every cell")
    p.add_argument("--jobs", "-j", type=int, default=1, help="jobs running at once (default 1)")
    p.add_argument("--seeds", type=int, default=None, help="use only the grid's first N seeds")
    p.add_argument("--cells", action="append", default=[], metavar="CELL",
                   help="run only this cell (repeatable; e.g. --cells KD --cells BASELINE)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="where jobs run: local subprocesses (default), submitit-local, or slurm via submitit")
    p.add_argument("--gpus-per-node", type=int, default=None, metavar="N",
                   help="--launcher slurm: GPUs per node (default: the grid's slurm.gpus_per_node; the paper grids "
                        "ask for 4); more than 1 runs the train command under torchrun")
    p.add_argument("--cpus-per-task", type=int, default=None, metavar="N",
                   help="--launcher slurm: CPUs per node's task (default: the grid's slurm.cpus_per_task)")
    p.add_argument("--nodes", type=int, default=None, metavar="N",
                   help="--launcher slurm: nodes per job (default: the grid's slurm.nodes, or 1); every node must "
                        "see the same data.root and output_dir")
    p.add_argument("--torchrun", default=None, metavar="PREFIX",
                   help="--launcher slurm: the torchrun command (default `python -m torch.distributed.run`)")
    p.add_argument("--launcher-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="submitit executor parameter (slurm_partition=..., gpus_per_node=1, timeout_min=...)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--runs-dir", default="runs", help="root of the jobs' output_dir (default runs/)")
    p.add_argument("--dry-run", action="store_true",
                   help="print every cell x seed with its config path, seed and overrides, and exit (no world, "
                        "no store, no training)")
    p.add_argument("--train-cmd", default=None,
                   help=f"train command prefix (default ${TRAIN_CMD_ENV} or `python -m cvil train`)")
    p.add_argument("--replaced", choices=("tag", "delete"), default="tag",
                   help="what happens to a cell x seed's earlier run when a re-run trains it again: tag (default) "
                        "marks it cvil.replaced_by=<new run id> (hidden by the UI filter tags.`cvil.replaced_by` IS "
                        "NULL, skipped by compare and the leaderboards), delete moves it to MLflow's trash")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from cvil.config import ConfigError

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must be key=value, got {bad}")
    spec = load_grid(args.grid)
    slurm = {k: v for k, v in (("gpus_per_node", args.gpus_per_node), ("cpus_per_task", args.cpus_per_task),
                               ("nodes", args.nodes), ("torchrun", args.torchrun)) if v is not None}
    if slurm and args.launcher != "slurm":
        from cvil.errors import UsageError

        raise UsageError(f"--{next(iter(slurm)).replace('_', '-')} applies to --launcher slurm, not {args.launcher}")
    runner = GridRunner(spec, jobs=args.jobs, seeds=args.seeds, cells=tuple(args.cells), launcher=args.launcher,
                        launcher_options={**_launcher_options(args.launcher_opt), **slurm},
                        overrides=tuple(args.overrides),
                        uri=args.tracking_uri, runs_dir=args.runs_dir, train_cmd=args.train_cmd,
                        echo=lambda line: print(line, flush=True), replaced=args.replaced)
    if args.dry_run:
        print("\n".join(runner.dry_run()))
        return 0
    try:
        with _sigterm_as_interrupt():
            results = runner.run()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Slurm, `timeout`): the running jobs were stopped first
        return 130
    return 1 if any(r.status == "failed" for r in results) else 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM takes the Ctrl-C path: the running jobs are interrupted (they close their runs KILLED), given a
    grace period, then killed, and the parent run is closed KILLED; without this the grid died at once and its
    children (in their own sessions) kept training as orphans."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the children's grace period
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
