"""World v3's knob settings: train images of the teacher's English-only corpus -> the suffix of their grids, and the
world each setting runs on (the one its Table I grid names). Shared by the knob table and the teacher's seed grids."""

from __future__ import annotations

from bench.grid.spec import load_grid

KNOBS = {0: "_t0", 2000: "_t2000", 6000: ""}  # train images of the teacher's corpus -> the grids' suffix
DEFAULT_SUFFIX = ""


def knob_world(suffix: str) -> dict:
    """The synthetic world ({preset, root, seed}) of a knob setting: the one `table1_ja<suffix>` runs on."""
    return dict(load_grid("table1_ja" + suffix).world or {})
