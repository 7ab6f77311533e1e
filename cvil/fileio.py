"""File helpers below every layer: a file's SHA-256, and the one way cvil replaces a file atomically.

Why one atomic write: a run killed mid-write (preemption, OOM, Ctrl-C) must leave either the old file or the new
one, never half of one, and on a crash of the machine the rename must not reach the disk before the data. So every
writer goes through `atomic_paths`: write temporary siblings (`NAME.tmp`), fsync each, rename each over its target
in order, fsync the folder. Several files renamed together (a checkpoint and its checksum, a packed store's data and
its index) are all complete before the first rename; the last one named is the one a reader checks for. The rename
replaces a symlink at the target rather than writing through it, and a stale `NAME.tmp` (or a link planted there) is
removed first, so an atomic write never lands outside the folder it names.

A folder of files cvil wrote (a model folder: `final/`, an Oscar export) carries a checksum manifest `SHA256SUMS`
(`write_manifest`, `sha256sum` format), written last; the training layer verifies it on every read
(`cvil.train.checkpointing.verify_manifest`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tmp_path(path: str | Path) -> Path:
    """The temporary sibling `atomic_paths` writes `path` through (`NAME.tmp`)."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield the temporary siblings of `paths` to write; on a clean exit each is fsynced and renamed over its target,
    in the order given, and the folders are fsynced. On an exception nothing is renamed and the temporaries go."""
    targets = [Path(p) for p in paths]
    tmps = [tmp_path(p) for p in targets]
    for target, tmp in zip(targets, tmps):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # a leftover, or a symlink planted there: never write through it
    try:
        yield tmps
        for tmp in tmps:
            _fsync(tmp)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, target in zip(tmps, targets):
        os.replace(tmp, target)
    for folder in {t.parent for t in targets}:
        _fsync(folder)


def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], object]) -> Path:
    """Replace `path` atomically with `content`: text (UTF-8), bytes, or a function that writes the file it is given
    (e.g. `lambda p: torch.save(obj, p)`). Returns `path`."""
    path = Path(path)
    with atomic_paths(path) as (tmp,):
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
    return path


MANIFEST = "SHA256SUMS"


def write_manifest(folder: str | Path, names: list[str] | None = None) -> Path:
    """`folder/SHA256SUMS` (`sha256sum` format) over `names` (relative paths), or over every file in `folder`
    (temporaries and the manifest itself left out), written atomically and last."""
    folder = Path(folder)
    if names is None:
        names = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")]
    lines = [f"{sha256_file(folder / name)}  {name}" for name in names]
    return atomic_write(folder / MANIFEST, "\n".join(lines) + "\n")
