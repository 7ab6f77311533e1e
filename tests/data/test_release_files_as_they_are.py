"""The released files as they are: train/val rows with `q_id: 0` (VQA) or no `q_id` (JVG), val with upstream `q`.

The release reads `q_id` only for test sets (`task_utils.py:_create_examples`), so real train/val rows carry none that
means anything; every reader, the teacher cache, final evaluation and predictions must key them by position (with
the file's digest) instead. The fixture (tests/fixtures/release_format) is checked property by property against
reference §4.2-§4.6, then trained on (online and cached teacher), evaluated and predicted.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cvil.data import layout
from cvil.data.label_maps import load_label_maps
from cvil.data.qla import KEY_POSITION, KEY_Q_ID, read_qla, read_unknown
from cvil.data.errors import DataFormatError
from cvil.data.validate import format_report, validate_dataset

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_format"
REPO = Path(__file__).resolve().parents[2]


def _raw(folder: str, name: str) -> list[dict]:
    return json.loads((FIXTURE / folder / name).read_text(encoding="utf-8"))


def _qla(folder: str, split: str) -> list[dict]:
    return _raw(folder, layout.qla_path(".", split).name)


# ------------------------------------------------------------------------------------ the fixture is the reference
def test_fixture_has_every_property_of_reference_4_2_to_4_6():
    vqa = {split: _qla("vqa", split) for split in layout.SPLITS}
    vg = {split: _qla("vg", split) for split in layout.SPLITS}
    unknown = _raw("vg", layout.unknown_path(".").name)
    # §4.2 q_id "only read for test sets (it is 0 otherwise!)"
    assert all(r["q_id"] == 0 for split in ("train", "val") for r in vqa[split])
    # §4.6 JVG rows carry ja, o, an, s, img_id, "and q_id for test"
    assert all("q_id" not in r for split in ("train", "val") for r in vg[split])
    for rows in (vqa["test"], vg["test"], unknown):
        ids = [r["q_id"] for r in rows]
        assert all(isinstance(q, int) and q for q in ids) and len(set(ids)) == len(ids)
    # §4.2 questions per language; upstream Oscar uses `q` instead of `en`
    assert all("q" in r and "en" not in r for r in vqa["val"])
    assert all("en" in r for r in vqa["train"] + vqa["test"])
    assert all({"ja", "hi"} <= set(r) for rows in vqa.values() for r in rows)
    assert all(set(r) == {"ja", "o", "an", "s", "img_id"} for s in ("train", "val") for r in vg[s])
    # `o` a ';'-separated string; '' (test rows) and ';' both occur
    tags = [r["o"] for rows in (*vqa.values(), *vg.values()) for r in rows]
    assert all(isinstance(t, str) for t in tags) and "" in tags and ";" in tags
    # `an` label ids with one soft score each; multi-answer VQA scores; JVG one id with s == [1.0]
    for rows in (*vqa.values(), *vg.values()):
        assert all(len(r["an"]) == len(r["s"]) and all(isinstance(a, int) for a in r["an"]) for r in rows)
    assert any(len(r["an"]) > 1 for r in vqa["train"] + vqa["val"])
    assert all(r["s"] == [1.0] and len(r["an"]) == 1 for s in ("train", "val", "test") for r in vg[s] if r["an"])
    # train/val rows with empty `an` (the coverage filter drops them); test rows keep `an: [], s: []`
    assert any(not r["an"] for r in vqa["train"]) and any(not r["an"] for r in vg["train"] + vg["val"])
    assert all(r["an"] == [] and r["s"] == [] for r in vqa["test"])
    # alignments: [tgt, en, en_idx] or shorter (unaligned), en_idx sometimes a string
    entries = [e for rows in vqa.values() for r in rows for k in ("ja-en", "hi-en") for e in r[k]]
    assert any(len(e) < 3 for e in entries) and any(len(e) == 3 and isinstance(e[2], str) for e in entries)
    # §4.6 the test-dev file holds the covered (labelled) test rows; `.unknown` all test rows with answer strings
    assert all(r["an"] for r in vg["test"]) and {r["q_id"] for r in vg["test"]} < {r["q_id"] for r in unknown}
    assert all(isinstance(r["answer"], str) for r in unknown) and any(not r["an"] for r in unknown)
    # §4.3 label files: ans2label a dict, label2ans a list (VQA) or an int-keyed dict (JVG)
    assert load_label_maps(FIXTURE / "vqa").num_labels == 6 and load_label_maps(FIXTURE / "vg").num_labels == 3
    # §4.4 one float32 [n, 2054] file per image and split, the last 6 dims in [0, 1]
    for folder, splits in (("vqa", vqa), ("vg", vg)):
        for split, rows in splits.items():
            for img in {r["img_id"] for r in rows}:
                feats = torch.load(layout.feature_dir(FIXTURE / folder, split) / f"{img}.pt", weights_only=True)
                assert feats.dtype == torch.float32 and feats.shape[1] == 2054
                assert (feats[:, -6:] >= 0).all() and (feats[:, -6:] <= 1).all()


# ------------------------------------------------------------------------------------------------- row identity
def test_train_and_val_rows_are_keyed_by_position_test_rows_by_q_id():
    for folder in ("vqa", "vg"):
        for split in ("train", "val"):
            qla = read_qla(layout.qla_path(FIXTURE / folder, split))
            assert qla.key_source == KEY_POSITION and qla.key_description == f"position@{qla.digest[:12]}"
            assert [r.key for r in qla.rows] == qla.file_indices()  # positions in the file, dropped rows skipped
        test = read_qla(layout.qla_path(FIXTURE / folder, "test"), drop_empty=False)
        assert test.key_source == KEY_Q_ID and [r.key for r in test.rows] == [r.q_id for r in test.rows]
    assert read_unknown(layout.unknown_path(FIXTURE / "vg")).key_source == KEY_Q_ID
    assert read_qla(layout.qla_path(FIXTURE / "vqa", "val")).rows[0].questions["en"] == "Is there a dog?"


def test_unique_non_zero_q_ids_key_a_train_file_and_any_gap_falls_back_to_positions(tmp_path):
    row = {"en": "a?", "o": "", "an": [0], "s": [1.0], "img_id": 1}
    path = tmp_path / "train2014_qla_mrcnn.json"
    for ids, source in (([5, 6, 7], KEY_Q_ID), ([5, 5, 7], KEY_POSITION), ([5, 0, 7], KEY_POSITION),
                        ([5, None, 7], KEY_POSITION)):
        path.write_text(json.dumps([dict(row, **({} if q is None else {"q_id": q})) for q in ids]))
        qla = read_qla(path)
        assert qla.key_source == source, ids
        assert [r.key for r in qla.rows] == (ids if source == KEY_Q_ID else [0, 1, 2])


@pytest.mark.parametrize("name", ["test-dev2015_qla_mrcnn.json", "test-dev2015_qla_mrcnn.json.unknown"])
def test_test_files_still_need_unique_q_ids(tmp_path, name):
    row = {"ja": "a", "o": "", "an": [], "s": [], "img_id": 1, "answer": "x"}
    path = tmp_path / name
    path.write_text(json.dumps([dict(row, q_id=3), dict(row, q_id=3)]))
    with pytest.raises(DataFormatError, match=r"row 1 field 'q_id'.*a q_id used by one row only"):
        read_unknown(path) if name.endswith(".unknown") else read_qla(path, drop_empty=False)
    path.write_text(json.dumps([row]))
    with pytest.raises(DataFormatError, match=r"row 0: expected field\(s\) q_id"):
        read_unknown(path) if name.endswith(".unknown") else read_qla(path, drop_empty=False)


@pytest.mark.parametrize("dataset", ["vqa", "vg"])
def test_validate_accepts_the_released_files_and_says_how_rows_are_keyed(dataset):
    report = validate_dataset(FIXTURE / dataset)
    assert report.ok, report.errors
    keys = {s.name: s.row_keys for s in report.splits}
    assert keys["train"].startswith("position@") and keys["val"].startswith("position@") and keys["test"] == "q_id"
    assert "rows keyed by their position in the file" in format_report(report)


def test_pairing_refuses_per_question_scores_keyed_by_different_files():
    import pandas as pd

    from bench.stats.by_metric import compare_frames

    def frame(keys: str):
        return pd.DataFrame({"question_id": [0, 1, 2], "score": [1.0, 0.0, 1.0], "row_keys": keys}).set_index(
            "question_id")

    with pytest.raises(ValueError, match="keyed differently"):
        compare_frames({"0": frame("position@aaa")}, {"0": frame("position@bbb")}, n_resamples=99, aso=False)
    result = compare_frames({"0": frame("position@aaa")}, {"0": frame("position@aaa")}, n_resamples=99, aso=False)
    assert result.n == 3


# ---------------------------------------------------------------------------------------- train, cache, predict
SHAPE = "{hidden_size: 16, num_hidden_layers: 4, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64}"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A private copy of the fixture, a tiny student init and an Oscar-format teacher on its real BERT vocab."""
    from cvil.config import load_config
    from cvil.models.checkpoint import save_oscar_checkpoint
    from cvil.models.config import oscar_config
    from cvil.models.oscar import OscarVQA
    from cvil.models.student_init import make_student_init

    root = tmp_path_factory.mktemp("release")
    data = Path(shutil.copytree(FIXTURE, root / "data"))
    tok = data / "bert-base-uncased"
    shape = load_config(None, [f"model.from_scratch={SHAPE}"]).model.from_scratch
    init = make_student_init(root / "init", tok, seed=0, **shape)
    vocab = len((tok / "vocab.txt").read_text(encoding="utf-8").splitlines())
    torch.manual_seed(0)
    teacher = OscarVQA(oscar_config(img_feature_dim=2054, num_labels=6, vocab_size=vocab, **shape))
    save_oscar_checkpoint(teacher, root / "teacher", vocab_file=tok)
    return {"root": root, "data": data, "tok": tok, "init": init, "teacher": root / "teacher"}


def _kd_overrides(release, out, *extra):
    return [f"data.root={release['data']}", f"model.init={release['init']}", f"model.tokenizer={release['tok']}",
            f"kd.teacher={release['teacher']}", f"kd.teacher_tokenizer={release['tok']}", f"output_dir={out}", "tracking.enabled=false", "data.max_regions=50",
            "data.batch_size=2", "train.checkpoint_every=1",
            "stages=[{name: kd, dataset: vqa, lang: ja, epochs: 2, lr: 1.0e-3, objective: kd, select: val_kd_loss}]",
            "evaluate=[]", *extra]


@pytest.mark.slow
def test_kd_on_the_released_files_online_and_cached_teacher_agree(release, tmp_path):
    """KD with code-mixing on train rows that all carry `q_id: 0`: the online run, `cvil kd-cache`, and a run served
    from that cache end with the same weights (the cache is keyed by position and pinned to the file's digest)."""
    from cvil.config import load_config
    from cvil.distill.teacher_cache import TeacherCache, TeacherCacheError
    from cvil.train.api import run
    from cvil.train.kd_cache import build_kd_cache
    from cvil.world import CONFIG_DIR
    from safetensors.torch import load_file

    config = CONFIG_DIR / "synthetic" / "kd.yaml"
    run(load_config(config, _kd_overrides(release, tmp_path / "online")))
    manifests = build_kd_cache(config=config, out=tmp_path / "cache",
                               overrides=_kd_overrides(release, tmp_path / "unused"))
    train_file = read_qla(layout.qla_path(release["data"] / "vqa", "train"))
    assert manifests["train"]["question_ids"] == [0, 1]  # positions; row 2 has no label and is dropped
    assert manifests["train"]["row_keys"] == train_file.key_description
    run(load_config(config, _kd_overrides(release, tmp_path / "cached", f"kd.teacher_cache={tmp_path / 'cache'}")))
    a = load_file(tmp_path / "online" / "final" / "model.safetensors")
    b = load_file(tmp_path / "cached" / "final" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-3)  # the cache stores fp16
    # the same positions of another file are refused, even though the ids agree
    with pytest.raises(TeacherCacheError, match="keys its rows by position@.* by position@"):
        TeacherCache(tmp_path / "cache" / "train", expected_question_ids=[0, 1], expected_row_keys="position@000000000000")


@pytest.mark.slow
def test_final_eval_and_predict_key_val_by_position_and_test_by_q_id(release, tmp_path):
    """A tiny JVG run: val (no q_id) is scored through the label map keyed by position; `cvil predict` writes the
    EvalAI file for test by q_id; the per-question files say how they were keyed."""
    from cvil.config import load_config
    from cvil.train.api import run
    from cvil.world import CONFIG_DIR

    out = tmp_path / "run"
    run(load_config(CONFIG_DIR / "synthetic" / "baseline.yaml", [
        f"data.root={release['data']}", f"model.init={release['init']}", f"model.tokenizer={release['tok']}",
        f"output_dir={out}", "tracking.enabled=false", "data.max_regions=50", "data.batch_size=2",
        "evaluate=[val, test]", "stages=[{name: s, dataset: vg, lang: ja, epochs: 1, lr: 1.0e-3}]"]))
    with open(out / "predictions" / "val_per_question.csv", encoding="utf-8") as f:
        val = list(csv.DictReader(f))
    val_file = read_qla(layout.qla_path(release["data"] / "vg", "val"), drop_empty=False)
    assert [(int(r["question_id"]), r["ground_truth"]) for r in val] == [(0, "白"), (1, "草の上")]
    assert {r["row_keys"] for r in val} == {val_file.key_description}
    proc = subprocess.run([sys.executable, "-m", "cvil", "predict", "--checkpoint", str(out), "--split", "test",
                           "--out", str(tmp_path / "test_results.json")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "test_results.json").read_text(encoding="utf-8"))
    assert sorted(r["question_id"] for r in results) == [2341000, 2341001, 2342000]
