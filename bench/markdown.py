"""The one Markdown table writer of the benchmark layer and the leaderboards: a pipe table, cells unpadded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]],
                   align: Sequence[str] | None = None) -> str:
    """`| a | b |`, the rule (`align`: one `---` or `--:` (right) per column, default `---`), then one line per row.

    Cells are written with `str()` as they are: escaping `|` and the like is the caller's (what needs it depends on
    where the text comes from). No trailing newline.
    """
    rule = list(align) if align is not None else ["---"] * len(header)
    if len(rule) != len(header):
        raise ValueError(f"{len(rule)} alignments for {len(header)} columns")
    return "\n".join(_line(cells) for cells in (header, rule, *rows))


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"
