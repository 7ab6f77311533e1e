"""Reading one JSON input file with an error that names it: every reader of user files goes through `load_json`, so
a missing file, a syntax error (line and column) or bad UTF-8 is one `DataFormatError` line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvil.data.errors import DataFormatError


def load_json(path: str | Path, what: str) -> Any:
    """Parse the JSON file `path`, described as `what` ("a QLA JSON file") when it is missing."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataFormatError(path, "file", what, "no such file") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"line {exc.lineno} column {exc.colno}", "valid JSON", exc.msg) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"byte {exc.start}", "UTF-8 text", exc.reason) from None
