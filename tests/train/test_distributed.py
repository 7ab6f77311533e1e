"""Collectives run on the process's device: checked on CPU with a backend that, like NCCL, refuses CPU tensors.

The backend below is registered with `torch.distributed.Backend.register_backend`; its device is `meta`, the one
non-CPU device every CPU build has (a stand-in for CUDA: it holds no data, so the values cannot come back from it).
"""

from __future__ import annotations

import ast
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch._C._distributed_c10d import Work

from cvil.train import distributed

REPO = Path(__file__).resolve().parents[2]
BACKEND = "cvil_refusing"


class _Done(Work):
    def wait(self, timeout=None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


class RefusingGroup(dist.ProcessGroup):
    """All-reduce that records the devices it is given and refuses any tensor not on its device (NCCL's rule)."""

    seen: list[torch.device] = []

    def __init__(self, rank: int, size: int, device: str) -> None:
        super().__init__(rank, size)
        self.device = device

    def allreduce(self, tensors, opts=None):
        for t in tensors:
            RefusingGroup.seen.append(t.device)
            if t.device.type != self.device:
                raise RuntimeError(f"{BACKEND}: tensors must be on {self.device}, got {t.device}")
        return _Done()

    def getBackendName(self) -> str:
        return BACKEND


@pytest.fixture
def refusing_group(monkeypatch):
    if BACKEND not in dist.Backend.backend_list:
        dist.Backend.register_backend(BACKEND, lambda store, rank, size, timeout: RefusingGroup(rank, size, "meta"),
                                      devices=["cuda"])
    dist.init_process_group(BACKEND, store=dist.HashStore(), rank=0, world_size=2)  # a 2-rank world, in-process
    monkeypatch.setattr(distributed, "_PROCESS_DEVICE", torch.device("meta"), raising=False)
    RefusingGroup.seen = []
    yield
    dist.destroy_process_group()


def test_the_group_refuses_cpu_tensors(refusing_group):
    with pytest.raises(RuntimeError, match="must be on meta, got cpu"):
        dist.all_reduce(torch.zeros(4))  # what in_loop_eval's CPU sums did before the fix


def test_all_reduce_sum_hands_the_backend_tensors_on_the_process_device(refusing_group):
    sums = torch.zeros(4, dtype=torch.float64)  # as in_loop_eval builds them, on the CPU
    # the backend accepts the moved tensor; only the copy back from the data-less stand-in device fails
    with pytest.raises(NotImplementedError, match="meta tensor"):
        distributed.all_reduce_sum(sums)
    assert RefusingGroup.seen == [torch.device("meta")]


def test_no_collective_bypasses_the_helpers():
    """Only cvil/train/distributed.py may call torch.distributed collectives."""
    collectives = {"all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "barrier",
                   "reduce", "reduce_scatter", "all_to_all", "gather", "scatter", "gather_object", "send", "recv"}
    offenders = []
    for path in [*REPO.glob("cvil/**/*.py"), *REPO.glob("bench/**/*.py"), *REPO.glob("leaderboards/**/*.py")]:
        if path == REPO / "cvil" / "train" / "distributed.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in collectives and isinstance(node.value, ast.Name) \
                    and node.value.id in {"dist", "distributed"}:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "torch.distributed" and any(
                    a.name in collectives for a in node.names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: from torch.distributed import")
    assert offenders == []


def _sum_worker(rank: int, init_file: str, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        t = torch.tensor([float(rank + 1), 10.0], dtype=torch.float64)
        distributed.all_reduce_sum(t)
        queue.put((rank, t.tolist(), distributed.broadcast_object(f"from {rank}"),
                   distributed.all_gather_objects({rank: rank * 2})))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_helpers_under_gloo_two_processes(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_sum_worker, args=(r, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == [(r, [3.0, 20.0], "from 0", [{0: 0}, {1: 2}]) for r in range(2)]


def _shared_worker(rank: int, init_file: str, folders_by_rank: list, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        distributed.check_shared_folders(distributed.DistInfo(rank, 2), folders_by_rank[rank])
        queue.put((rank, "ok"))
    except distributed.SharedFolderError as exc:
        queue.put((rank, str(exc)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_every_rank_must_see_the_data_root_and_output_dir(tmp_path):
    """Rank 1 stands for a node whose output_dir is a local folder, not the shared one: both ranks stop with one
    line naming rank 1, its host and the folder; with the same folders on both ranks nothing is said or left."""
    import socket

    data = tmp_path / "data"
    data.mkdir()
    shared = {"data.root": str(data), "output_dir": str(tmp_path / "runs" / "a")}
    elsewhere = {"data.root": str(data), "output_dir": str(tmp_path / "node1-local" / "a")}
    (tmp_path / "node1-local" / "a").mkdir(parents=True)
    ctx = mp.get_context("spawn")
    for name, by_rank in (("same", [shared, shared]), ("differ", [shared, elsewhere])):
        queue = ctx.Queue()
        procs = [ctx.Process(target=_shared_worker, args=(r, str(tmp_path / f"init-{name}"), by_rank, queue))
                 for r in range(2)]
        for p in procs:
            p.start()
        results = dict(queue.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(timeout=60)
        if name == "same":
            assert results == {0: "ok", 1: "ok"}
            assert not [p for p in tmp_path.rglob(".cvil-shared-check-*")]  # rank 0 cleaned up
        else:
            assert results[0] == results[1] and "\n" not in results[0]
            assert results[0].startswith(f"output_dir {tmp_path / 'runs' / 'a'} is not shared between the nodes: "
                                         f"rank 1 on host {socket.gethostname()} does not see the file rank 0")
