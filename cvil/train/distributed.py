"""DDP plumbing in the torchrun style: read RANK/WORLD_SIZE from the environment, gloo on CPU, NCCL on GPU.

Only rank 0 (the global rank 0, on the first node) writes checkpoints, packs missing feature stores and talks to
MLflow; every rank computes. Several machines therefore need the same `data.root` and `output_dir` (a shared
filesystem): `setup_distributed(..., shared_folders=...)` checks it at start (`check_shared_folders`: rank 0 writes
a nonce file into each folder, every rank reads it back after a barrier) and stops every rank with one line naming
the host that cannot see it (and the folder it looked in, where its config names another). Tests spawn processes
with a `file://` init method instead of a port (no collisions between overlapping runs); one test launches two real
torchrun agents on one machine, `--nnodes 2` (tests/train/test_multinode.py).

Every collective goes through the helpers below (nothing else calls `torch.distributed` collectives; a test scans
the sources). They move tensors to the process's device first: NCCL refuses CPU tensors, so a CPU tensor reduced
under NCCL fails the first evaluation of every multi-GPU run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from cvil.errors import CvilError

log = logging.getLogger(__name__)


class SharedFolderError(CvilError):
    """A rank cannot see a folder that every node must share (`data.root`, `output_dir`)."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """A process group exists (torchrun launched us, even with one process): wrap in DDP, reduce over ranks."""
        return dist.is_available() and dist.is_initialized()


_PROCESS_DEVICE = torch.device("cpu")


def process_device() -> torch.device:
    """The device this process's collectives run on (its CUDA device under NCCL, the CPU under gloo)."""
    return _PROCESS_DEVICE


def set_process_device(device: torch.device) -> None:
    global _PROCESS_DEVICE
    _PROCESS_DEVICE = torch.device(device)


def _multi_process() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def on_process_device(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` on the process's device (itself when it is already there): the one place collectives move data."""
    return tensor.to(process_device())


def setup_distributed(init_method: str | None = None, *, shared_folders: dict[str, str | Path] | None = None
                      ) -> DistInfo:
    """Initialise the process group when launched by torchrun (or WORLD_SIZE > 1); otherwise a single process.
    `shared_folders` ({config key: folder}): with several processes, check that every rank sees them."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    set_process_device(device)
    launched = world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ  # torchrun, even --nproc_per_node 1
    if launched and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size,
                                timeout=timedelta(minutes=10))
    info = DistInfo(rank, world_size, local_rank, device)
    if shared_folders:
        try:
            check_shared_folders(info, shared_folders)
        except BaseException:  # the caller never gets a group to tear down: a live gloo group aborts the exit
            teardown_distributed()
            raise
    return info


def check_shared_folders(info: DistInfo, folders: dict[str, str | Path]) -> None:
    """Every rank sees rank 0's files in each of `folders` ({config key: folder}, e.g. data.root, output_dir), or
    every rank raises `SharedFolderError` naming the first rank and host that does not (no rank hangs at a later
    barrier). Rank 0 writes a nonce file into each folder (creating it; a folder it cannot write, e.g. a read-only
    data.root, is not checked), every rank reads it back after a barrier, rank 0 removes it. No-op in one process."""
    if not _multi_process():
        return
    import secrets
    import socket

    token = broadcast_object(secrets.token_hex(16) if info.is_main else None)
    name = f".cvil-shared-check-{token}"
    written: dict[str, str] = {}
    if info.is_main:
        for key, folder in folders.items():
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
                (Path(folder) / name).write_text(token, encoding="utf-8")
                written[key] = str(folder)
            except OSError as exc:
                log.info("cannot write into %s %s (%s): not checking that every node sees it", key, folder, exc)
    written = broadcast_object(written)  # after rank 0's writes: a barrier with what to look for

    def sees(folder: str | Path) -> bool:
        try:
            return (Path(folder) / name).read_text(encoding="utf-8") == token
        except OSError:
            return False

    missing = {key: str(folders[key]) for key in written if not sees(folders[key])}  # {key: where it looked}
    views = all_gather_objects((info.rank, socket.gethostname(), missing))  # every rank has read by now
    if info.is_main:
        for key in written:
            (Path(folders[key]) / name).unlink(missing_ok=True)
    blind = [(rank, host, keys) for rank, host, keys in views if keys]
    if blind:
        rank, host, looked = blind[0]
        key, theirs = next(iter(looked.items()))
        where = f" (its {key} is {theirs})" if theirs != written[key] else ""  # a node configured differently
        more = f" ({len(blind) - 1} more rank(s) too)" if len(blind) > 1 else ""
        raise SharedFolderError(
            f"{key} {written[key]} is not shared between the nodes: rank {rank} on host {host} does not see "
            f"the file rank 0 (on {views[0][1]}) wrote there{where}{more}; every node must see the same data.root "
            f"and output_dir (a shared filesystem): only rank 0 packs feature stores and writes checkpoints")


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks, in place wherever it lives (no-op in a single process); reduced on the process's
    device and copied back."""
    if not _multi_process():
        return tensor
    work = on_process_device(tensor)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def all_gather_objects(obj):
    """Gather one picklable object per rank (trusted, in-process data only), in rank order. The pickled bytes
    travel on the current CUDA device under NCCL (`setup_distributed` sets it)."""
    if not _multi_process():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's value on every rank (e.g. the MLflow run id, a pruning decision)."""
    if not _multi_process():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=process_device())
    return box[0]


def barrier() -> None:
    if _multi_process():
        dist.barrier()
