"""The offline teacher cache: round trip, integrity errors, and the same KD loss as the online teacher."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from cvil.inputs.collate import collate
from cvil.inputs.alignment import KDSelection
from cvil.distill.kd_losses import distillation_loss
from cvil.distill.teacher import FrozenTeacher
from cvil.distill.teacher_cache import (
    MANIFEST,
    TeacherCache,
    TeacherCacheError,
    build_teacher_cache,
    config_hash,
)
from cvil.models.config import oscar_config
from cvil.models.oscar import OscarVQA

SHAPE = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=64)
KD_LAYERS = (3, 6, 9, 12)  # -> teacher layers 1..4 on the 4-layer tiny models
R = 50


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny synthetic world's VQA train split as a KD dataset, with a teacher and a student of the tiny shape.

    The teacher's weights are random (seeded): the cache's contract is about its outputs, not their quality.
    """
    from cvil.data.synth.writer import generate
    from cvil.data.label_sets import label_maps
    from cvil.data.tokenizers import load_tokenizer
    from cvil.train.data_setup import feature_store, split_rows
    from cvil.train.distributed import DistInfo
    from cvil.inputs.dataset import VQADataset

    root = tmp_path_factory.mktemp("cache_world") / "tiny"
    generate("tiny", 0, root)
    folder = root / "vqa"
    t_tok, s_tok = load_tokenizer(root / "tokenizers" / "teacher"), load_tokenizer(root / "tokenizers" / "student")
    n_labels = len(label_maps(folder))
    dim = json.loads((root / "world.json").read_text())["feature_dim"]
    rows = split_rows(folder, "train").rows[:48]
    ds = VQADataset(rows, s_tok, feature_store(folder, "train", DistInfo()), n_labels, "ja", R,
                    teacher_tokenizer=t_tok, kd=KDSelection(codemix=True), seed=3, max_text_len=40)
    torch.manual_seed(0)
    teacher = OscarVQA(oscar_config(img_feature_dim=dim, num_labels=n_labels, vocab_size=len(t_tok), **SHAPE)).eval()
    student = OscarVQA(oscar_config(img_feature_dim=dim, num_labels=n_labels, vocab_size=len(s_tok), **SHAPE)).eval()
    return {"dataset": ds, "teacher": teacher, "student": student}


@pytest.fixture(scope="module")
def cache_dir(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher_cache")
    build_teacher_cache(world["teacher"], world["dataset"], out, KD_LAYERS, batch_size=16, shard_size=20,
                        teacher_path="tiny/teacher")
    return out


@pytest.fixture
def copy_of(cache_dir, tmp_path):
    def _copy():
        dst = tmp_path / "cache"
        shutil.copytree(cache_dir, dst)
        return dst
    return _copy


def _batches(dataset, order, size=8):
    return [collate([dataset[i] for i in order[k:k + size]]) for k in range(0, len(order), size)]


def test_manifest_describes_the_cache(cache_dir, world):
    m = json.loads((cache_dir / MANIFEST).read_text())
    ds = world["dataset"]
    assert m["count"] == len(ds) == len(m["question_ids"]) == len(m["text_lengths"])
    assert m["question_ids"] == [int(q) for q in ds.question_ids]
    assert (m["layers"], m["teacher_layers"], m["dtype"]) == (list(KD_LAYERS), [1, 2, 3, 4], "float16")
    assert (m["hidden_size"], m["max_regions"]) == (32, R)
    assert len(m["shards"]) == 3 and all(len(s["sha256"]) == 64 for s in m["shards"])
    assert m["teacher"] == {"path": "tiny/teacher", "config_hash": config_hash(world["teacher"].config)}
    assert len(m["content_hash"]) == 64
    # rows are trimmed to the true text length + all R image slots
    first = load_file(str(cache_dir / m["shards"][0]["file"]))
    q0, len0 = m["question_ids"][0], m["text_lengths"][0]
    assert first[f"{q0}.h4"].shape == (len0 + R, 32) and first[f"{q0}.h4"].dtype == torch.float16


def test_round_trip_matches_the_online_teacher_in_any_batch_order(cache_dir, world):
    ds = world["dataset"]
    cache = TeacherCache(cache_dir, expected_question_ids=ds.question_ids, teacher_config=world["teacher"].config)
    assert len(cache) == len(ds)
    teacher = FrozenTeacher(world["teacher"])
    order = list(range(len(ds)))[::-1]  # a different order than the build: pairing is by question id
    for batch in _batches(ds, order):
        online = teacher(batch).hidden_states
        cached = cache.hidden_states_for(batch, layers=KD_LAYERS)
        assert len(cached) == len(online) == 5 and cached[0] is None
        t_t = batch["teacher_input_ids"].shape[1]
        text_mask = batch["teacher_attention_mask"][:, :t_t].bool()
        for layer in (1, 2, 3, 4):
            assert cached[layer].dtype == torch.float32 and cached[layer].shape == online[layer].shape
            real = torch.cat([text_mask, torch.ones_like(batch["teacher_attention_mask"][:, t_t:]).bool()], 1)
            torch.testing.assert_close(cached[layer][real], online[layer][real], rtol=1e-3, atol=2e-3)
            assert not cached[layer][~real].any()  # text padding stays zero (never distilled)


def test_cached_kd_loss_equals_the_online_loss_within_fp16_rounding(cache_dir, world):
    ds, student = world["dataset"], world["student"]
    cache = TeacherCache(cache_dir)
    teacher = FrozenTeacher(world["teacher"])
    for epoch in (0, 1):  # code-mixing changes the student side per epoch, never the teacher's
        ds.set_epoch(epoch)
        for batch in _batches(ds, list(range(len(ds))), size=16):
            with torch.no_grad():
                s_hidden = student(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                                   batch["img_feats"], output_hidden_states=True).hidden_states
            for reduction in ("pooled", "per_component"):
                online = distillation_loss(s_hidden, teacher(batch).hidden_states, batch, layers=KD_LAYERS,
                                           reduction=reduction)
                cached = distillation_loss(s_hidden, cache.hidden_states_for(batch), batch, layers=KD_LAYERS,
                                           reduction=reduction)
                # fp16 keeps 11 significant bits: relative rounding <= 2^-11 per stored element
                torch.testing.assert_close(cached.total, online.total, rtol=2e-3, atol=0.0)
                assert cached.per_layer.keys() == online.per_layer.keys()
    ds.set_epoch(0)


def test_fp32_cache_is_exact(world, tmp_path):
    ds, student = world["dataset"], world["student"]
    build_teacher_cache(world["teacher"], ds, tmp_path, (12,), batch_size=16, dtype=torch.float32)
    cache = TeacherCache(tmp_path)
    batch = collate([ds[i] for i in range(8)])
    with torch.no_grad():
        s_hidden = student(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                           batch["img_feats"], output_hidden_states=True).hidden_states
    online = distillation_loss(s_hidden, FrozenTeacher(world["teacher"])(batch).hidden_states, batch, layers=(12,))
    cached = distillation_loss(s_hidden, cache.hidden_states_for(batch), batch, layers=(12,))
    torch.testing.assert_close(cached.total, online.total, rtol=1e-6, atol=1e-7)
    with pytest.raises(TeacherCacheError, match=r"KD layers \(3, 12\).*holds teacher layers \[4\]"):
        cache.hidden_states_for(batch, layers=(3, 12))


def _rewrite_shard(path, edit):
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def test_missing_id_in_shards_is_named(copy_of):
    cache = copy_of()
    m = json.loads((cache / MANIFEST).read_text())
    gone = m["shards"][1]["question_ids"][3]
    _rewrite_shard(cache / m["shards"][1]["file"], lambda t: [t.pop(k) for k in list(t) if k.startswith(f"{gone}.")])
    with pytest.raises(TeacherCacheError, match=rf"missing 1 question id\(s\): {gone}"):
        TeacherCache(cache)


def test_extra_id_in_shards_is_named(copy_of):
    cache = copy_of()
    m = json.loads((cache / MANIFEST).read_text())
    q = m["question_ids"][0]
    _rewrite_shard(cache / m["shards"][0]["file"], lambda t: t.update({"424242.h1": t[f"{q}.h1"].clone()}))
    with pytest.raises(TeacherCacheError, match=r"extra 1 question id\(s\): 424242"):
        TeacherCache(cache)


def test_dataset_ids_missing_or_extra_are_named(cache_dir, world):
    ids = [int(q) for q in world["dataset"].question_ids]
    with pytest.raises(TeacherCacheError, match=rf"missing 1 question id\(s\): 7; extra 1 question id\(s\): {ids[-1]}"):
        TeacherCache(cache_dir, expected_question_ids=ids[:-1] + [7])


def test_wrong_shape_is_named(copy_of):
    cache = copy_of()
    m = json.loads((cache / MANIFEST).read_text())
    q = m["question_ids"][2]
    _rewrite_shard(cache / m["shards"][0]["file"], lambda t: t.update({f"{q}.h3": t[f"{q}.h3"][:-1].clone()}))
    with pytest.raises(TeacherCacheError, match=rf"question id {q} layer 3 has shape \[{m['text_lengths'][2] + R - 1}, 32\]"):
        TeacherCache(cache)


def test_wrong_dtype_is_named(copy_of):
    cache = copy_of()
    m = json.loads((cache / MANIFEST).read_text())
    q = m["question_ids"][-1]
    _rewrite_shard(cache / m["shards"][-1]["file"], lambda t: t.update({f"{q}.h2": t[f"{q}.h2"].float()}))
    with pytest.raises(TeacherCacheError, match=rf"question id {q} layer 2 is F32, but the manifest declares float16"):
        TeacherCache(cache)


def test_count_mismatch_corruption_and_teacher_mismatch(copy_of, world):
    cache = copy_of()
    m = json.loads((cache / MANIFEST).read_text())
    shard = cache / m["shards"][0]["file"]
    _rewrite_shard(shard, lambda t: t[next(iter(t))].mul_(2))  # same keys, shapes, dtype: only the hash sees it
    with pytest.raises(TeacherCacheError, match="does not match its sha256"):
        TeacherCache(cache, verify_hash=True)
    opened = TeacherCache(cache)  # structure is intact: an open reads the headers, not the bytes
    with pytest.raises(TeacherCacheError, match=rf"{m['shards'][0]['file']} does not match its sha256"):
        opened.verify()
    bad = dict(m, count=m["count"] + 1)
    (cache / MANIFEST).write_text(json.dumps(bad))
    with pytest.raises(TeacherCacheError, match=rf"count {m['count'] + 1} but {m['count']} question ids"):
        TeacherCache(cache, verify_hash=False)
    (cache / MANIFEST).write_text(json.dumps(m))
    other = oscar_config(img_feature_dim=32, num_labels=3, vocab_size=10, **SHAPE)
    with pytest.raises(TeacherCacheError, match="another config"):
        TeacherCache(cache, verify_hash=False, teacher_config=other)


def test_batch_mismatches_are_clear(cache_dir, world):
    cache = TeacherCache(cache_dir)
    batch = collate([world["dataset"][i] for i in range(4)])
    unknown = dict(batch, question_ids=torch.tensor([1, 2, 3, int(batch["question_ids"][3])]))
    with pytest.raises(TeacherCacheError, match=r"no entry for 3 question id\(s\): 1, 2, 3"):
        cache.hidden_states_for(unknown)
    with pytest.raises(TeacherCacheError, match="R=10 image slots"):
        cache.hidden_states_for(dict(batch, img_feats=batch["img_feats"][:, :10]))
    mask = batch["teacher_attention_mask"].clone()
    mask[0, 1] = 0
    with pytest.raises(TeacherCacheError, match="another teacher tokenizer"):
        cache.hidden_states_for(dict(batch, teacher_attention_mask=mask))


def test_build_refuses_bad_inputs(world, cache_dir, tmp_path):
    with pytest.raises(TeacherCacheError, match="already holds a teacher cache"):
        build_teacher_cache(world["teacher"], world["dataset"], cache_dir, KD_LAYERS, batch_size=8)
    with pytest.raises(TeacherCacheError, match="no teacher cache"):
        TeacherCache(tmp_path / "nothing")


def test_opening_a_cache_does_not_hash_its_shards(cache_dir, monkeypatch):
    import cvil.distill.teacher_cache as tc

    def no_hashing(path):
        raise AssertionError(f"hashed {path} on open")

    monkeypatch.setattr(tc, "sha256_file", no_hashing)
    assert len(TeacherCache(cache_dir)) == 48  # a training open: headers and manifest only
    with pytest.raises(AssertionError, match="hashed"):
        TeacherCache(cache_dir, verify_hash=True)


def test_build_buffer_is_capped_in_bytes(world, tmp_path):
    cap = 40_000  # bytes; a question is 4 layers x [L + R, 32] fp16, about 16 KB here
    manifest = build_teacher_cache(world["teacher"], world["dataset"], tmp_path, KD_LAYERS, batch_size=16,
                                   max_shard_bytes=cap)
    assert sum(len(s["question_ids"]) for s in manifest["shards"]) == 48 and len(manifest["shards"]) > 3
    for shard in manifest["shards"]:
        stored = load_file(str(tmp_path / shard["file"]))
        assert {t.dtype for t in stored.values()} == {torch.float16}
        per_question = [sum(t.numel() * 2 for k, t in stored.items() if k.startswith(f"{q}.h"))
                        for q in shard["question_ids"]]
        assert sum(per_question[:-1]) < cap  # the buffer is written out as soon as it reaches the cap
    TeacherCache(tmp_path, verify_hash=True)


def test_kd_cache_verify_command(cache_dir, tmp_path, capsys):
    from cvil.cli import main

    both = tmp_path / "kd"
    for split in ("train", "val"):
        shutil.copytree(cache_dir, both / split)
    assert main(["kd-cache", "--verify", "--out", str(both)]) == 0
    out = capsys.readouterr().out
    assert f"{both / 'train'}: 48 questions, every shard matches its sha256" in out and f"{both / 'val'}:" in out
    m = json.loads((both / "val" / MANIFEST).read_text())
    _rewrite_shard(both / "val" / m["shards"][1]["file"], lambda t: t[next(iter(t))].add_(1))
    assert main(["kd-cache", "--verify", "--out", str(both)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{m['shards'][1]['file']} does not match its sha256" in err[0]
    assert main(["kd-cache", "--out", str(both)]) == 2
    assert "--config is required to build a cache" in capsys.readouterr().err
