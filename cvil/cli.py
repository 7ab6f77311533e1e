"""The `cvil` command: a thin dispatcher over subcommands that each live beside the code they drive.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code). Modules are imported lazily, so ``cvil --help`` and
``cvil synth`` do not pay for importing MLflow or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from cvil.cli_args import CommandParser, parse_args
from cvil.errors import CvilError

# command name -> module that registers it (one idea per module; see docs/architecture.md)
COMMANDS: dict[str, str] = {
    "demo": "cvil.demo",
    "synth": "cvil.data.synth.cli",
    "data": "cvil.data.cli",
    "train": "cvil.train.cli",
    "predict": "cvil.train.cli",
    "eval": "cvil.eval.cli",
    "align": "cvil.data.cli",
    "embed-plot": "cvil.analysis.cli",
    "kd-cache": "cvil.train.cli",
}


def build_lazy_parser(prog: str, description: str, commands: dict[str, str], argv: list[str]) -> argparse.ArgumentParser:
    """A parser whose subcommands register themselves; only the module of the command being run is imported."""
    parser = CommandParser(prog=prog, description=description)  # key=value overrides may follow options
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in commands else None
    registered: set[str] = set()
    for name, module in commands.items():
        if module in registered:
            continue
        if wanted is not None and commands[wanted] != module:
            subparsers.add_parser(name, help=f"(see `{prog} {name} --help`)")
            continue
        try:
            importlib.import_module(module).register(subparsers)
            registered.add(module)
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name != module:
                raise
            subparsers.add_parser(name, help="(not available in this build)")
    return parser


def run_lazy_cli(prog: str, description: str, commands: dict[str, str], argv: list[str] | None) -> int:
    """Parse `argv` (default: the process arguments) and run the chosen subcommand's `func`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_lazy_parser(prog, description, commands, argv)
    args = parse_args(parser, argv)
    if not hasattr(args, "func"):
        if args.command:
            print(f"{prog} {args.command}: (not available in this build)", file=sys.stderr)
            return 2
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args.func(args) or 0)
    except CvilError as exc:  # user-facing errors: one line, exit 2 (cvil.errors)
        message = " ".join(str(exc).split())
        print(f"{prog} {args.command}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into one (cvil.world, cvil.train.stop_signals)
        signum = int(getattr(exc, "signum", signal.SIGINT))
        message = " ".join(str(exc).split()) or f"interrupted ({signal.Signals(signum).name})"
        print(f"{prog} {args.command}: {message}", file=sys.stderr)
        return 128 + signum


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    return build_lazy_parser("cvil", __doc__.splitlines()[0], COMMANDS, argv)


def main(argv: list[str] | None = None) -> int:
    return run_lazy_cli("cvil", __doc__.splitlines()[0], COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
