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


# --------------------------------------------------------------------------------------- background checkpoints

def test_checkpoint_checksum_is_taken_while_writing(tmp_path):
    from cvil.fileio import sha256_file

    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.randn(300, 70), "nested": [torch.arange(4), {"h": torch.ones(2).half()}]}, path)
    assert (tmp_path / "ckpt.pt.sha256").read_text().strip() == sha256_file(path)


def test_cpu_snapshot_copies_tensors_keeps_sharing_and_state_dict_metadata():
    from cvil.train.checkpointing import cpu_snapshot

    lin = torch.nn.Linear(3, 3)
    tied = torch.nn.ModuleDict({"a": lin, "b": lin})  # two keys, one weight
    sd = tied.state_dict()
    snap = cpu_snapshot({"model": sd, "progress": {"step": 3}, "betas": (0.9, 0.99)})
    assert snap["model"]._metadata == sd._metadata and list(snap["model"]) == list(sd)
    assert snap["model"]["a.weight"] is snap["model"]["b.weight"]  # still shared, as torch.save keeps it
    with torch.no_grad():
        lin.weight.add_(1.0)  # training goes on: the snapshot does not move
    assert not torch.equal(snap["model"]["a.weight"], lin.weight)
    assert snap["progress"] == {"step": 3} and snap["betas"] == (0.9, 0.99)


def test_background_saver_snapshots_on_the_caller_and_keeps_one_save_in_flight(tmp_path, monkeypatch):
    import threading

    from cvil.train import checkpointing as ck

    lock, gate = threading.Lock(), threading.Event()
    active, peak, writers = [0], [0], []
    real = ck.atomic_torch_save

    def gated(obj, path):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            writers.append(threading.current_thread().name)
        gate.wait(30)
        real(obj, path)
        with lock:
            active[0] -= 1

    monkeypatch.setattr(ck, "atomic_torch_save", gated)
    saver, path = ck.BackgroundSaver(), tmp_path / "last.pt"
    w = torch.zeros(4)
    saver.save({"w": w, "step": 1}, path)  # returns while the write is held at the gate
    assert saver.in_flight and not path.exists()
    w.add_(1.0)  # the next steps change the live tensor in place
    second = threading.Thread(target=saver.save, args=({"w": w, "step": 2}, path))
    second.start()  # waits for the first save before it starts its own
    gate.set()
    second.join(30)
    saver.wait()
    assert not saver.in_flight and peak[0] == 1 and writers == ["cvil-checkpoint", "cvil-checkpoint"]
    state = verified_torch_load(path)
    assert state["step"] == 2 and torch.equal(state["w"], torch.ones(4))


def test_background_save_errors_surface_on_the_training_thread(tmp_path, monkeypatch):
    from cvil.train import checkpointing as ck

    def full_disk(obj, path):
        raise OSError(28, "No space left on device")

    saver = ck.BackgroundSaver()
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "last.pt")  # the previous checkpoint
    monkeypatch.setattr(ck, "atomic_torch_save", full_disk)
    saver.save({"w": torch.ones(2)}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt failed in the background: OSError: .*No space left"):
        saver.save({"w": torch.ones(2)}, tmp_path / "last.pt")  # the next save reports the failed one
    saver.wait()  # reported once
    saver.save({"w": torch.ones(2)}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="No space left"):
        saver.wait()  # the end of the run reports the last save's failure
    assert torch.equal(verified_torch_load(tmp_path / "last.pt")["w"], torch.zeros(2))  # still the previous one


def test_checkpoints_by_time_replace_the_step_count():
    import time
    from types import SimpleNamespace

    from cvil.config import config_hash, load_config
    from cvil.train.trainer import Progress, Trainer

    trainer = object.__new__(Trainer)  # only the clock and the config matter here
    trainer.progress = Progress(stage_step=7)
    trainer.cfg = SimpleNamespace(train=TrainConfig(checkpoint_every=7, checkpoint_every_s=0.0))
    trainer._last_save = time.monotonic()
    assert trainer._checkpoint_due()  # by steps: 7 % 7
    trainer.cfg = SimpleNamespace(train=TrainConfig(checkpoint_every=7, checkpoint_every_s=1800.0))
    assert not trainer._checkpoint_due()  # by time: just saved
    trainer._last_save -= 1801
    assert trainer._checkpoint_due()
    # when to save is not the experiment: a resume with another interval is not refused
    assert config_hash(load_config(None, ["train.checkpoint_every_s=1800"])) == config_hash(load_config(None, []))


def test_a_fork_waits_for_the_background_save(tmp_path, monkeypatch):
    """DataLoader workers fork: the child must not start while the writing thread may hold a lock."""
    import os
    import threading

    from cvil.train import checkpointing as ck

    gate = threading.Event()
    real = ck.atomic_torch_save
    monkeypatch.setattr(ck, "atomic_torch_save", lambda obj, path: (gate.wait(30), real(obj, path)))
    saver = ck.BackgroundSaver()
    saver.save({"w": torch.ones(2)}, tmp_path / "last.pt")
    threading.Timer(0.2, gate.set).start()
    pid = os.fork()
    if pid == 0:  # the child: the save was complete before the fork
        os._exit(0 if (tmp_path / "last.pt").exists() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0 and not saver.in_flight
    saver.wait()
