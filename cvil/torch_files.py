"""The one way cvil reads a `.pt` file: `torch.load(weights_only=True)`, with errors that name the file.

torch's own messages for a bad file are long and misleading for a user: a truncated file gives a zip-reader error
(or `OSError: [Errno 22]`), and anything the safe unpickler refuses comes with the advice that re-running with
`weights_only=False` "will likely succeed", i.e. that executing the file's code is the fix. Here every failure becomes
one `UnreadableFileError` naming the file and what was wrong with it, and that advice is never shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cvil.errors import CvilError


class UnreadableFileError(CvilError, ValueError):
    """A file cvil needs could not be read safely (truncated, corrupt, or holding objects that are not tensors)."""


_ADVICE_MARK = "Weights only load failed"


def load_error_detail(exc: BaseException) -> str:
    """The useful part of torch's message, on one line, without the `weights_only=False` advice."""
    text = str(exc)
    if _ADVICE_MARK in text:
        body = text.split("Check the documentation of torch.load", 1)[0]
        body = body.split("WeightsUnpickler error:", 1)[-1]
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
        kept = [p for p in paragraphs if "weights_only" not in p and not p.startswith("Please file an issue")]
        detail = " ".join(kept) or "content the safe loader does not accept"
        return f"refused by the safe loader (only tensors and plain containers are allowed): {detail}"
    first = " ".join(text.split()).split(". ", 1)[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_torch_file(path: str | Path, *, what: str = "a torch file") -> Any:
    """`torch.load(path, weights_only=True)` on CPU; any failure but a missing file raises `UnreadableFileError`."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, garbage, or refused content: all are the file's fault, name it
        raise UnreadableFileError(f"{path}: cannot read it as {what} ({load_error_detail(exc)}); "
                                  f"is the file truncated or corrupt?") from exc
