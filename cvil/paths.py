"""The one check for a user-given name that becomes a single path component (a folder or file name).

Study names, grid names, cell names, run names: each is joined under a folder the user named (`runs/`, the grid's
folder), so it must stay one plain name there. `safe_component` refuses, as one line naming what the name is for,
anything that could leave that folder or mean something else: a separator, `.`/`..`, an absolute path, a NUL, an
empty name, a leading `-` (read as an option by the tools that list such folders).
"""

from __future__ import annotations

from cvil.errors import UsageError


def safe_component(name: str, what: str) -> str:
    """`name` unchanged when it is one plain path component, else `UsageError` naming `what` (e.g. "study name")."""
    text = str(name)
    problem = (
        "is empty" if not text.strip() else
        "contains a NUL byte" if "\0" in text else
        "contains a path separator ('/' or '\\')" if "/" in text or "\\" in text else
        "is '.' or '..'" if text in (".", "..") else
        "starts with '-'" if text.startswith("-") else
        ""
    )
    if problem:
        raise UsageError(f"{what} {text!r} {problem}: it becomes a folder or file name, so it must be one plain name "
                         "(letters, digits, '.', '_', '+', '-')")
    return text
