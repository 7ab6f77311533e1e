"""The one error type for malformed input data.

Bad data must fail loudly and precisely: every message names the file, the row (or key) and what was expected, so
a user can open the file at the right place instead of guessing. Subclassing ``ValueError`` keeps callers that
already catch ``ValueError`` working.
"""

from __future__ import annotations

from pathlib import Path

from cvil.errors import CvilError


class DataFormatError(CvilError, ValueError):
    """A data file does not match the format we read: ``file: where: expected X[, got Y]``."""

    def __init__(self, file: str | Path, where: str, expected: str, got: object = None) -> None:
        self.file = str(file)
        self.where = where
        self.expected = expected
        self.got = got
        message = f"{self.file}: {where}: expected {expected}"
        if got is not None:
            message += f", got {got}"
        super().__init__(message)


class DataSetupError(CvilError, FileNotFoundError):
    """A dataset folder, split file or tokenizer that training needs is missing or unusable."""
