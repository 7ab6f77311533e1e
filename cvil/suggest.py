"""The one "did you mean" of every refusal of an unknown name (config keys and values, presets, feature sources,
datasets, grids, leaderboard tables)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6,
                 show: Callable[[str], str] = str) -> str:
    """``"; did you mean 'x'?"`` (several: ``'x' or 'y'``) for the choices closest to `name`, ``""`` when none is close.

    `show` spells a choice in the message (e.g. a key as its dotted path).
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(show(c)) for c in close)}?" if close else ""


def unknown_choice(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown <kind> 'name'; did you mean 'x'? (known: a, b, c)``: the message refusing `name`."""
    choices = list(choices)
    return f"unknown {kind} {name!r}{did_you_mean(name, choices)} (known: {', '.join(map(str, choices))})"
