"""Reading one JSON or text input file with an error that names it: every reader of user files goes through
`load_json` (JSON) or `read_text` / `text_lines` (TSV, split lists, Pharaoh lines), so a missing file, a syntax error
(line and column), JSON nested too deeply or bad UTF-8 (line and byte) is one `DataFormatError` line, never a
traceback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cvil.data.errors import DataFormatError


def load_json(path: str | Path, what: str) -> Any:
    """Parse the JSON file `path`, described as `what` ("a QLA JSON file") when it is missing."""
    return load_json_and_digest(path, what)[0]


def load_json_and_digest(path: str | Path, what: str) -> tuple[Any, str]:
    """`load_json` and the sha256 of the file's bytes (read once), for readers that pin what they read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, "file", what, "no such file") from None
    return _parse(path, raw), hashlib.sha256(raw).hexdigest()


def _parse(path: Path, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"line {exc.lineno} column {exc.colno}", "valid JSON", exc.msg) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"byte {exc.start}", "UTF-8 text", exc.reason) from None
    except RecursionError:
        raise DataFormatError(path, "nesting", "JSON nested at most ~1000 levels deep", "deeper") from None


def _bad_utf8(path: Path, line_no: int, line_start: int, exc: UnicodeDecodeError, offset: int = 0) -> DataFormatError:
    """Where a bad byte is: its line, its byte in the line (1-based) and in the file (0-based, as `load_json`)."""
    at = offset + exc.start
    return DataFormatError(path, f"line {line_no} byte {at - line_start + 1} (byte {at} of the file)", "UTF-8 text",
                           exc.reason)


def read_text(path: str | Path, what: str) -> str:
    """The whole text file `path` (UTF-8), described as `what` when it is missing."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, "file", what, "no such file") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise _bad_utf8(path, raw.count(b"\n", 0, exc.start) + 1, line_start, exc) from None


def text_lines(path: str | Path, what: str) -> Iterator[tuple[int, str]]:
    """`(line number, line)` of the UTF-8 text file `path`, read as a stream; line ends are kept and only `\\n` ends a
    line (a `\\r\\n` line keeps its `\\r`). A byte that is not UTF-8 is an error naming its line and byte."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataFormatError(path, "file", what, "no such file") from None
    with handle:
        position = 0
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _bad_utf8(path, line_no, position, exc, offset=position) from None
            yield line_no, line
            position += len(raw)
