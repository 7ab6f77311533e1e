"""Samplers that make training resumable and evaluation exact under DDP.

`ResumableSampler` draws one permutation per (seed, epoch) from its own generator — never the global RNG — and
splits it across ranks like `DistributedSampler` (padding the tail so every rank takes the same number of steps).
It can start part-way through an epoch, which is how `--resume` continues from the exact data position.
`ShardSampler` is for evaluation: contiguous, unpadded shards, so every question is counted exactly once
(`DistributedSampler` would duplicate tail examples and bias accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, length: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        self.length, self.seed, self.rank, self.world_size, self.shuffle = length, seed, rank, world_size, shuffle
        self.epoch = 0
        self.start = 0  # examples of this rank's shard already consumed in the current epoch
        self.per_rank = math.ceil(length / world_size) if length else 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=gen).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.world_size
        order += order[: total - len(order)]  # pad the tail (training only) so ranks stay in lockstep
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


class ShardSampler(Sampler[int]):
    """Contiguous unpadded shard `rank` of `world_size`: the union over ranks is every index exactly once."""

    def __init__(self, length: int, *, rank: int = 0, world_size: int = 1) -> None:
        bounds = [length * r // world_size for r in range(world_size + 1)]
        self.indices = range(bounds[rank], bounds[rank + 1])

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
