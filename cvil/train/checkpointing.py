"""Resumable training checkpoints: atomic, checksummed, loadable with `weights_only=True`.

A checkpoint holds everything a run needs to continue bit-for-bit: model, optimiser, LR scheduler and GradScaler
states, the Python/NumPy/torch RNG states, the progress record (stage, epoch, data position, best-so-far) and the
MLflow run id. Files are written to a temporary name, fsynced and renamed, with a SHA-256 sidecar checked on
load, so a run killed mid-write leaves the previous checkpoint intact. NumPy's RNG state is stored as plain
ints and a tensor so that the safe unpickler accepts it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import random
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvil.fileio import MANIFEST, atomic_paths, atomic_write, sha256_file, tmp_path, write_manifest  # noqa: F401
from cvil.models.checkpoint import CheckpointError  # noqa: F401  (the one class, also importable from here)
from cvil.torch_files import load_torch_file

log = logging.getLogger(__name__)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


class _HashingWriter:
    """A write-only file that hashes what goes through it: `torch.save` writes its zip sequentially, so the digest
    is the file's SHA-256 without reading the file back."""

    def __init__(self, handle) -> None:
        self._handle, self._digest = handle, hashlib.sha256()

    def write(self, data) -> int:
        self._digest.update(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to `path` with its SHA-256 in `path.sha256`, both via fsynced temporary files and renames.

    Both temporaries are complete before the first rename, so a kill at any point leaves either the previous pair,
    or the new checkpoint with its checksum still in `path.sha256.tmp` (which `verified_torch_load` accepts). The
    checksum is taken while writing (`_HashingWriter`), not by reading the file again.
    """
    path = Path(path)
    with atomic_paths(path, _sidecar(path)) as (tmp, tmp_sidecar):
        with open(tmp, "wb") as handle:
            writer = _HashingWriter(handle)
            torch.save(obj, writer)
        tmp_sidecar.write_text(writer.hexdigest() + "\n")


def cpu_snapshot(obj: Any, _memo: dict | None = None) -> Any:
    """A copy of a checkpoint's state that training can no longer change: every tensor cloned to the CPU (tensors
    that shared memory still share it), containers rebuilt (their attributes, e.g. a state dict's `_metadata`,
    kept), anything else deep-copied."""
    memo = {} if _memo is None else _memo
    if isinstance(obj, torch.Tensor):
        key = (obj.untyped_storage().data_ptr(), obj.storage_offset(), tuple(obj.shape), tuple(obj.stride()),
               obj.dtype, obj.device)
        if key not in memo:
            memo[key] = obj.detach().to("cpu", copy=True)
        return memo[key]
    if isinstance(obj, dict):
        out = type(obj)((k, cpu_snapshot(v, memo)) for k, v in obj.items())
        if getattr(obj, "__dict__", None):
            out.__dict__.update(copy.deepcopy(obj.__dict__))
        return out
    if isinstance(obj, (list, tuple)):
        items = [cpu_snapshot(v, memo) for v in obj]
        if isinstance(obj, list):
            return items
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return copy.deepcopy(obj)


_SAVERS: "weakref.WeakSet[BackgroundSaver]" = weakref.WeakSet()


def _finish_saves_before_fork() -> None:
    for saver in list(_SAVERS):
        thread = saver._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_saves_before_fork)


class BackgroundSaver:
    """Checkpoints written by one background thread, so that rank 0's step loop pays only for a CPU copy.

    `save(state, path)` first waits for the previous save (at most one in flight; its error, if any, is raised
    here), copies `state` on the calling thread (`cpu_snapshot`: training may change the originals right after),
    then writes, fsyncs, hashes and renames it in the thread exactly as `atomic_torch_save` does, so a kill during a
    background save leaves the previous checkpoint valid. `wait()` returns when nothing is in flight and raises the
    error of a failed save; the trainer calls it before the run finishes or exits. The thread is not a daemon:
    even an unexpected exit waits for the file to be complete. A fork (DataLoader workers) first waits for the save
    in flight, so that no child starts with a lock held by the writing thread.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._path: Path | None = None
        _SAVERS.add(self)

    def save(self, state: Any, path: str | Path) -> None:
        self.wait()
        snapshot = cpu_snapshot(state)
        self._path = Path(path)
        self._thread = threading.Thread(target=self._write, args=(snapshot, self._path), name="cvil-checkpoint")
        self._thread.start()

    def _write(self, snapshot: Any, path: Path) -> None:
        try:
            atomic_torch_save(snapshot, path)
        except BaseException as exc:  # raised on the training thread by the next save() or wait()
            self._error = exc

    @property
    def in_flight(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(f"writing the checkpoint {self._path} failed in the background: "
                                  f"{type(error).__name__}: {error}") from error


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


def verify_manifest(folder: str | Path, *, trust_unverified: bool = False, required: bool = True) -> None:
    """Check every file listed in `folder/SHA256SUMS` (`cvil.fileio.write_manifest`); a missing manifest is refused
    unless `trust_unverified`, or passes silently when not `required` (a downloaded OSCAR+/mBERT folder has none)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        if not required:
            return
        if trust_unverified:
            log.warning("using %s without a checksum manifest (--trust-unverified)", folder)
            return
        raise CheckpointError(f"{folder} has no checksum manifest {MANIFEST}, so its files cannot be verified: "
                              f"refusing to use it (pass --trust-unverified to use it anyway)")
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{manifest} (line {number}): {name!r} is not a file inside {folder}")
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
