"""DDP plumbing in the torchrun style: read RANK/WORLD_SIZE from the environment, gloo on CPU, NCCL on GPU.

Only rank 0 writes checkpoints and talks to MLflow; every rank computes. Tests spawn processes with a `file://`
init method instead of a port (no collisions between overlapping runs).

Every collective goes through the helpers below (nothing else calls `torch.distributed` collectives; a test scans
the sources). They move tensors to the process's device first: NCCL refuses CPU tensors, so a CPU tensor reduced
under NCCL fails the first evaluation of every multi-GPU run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


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


def setup_distributed(init_method: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun (or WORLD_SIZE > 1); otherwise a single process."""
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
    return DistInfo(rank, world_size, local_rank, device)


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
