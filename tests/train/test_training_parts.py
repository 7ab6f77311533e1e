"""Samplers, optimiser groups, LR schedule and checkpoint integrity."""

import random

import numpy as np
import pytest
import torch

from cvil.config import TrainConfig
from cvil.train.checkpointing import CheckpointError, atomic_torch_save, capture_rng, restore_rng, verified_torch_load
from cvil.train.optim import build_optimizer, build_scheduler
from cvil.train.sampling import ResumableSampler, ShardSampler


def test_shards_cover_every_index_exactly_once():
    for n, world in ((10, 3), (7, 2), (2, 4)):
        seen = [i for r in range(world) for i in ShardSampler(n, rank=r, world_size=world)]
        assert sorted(seen) == list(range(n))


def test_resumable_sampler_replays_the_same_order_from_a_position():
    s = ResumableSampler(11, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=4)
    assert list(s) == full[4:]
    s.set_epoch(3)
    assert list(s) != full and sorted(s) == list(range(11))


def test_resumable_sampler_ranks_are_disjoint_and_padded_equally():
    shards = [list(ResumableSampler(9, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0]) | set(shards[1]) == set(range(9))


def test_no_weight_decay_on_bias_and_layernorm():
    model = torch.nn.ModuleDict({"dense": torch.nn.Linear(3, 3), "LayerNorm": torch.nn.LayerNorm(3)})
    model["dense"].weight.requires_grad_(False)
    opt = build_optimizer(model, 1e-3, TrainConfig(), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and decay["params"] == []  # the frozen weight is not handed over
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_linear_decay_to_zero_with_optional_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, total_steps=4, warmup_ratio=0.0)
    lrs = []
    for _ in range(4):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_checkpoint_round_trip_and_corruption_detected(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.arange(3.0), "rng": capture_rng()}, path)
    assert torch.equal(verified_torch_load(path)["w"], torch.arange(3.0))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        verified_torch_load(path)


def test_one_checkpoint_error_for_training_and_model_checkpoints(tmp_path):
    from cvil.errors import CvilError
    from cvil.models import CheckpointError as ModelCheckpointError

    assert CheckpointError is ModelCheckpointError and issubclass(CheckpointError, CvilError)
    for old_base in (RuntimeError, ValueError):  # what each of the two former classes was; callers may catch either
        with pytest.raises(old_base, match="checkpoint not found"):
            verified_torch_load(tmp_path / "missing.pt")


def test_rng_states_restore_exactly():
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_checkpoint_killed_between_the_two_renames_still_loads(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.zeros(2)}, path)
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "new.pt")
    # the state a kill leaves after the data rename and before the checksum rename
    (tmp_path / "new.pt").replace(path)
    (tmp_path / "new.pt.sha256").replace(tmp_path / "ckpt.pt.sha256.tmp")
    assert torch.equal(verified_torch_load(path)["w"], torch.ones(2))
    assert not (tmp_path / "ckpt.pt.sha256.tmp").exists()
