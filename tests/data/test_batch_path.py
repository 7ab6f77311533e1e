"""The batch path (`VQADataset.__getitems__` -> `ExampleBatch` -> `collate`) against the per-example path, the epoch
reaching persistent DataLoader workers, the memory-mapped columns and the encoded split cache of the training code."""

from __future__ import annotations

import io
import pickle
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
from torch.utils.data import DataLoader

from cvil.inputs.alignment import KDSelection
from cvil.inputs.collate import Batch, ExampleBatch, collate
from cvil.inputs.dataset import VQADataset
from cvil.train.data_setup import to_device

DIM = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny synthetic world's rows and tokenizers over a packed store of DIM-d features (fp16)."""
    from bench.throughput.world import make_world

    return make_world(DIM, root=tmp_path_factory.mktemp("batch_path"))


def _dataset(world, kd=None, lang="ja", **kw):
    return VQADataset(world.rows, world.student_tokenizer, world.store, world.num_labels, lang, 50,
                      teacher_tokenizer=world.teacher_tokenizer if kd is not None else None, kd=kd, **kw)


def _chunks(n: int, size: int, stride: int = 1):
    order = list(range(0, n, stride)) + list(range(1, n, stride))  # not in order, both halves
    return [order[k : k + size] for k in range(0, len(order), size)]


def _assert_same_batch(old: dict, new: dict) -> None:
    assert list(old) == list(new)
    for key in old:
        assert old[key].dtype == new[key].dtype and torch.equal(old[key], new[key]), key


@pytest.mark.parametrize("kd, lang, max_text_len", [
    (KDSelection(codemix=True), "ja", 128),
    (KDSelection(codemix=True), "hi", 128),
    (KDSelection(codemix=True), "ja", 16),  # tags truncated differently once the question is mixed: a fresh walk
    (KDSelection(codemix=True, cls=False, image=False), "ja", 20),
    (KDSelection(codemix=True, tags=False, fix_continuation_overrun=True), "ja", 128),
    (KDSelection(), "ja", 128),
    (None, "ja", 128),
])
def test_batch_path_gives_the_per_example_batches(world, kd, lang, max_text_len):
    ds = _dataset(world, kd, lang, max_text_len=max_text_len, seed=3)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for chunk in _chunks(len(ds), 32, stride=2):
            old = collate([ds[i] for i in chunk])
            batch = ds.__getitems__(chunk)
            assert isinstance(batch, ExampleBatch) and batch.img_feats.dtype == torch.float16  # the store's fp16
            new = collate(batch)
            assert torch.equal(new["img_feats"].float(), old["img_feats"])
            _assert_same_batch(old, to_device(new, torch.device("cpu")))  # widened on the device: the same values
            _assert_same_batch(collate(list(batch)), old)  # an ExampleBatch indexes into the per-example dicts
    assert collate(ds.__getitems__([0, -1]))["question_ids"].tolist() == [ds[0]["question_id"], ds[-1]["question_id"]]
    with pytest.raises(IndexError):
        ds.__getitems__([len(ds)])


def test_fixed_text_length_and_a_store_without_a_batch_reader(world):
    class PerImage:  # only `get`: batches stack it, in fp32
        def get(self, img_id, max_regions):
            return world.store.get(img_id, max_regions)

    ds = _dataset(world, KDSelection(codemix=True), seed=1)
    plain = VQADataset(world.rows, world.student_tokenizer, PerImage(), world.num_labels, "ja", 50,
                       teacher_tokenizer=world.teacher_tokenizer, kd=KDSelection(codemix=True), seed=1)
    chunk = list(range(20))
    fixed = collate(ds.__getitems__(chunk), fixed_text_len=128)
    _assert_same_batch(collate([ds[i] for i in chunk], fixed_text_len=128), to_device(fixed, torch.device("cpu")))
    assert plain.__getitems__(chunk).img_feats.dtype == torch.float32
    _assert_same_batch(collate([ds[i] for i in chunk]), collate(plain.__getitems__(chunk)))
    with pytest.raises(ValueError, match="fixed_text_len=4"):
        collate(ds.__getitems__(chunk), fixed_text_len=4)


def test_the_dataloader_uses_the_batch_path_and_persistent_workers_follow_set_epoch(world):
    ds = _dataset(world, KDSelection(codemix=True), seed=5)
    chunks = _chunks(len(ds), 16)
    loader = DataLoader(ds, batch_sampler=chunks, num_workers=2, persistent_workers=True, collate_fn=collate)
    seen = []
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)  # after the workers were started (epoch 0): they must see it
        got = list(loader)
        for batch, chunk in zip(got, chunks, strict=True):
            assert batch["img_feats"].dtype == torch.float16  # the batch path (the per-example one gives fp32)
            _assert_same_batch(collate([ds[i] for i in chunk]), to_device(batch, torch.device("cpu")))
        seen.append(torch.cat([b["input_ids"].flatten() for b in got]))
    assert not torch.equal(seen[0], seen[1]) or not torch.equal(seen[1], seen[2])  # draws change with the epoch


def test_the_epoch_is_shared_with_a_pickled_copy():
    """Spawned workers get the dataset pickled: the copy reads the epoch from memory it shares with the original."""
    ds = VQADataset([], _NoTokenizer(), None, 1, "ja", 1)
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(ds._epoch)
    copy = pickle.loads(buf.getvalue())
    ds.set_epoch(7)
    assert copy.get() == 7 and ds.epoch == 7


class _NoTokenizer:
    cls_token_id, sep_token_id = 1, 2

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[] for _ in texts]}


def test_a_batch_crosses_processes_as_two_buffers_and_arrives_as_a_dict():
    batch = Batch(input_ids=torch.arange(6).reshape(2, 3), mask=torch.ones(2, 5, dtype=torch.long),
                  img_feats=torch.rand(4, 50, 2054).half(), labels=torch.rand(2, 7), empty=torch.zeros(0, 3))
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(batch)
    back = pickle.loads(buf.getvalue())
    assert type(back) is dict and list(back) == list(batch)
    for key in batch:
        assert back[key].dtype == batch[key].dtype and torch.equal(back[key], batch[key])
    small = [back[k].untyped_storage().data_ptr() for k in ("input_ids", "mask", "labels")]
    assert len(set(small)) == 1  # one packed buffer for the small tensors


def test_columns_saved_and_memory_mapped_serve_the_same_batches(world, tmp_path):
    for kd in (KDSelection(codemix=True), KDSelection(), None):
        ds = _dataset(world, kd, seed=2)
        ds.save_columns(tmp_path / str(kd), extra={"note": 1})
        mapped = VQADataset.from_columns(tmp_path / str(kd), world.student_tokenizer, world.store, world.num_labels,
                                         "ja", 50, teacher_tokenizer=world.teacher_tokenizer if kd else None, kd=kd,
                                         seed=2)
        assert len(mapped) == len(ds)
        for epoch in (0, 4):
            ds.set_epoch(epoch)
            mapped.set_epoch(epoch)
            for chunk in _chunks(len(ds), 32)[:3]:
                _assert_same_batch(collate(ds.__getitems__(chunk)), collate(mapped.__getitems__(chunk)))
                _assert_same_batch(collate([ds[i] for i in chunk]), collate([mapped[i] for i in chunk]))
        if kd is not None and kd.codemix:
            assert mapped._plans[5] == ds._plans[5]
    with pytest.raises(ValueError, match="saved with"):
        VQADataset.from_columns(tmp_path / str(None), world.student_tokenizer, world.store, world.num_labels, "ja",
                                50, max_text_len=64)


def test_the_training_code_opens_a_split_from_the_encoded_cache(world, monkeypatch, caplog):
    import numpy as np

    import cvil.train.data_setup as data_setup
    from cvil.config import DataConfig, KDConfig, StageConfig
    from cvil.train.distributed import DistInfo

    folder = world.root / "vqa"  # the synthetic world's dataset folder (per-image features: packed on first use)
    common = dict(folder=folder, stage=StageConfig(name="kd", dataset="vqa", lang="ja", objective="kd"),
                  data=DataConfig(root=str(world.root)), dist=DistInfo(), kd=KDConfig(codemix=True), seed=0,
                  tokenizer=world.student_tokenizer, teacher_tokenizer=world.teacher_tokenizer)
    cold, info = data_setup.split_dataset("train", **common)
    entries = sorted(p.name for p in data_setup.encoded_cache_dir(folder).iterdir() if not p.name.startswith("."))
    assert len(entries) == 1 and entries[0].startswith("train-")
    reads = []
    monkeypatch.setattr(data_setup, "read_qla", lambda *a, **k: reads.append(a) or pytest.fail("parsed"))
    warm, warm_info = data_setup.split_dataset("train", **common)
    assert not reads and warm_info == info and warm.row_identity == info.key_description
    assert isinstance(warm._ids.flat, np.ndarray) and not warm._ids.flat.flags.writeable  # memory-mapped
    for epoch in (0, 1):
        cold.set_epoch(epoch)
        warm.set_epoch(epoch)
        chunk = list(range(0, len(cold), 3))[:32]
        _assert_same_batch(collate(cold.__getitems__(chunk)), collate(warm.__getitems__(chunk)))
    monkeypatch.undo()
    # another text length is another key; a cache that cannot be written leaves the split in memory
    monkeypatch.setattr(VQADataset, "save_columns", lambda *a, **k: (_ for _ in ()).throw(OSError("read-only")))
    other = {**common, "data": DataConfig(root=str(world.root), max_text_len=64)}
    with caplog.at_level("WARNING", logger="cvil.train.data_setup"):
        in_memory, _ = data_setup.split_dataset("train", **other)
    assert "could not write the encoded cache" in caplog.text and len(in_memory) == len(cold)


def test_a_feature_loader_reads_the_features_in_the_main_process(world, monkeypatch):
    """`FeatureLoader` with workers gives the batches it gives without (same tensors, dtypes and key order, over
    epochs of persistent workers), and its workers never read a region feature: their batches name the images
    (`PendingFeatures`) and the main process reads them from the packed store (issue 27)."""
    from torch.utils.data import get_worker_info

    from cvil.data.feature_store import PackedFeatureStore
    from cvil.inputs.collate import PendingFeatures
    from cvil.inputs.loader import FeatureLoader

    real = PackedFeatureStore.get_batch

    def main_only(self, *args, **kwargs):
        assert get_worker_info() is None, "a DataLoader worker read region features"
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PackedFeatureStore, "get_batch", main_only)  # forked workers inherit it
    ds = _dataset(world, KDSelection(codemix=True), seed=4)
    assert isinstance(ds.features, PackedFeatureStore)
    chunks = _chunks(len(ds), 16)

    def epochs(workers: int) -> list[dict]:
        loader = FeatureLoader(ds, batch_sampler=chunks, num_workers=workers, persistent_workers=workers > 0,
                               collate_fn=collate)
        assert loader.reads_features == (workers > 0)
        got = []
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            got += list(loader)
        return got

    for plain, loaded in zip(epochs(0), epochs(2), strict=True):
        assert loaded["img_feats"].dtype == torch.float16
        _assert_same_batch(plain, loaded)
    raw = next(iter(DataLoader.__iter__(FeatureLoader(ds, batch_sampler=chunks, num_workers=1, collate_fn=collate))))
    assert raw["img_feats"] == PendingFeatures([int(i) for i in ds.img_ids[chunks[0]]], 50)
    assert not ds.features_in_main  # set in the workers' copies only

    ids = [int(i) for i in ds.img_ids[:4]]
    dirty = torch.full((4, 50, DIM), float("nan"), dtype=torch.float16)  # `out` need not be zero-filled
    assert torch.equal(real(ds.features, ids, 50, torch.float16, out=dirty)[0], ds.read_features(ids)[0])

    class PerImage:  # no batch reader: workers read the features as before
        def get(self, img_id, max_regions):
            return world.store.get(img_id, max_regions)

    per_image = VQADataset(world.rows, world.student_tokenizer, PerImage(), world.num_labels, "ja", 50)
    assert not FeatureLoader(per_image, num_workers=2).reads_features
