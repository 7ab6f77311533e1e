"""The `cvil-bench` command: benchmark-layer subcommands (grids, searches, comparisons, leaderboards).

Same pattern as `cvil.cli`: each subcommand module exposes ``register(subparsers)`` and is imported lazily, so
`cvil-bench compare a.csv b.csv` does not import MLflow's server parts or torch, and a module not built yet shows
as "(not available in this build)" instead of breaking the whole command.
"""

from __future__ import annotations

import argparse

from cvil.cli import build_lazy_parser, run_lazy_cli

# command name -> module that registers it
COMMANDS: dict[str, str] = {
    "grid": "bench.grid.cli",
    "search": "bench.search",
    "compare": "bench.compare",
    "leaderboard": "leaderboards.cli",
    "ui": "bench.ui",
    "throughput": "bench.throughput.cli",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    return build_lazy_parser("cvil-bench", __doc__.splitlines()[0], COMMANDS, argv)


def main(argv: list[str] | None = None) -> int:
    return run_lazy_cli("cvil-bench", __doc__.splitlines()[0], COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
