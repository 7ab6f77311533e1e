"""A restricted unpickler for label maps.

Pickle runs arbitrary code: a ``GLOBAL``/``STACK_GLOBAL`` opcode imports any callable (``os.system``) and ``REDUCE``
calls it. Label maps only ever hold builtin containers of strings and numbers, which the unpickler builds from
opcodes without importing anything, so refusing every import (``find_class``) makes loading safe; a walk of the
result then rejects any other builtin type (bytes, sets) that the label maps never contain.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from cvil.data.errors import DataFormatError

ALLOWED_TYPES = (str, int, float, bool, type(None), list, tuple, dict)
_ALLOWED_NAMES = "str, int, float, bool, None, list, tuple, dict"


class _NoImportUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> object:  # noqa: D102 - the whole point of the class
        raise DataFormatError(
            self._source,
            "pickle",
            f"only builtin data ({_ALLOWED_NAMES}); refusing to import anything",
            f"a reference to {module}.{name}",
        )

    def persistent_load(self, pid: object) -> object:  # noqa: D102
        raise DataFormatError(self._source, "pickle", "no persistent ids", repr(pid))


def _check_types(value: object, source: Path) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) not in ALLOWED_TYPES:
            raise DataFormatError(source, "pickle", f"only {_ALLOWED_NAMES}", f"a {type(item).__name__}")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def load_restricted_pickle(path: str | Path) -> object:
    """Unpickle a file that may only contain builtin data; anything else raises `DataFormatError` naming the file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        value = _NoImportUnpickler(io.BytesIO(data), path).load()
    except DataFormatError:
        raise
    except Exception as exc:  # truncated or corrupt pickle: UnpicklingError, EOFError, ValueError, ...
        raise DataFormatError(path, "pickle", "a valid pickle of builtin data", f"{type(exc).__name__}: {exc}") from exc
    _check_types(value, path)
    return value
