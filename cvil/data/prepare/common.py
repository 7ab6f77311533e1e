"""Helpers shared by the preparation commands: deterministic JSON writes, progress bars, JSON and TSV reading."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cvil.data.errors import DataFormatError
from cvil.data.json_file import text_lines
from cvil.fileio import atomic_write


def write_json(path: str | Path, value: Any, *, indent: int | None = None) -> Path:
    """Write JSON byte-identically for the same value (sorted keys, UTF-8 kept as is), atomically (`cvil.fileio.atomic_write`)."""
    return atomic_write(path, json.dumps(value, ensure_ascii=False, sort_keys=True, indent=indent) + "\n")


def progress(items: Iterable, *, desc: str, total: int | None = None, enabled: bool | None = None) -> Iterator:
    """A tqdm bar on stderr; `enabled=None` shows it only on a terminal."""
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, disable=None if enabled is None else not enabled,
                     unit="it", leave=False))


def read_tsv(path: str | Path, columns: int, what: str) -> Iterator[tuple[int, list[str]]]:
    """`(line number, fields)` of a TSV with exactly `columns` tab-separated fields per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file", what, "no such file")
    for line_no, line in text_lines(path, what):  # bad UTF-8: an error naming the line and byte
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != columns:
            raise DataFormatError(path, f"line {line_no}", f"{columns} tab-separated columns ({what})",
                                  f"{len(fields)} in {line[:60]!r}")
        yield line_no, fields
