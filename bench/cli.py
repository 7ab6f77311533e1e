"""The `cvil-bench` command: benchmark-layer subcommands (grids, searches, comparisons, leaderboards).

Same pattern as `cvil.cli`: each subcommand module exposes ``register(subparsers)`` and is imported lazily, so
`cvil-bench compare a.csv b.csv` does not import MLflow's server parts or torch, and a module not built yet shows
as "(not available in this build)" instead of breaking the whole command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that registers it
COMMANDS: dict[str, str] = {
    "grid": "bench.grid",
    "search": "bench.search",
    "compare": "bench.compare",
    "leaderboard": "leaderboards.cli",
    "ui": "bench.ui",
    "throughput": "bench.throughput",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvil-bench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    registered: set[str] = set()
    for name, module in COMMANDS.items():
        if module in registered:
            continue
        if wanted is not None and COMMANDS[wanted] != module:
            subparsers.add_parser(name, help=f"(see `cvil-bench {name} --help`)")
            continue
        try:
            importlib.import_module(module).register(subparsers)
            registered.add(module)
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name != module:
                raise
            subparsers.add_parser(name, help="(not available in this build)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        if args.command:
            print(f"cvil-bench {args.command}: (not available in this build)", file=sys.stderr)
            return 2
        parser.print_help()
        return 0 if not argv else 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
