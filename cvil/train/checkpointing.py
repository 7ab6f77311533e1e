"""Resumable training checkpoints: atomic, checksummed, loadable with `weights_only=True`.

A checkpoint holds everything a run needs to continue bit-for-bit: model, optimiser, LR scheduler and GradScaler
states, the Python/NumPy/torch RNG states, the progress record (stage, epoch, data position, best-so-far) and the
MLflow run id. Files are written to a temporary name, fsynced and renamed, with a SHA-256 sidecar checked on
load, so a run killed mid-write leaves the previous checkpoint intact. NumPy's RNG state is stored as plain
ints and a tensor so that the safe unpickler accepts it.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvil.models.checkpoint import CheckpointError  # noqa: F401  (the one class, also importable from here)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to `path` with its SHA-256 in `path.sha256`, both via fsynced temporary files and renames.

    Both temporaries are complete before the first rename, so a kill at any point leaves either the previous pair,
    or the new checkpoint with its checksum still in `path.sha256.tmp` (which `verified_torch_load` accepts).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_tmp(path), "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    with open(_tmp(_sidecar(path)), "w") as fh:
        fh.write(sha256_file(_tmp(path)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(_tmp(path), path)
    os.replace(_tmp(_sidecar(path)), _sidecar(path))


def verified_torch_load(path: str | Path) -> Any:
    """Load a checkpoint written by `atomic_torch_save`, refusing one whose checksum does not match."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    side, pending = _sidecar(path), _tmp(_sidecar(path))
    if side.is_file():
        actual = sha256_file(path)
        if side.read_text().strip() != actual:
            if not (pending.is_file() and pending.read_text().strip() == actual):
                raise CheckpointError(f"checkpoint {path} does not match its checksum {side.name}: refusing to resume")
            os.replace(pending, side)  # killed between the two renames of a save: finish it
    return torch.load(path, map_location="cpu", weights_only=True)


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
