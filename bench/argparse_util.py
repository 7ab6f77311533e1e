"""Let a subcommand take `key=value` overrides before *and* after its options.

`cvil-bench grid GRID --jobs 2 kd.cls=false` defeats plain argparse: the `nargs="*"` overrides positional is
consumed (empty) together with GRID, and the trailing `kd.cls=false` is rejected. `parse_intermixed_args` fixes
that, but refuses parsers with subcommands, so it cannot be used at the top level. Instead, the subcommand's own
parser is made to parse intermixed whenever the subparsers action hands it its arguments.
"""

from __future__ import annotations

import argparse


def allow_intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    plain = parser.parse_known_args  # the class's method, bound; used for the passes intermixed parsing makes
    busy = False

    def parse_known_args(args=None, namespace=None):
        nonlocal busy
        if busy:
            return plain(args, namespace)
        busy = True
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            busy = False

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    return parser
