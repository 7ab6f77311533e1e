"""The one rule of every `cvil` / `cvil-bench` command line: `key=value` overrides may also come after options.

`cvil train --config F a=1 --resume b=2`, `cvil-bench grid GRID --jobs 2 kd.cls=false`: argparse stops a
`nargs="*"` positional at the first option and leaves the rest unrecognised. A subcommand's parser built as a
`CommandParser` (every subparser of the dispatchers' parsers, `cvil.cli.build_lazy_parser`, is one) takes those
trailing `key=value` items into its `overrides` list; anything else stays argparse's error.
"""

from __future__ import annotations

import argparse


def take_overrides(namespace: argparse.Namespace, extra: list[str]) -> list[str]:
    """Move trailing `key=value` items into ``namespace.overrides`` (when the command has that list and every extra
    item is one); returns what is still unrecognised."""
    if extra and isinstance(getattr(namespace, "overrides", None), list) and all(
            "=" in item and not item.startswith("-") for item in extra):
        namespace.overrides = [*namespace.overrides, *extra]
        return []
    return extra


class CommandParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose parses apply `take_overrides`; its subparsers are CommandParsers too."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        return namespace, take_overrides(namespace, extra)


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parser.parse_args(argv)` with trailing overrides taken, also for a parser that is not a CommandParser."""
    namespace, extra = parser.parse_known_args(argv)
    if take_overrides(namespace, extra):
        return parser.parse_args(argv)  # reports the unrecognised arguments as argparse always has
    return namespace
