"""Resumable training checkpoints: atomic, checksummed, loadable with `weights_only=True`.

A checkpoint holds everything a run needs to continue bit-for-bit: model, optimiser, LR scheduler and GradScaler
states, the Python/NumPy/torch RNG states, the progress record (stage, epoch, data position, best-so-far) and the
MLflow run id. Files are written to a temporary name, fsynced and renamed, with a SHA-256 sidecar checked on
load, so a run killed mid-write leaves the previous checkpoint intact. NumPy's RNG state is stored as plain
ints and a tensor so that the safe unpickler accepts it.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvil.fileio import atomic_paths, atomic_write, sha256_file, tmp_path
from cvil.models.checkpoint import CheckpointError  # noqa: F401  (the one class, also importable from here)
from cvil.torch_files import load_torch_file

log = logging.getLogger(__name__)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to `path` with its SHA-256 in `path.sha256`, both via fsynced temporary files and renames.

    Both temporaries are complete before the first rename, so a kill at any point leaves either the previous pair,
    or the new checkpoint with its checksum still in `path.sha256.tmp` (which `verified_torch_load` accepts).
    """
    path = Path(path)
    with atomic_paths(path, _sidecar(path)) as (tmp, tmp_sidecar):
        torch.save(obj, tmp)
        tmp_sidecar.write_text(sha256_file(tmp) + "\n")


def verified_torch_load(path: str | Path, *, trust_unverified: bool = False) -> Any:
    """Load a checkpoint written by `atomic_torch_save`, refusing one whose checksum does not match, or that has no
    checksum at all (deleted sidecar) unless `trust_unverified`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    side, pending = _sidecar(path), tmp_path(_sidecar(path))
    actual = sha256_file(path)
    if side.is_file() and side.read_text().strip() == actual:
        pass
    elif pending.is_file() and pending.read_text().strip() == actual:
        os.replace(pending, side)  # killed between the two renames of a save: finish it
    elif side.is_file():
        raise CheckpointError(f"checkpoint {path} does not match its checksum {side.name}: refusing to resume")
    elif not trust_unverified:
        raise CheckpointError(f"checkpoint {path} has no checksum file {side.name} beside it, so it cannot be "
                              f"verified: refusing to load it (pass --trust-unverified to load it anyway)")
    else:
        log.warning("loading %s without a checksum (--trust-unverified)", path)
    return load_torch_file(path, what="a cvil checkpoint")


MANIFEST = "SHA256SUMS"


def write_manifest(folder: str | Path) -> Path:
    """`folder/SHA256SUMS` (`sha256sum` format) over every file in `folder`, written last: what `verify_manifest`
    checks when the folder is read back (`cvil predict`, a resumed finished run)."""
    folder = Path(folder)
    lines = [f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}" for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")]
    return atomic_write(folder / MANIFEST, "\n".join(lines) + "\n")


def verify_manifest(folder: str | Path, *, trust_unverified: bool = False) -> None:
    """Check every file listed in `folder/SHA256SUMS`; a missing manifest is refused unless `trust_unverified`."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        if trust_unverified:
            log.warning("using %s without a checksum manifest (--trust-unverified)", folder)
            return
        raise CheckpointError(f"{folder} has no checksum manifest {MANIFEST}, so its files cannot be verified: "
                              f"refusing to use it (pass --trust-unverified to use it anyway)")
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{file}: listed in {manifest} (line {number}) but missing")
        if sha256_file(file) != digest:
            raise CheckpointError(f"{file} does not match its checksum in {manifest}: the file was changed or "
                                  f"corrupted after cvil wrote it")


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
