"""World v3: the teacher's English-only corpus, the knobs of its experiment, and world v2 kept as `small-v2`."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from cvil.data import layout
from cvil.data.synth.presets import PRESETS, get_preset
from cvil.data.synth.writer import PRETRAIN, generate
from cvil.errors import UsageError
from cvil.world import PRETRAIN_TEACHER_CONFIG, TEACHER_CONFIG, check_world_matches, teacher_config


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("v3")
    out = {}
    for name in ("tiny", "tiny@teacher=40"):
        out[name] = base / name
        generate(name, 0, out[name])
    return out


def test_the_students_files_do_not_depend_on_the_teacher_s_corpus(worlds):
    """Only the teacher changes along the knob: the translated set, the JVG-like set and the student tokenizer are
    byte-identical; the teacher's tokenizer also knows the corpus's words."""
    plain, with_corpus = worlds["tiny"], worlds["tiny@teacher=40"]
    for folder in ("vqa", "vg", "tokenizers/student"):
        assert _hashes(plain / folder) == _hashes(with_corpus / folder), folder
    assert not (plain / PRETRAIN).exists() and PRETRAIN not in json.loads((plain / "world.json").read_text())
    teacher_vocab = (with_corpus / "tokenizers" / "teacher" / "vocab.txt").read_text().split()
    assert {"big", "size"} <= set(teacher_vocab)
    assert "size" not in (plain / "tokenizers" / "teacher" / "vocab.txt").read_text().split()


def test_the_corpus_is_english_only_vqa_format_with_its_own_labels(worlds):
    root = worlds["tiny@teacher=40"] / PRETRAIN
    rows = json.loads(layout.qla_path(root, "train").read_text())
    assert len({r["img_id"] for r in rows}) == 40
    assert all(set(r) == {"en", "o", "an", "s", "img_id", "q_id", "answer_type", "question_type"} for r in rows)
    assert len({r["q_id"] for r in rows}) == len(rows)
    vqa_images = {r["img_id"] for s in layout.SPLITS for r in json.loads(layout.qla_path(root.parent / "vqa", s).read_text())}
    assert not vqa_images & {r["img_id"] for r in rows}  # scenes no student ever sees
    types = Counter(r["question_type"] for r in rows)
    assert types["how big is the"] + types["what size is the"] > 0  # sizes: only the teacher is asked about them
    assert (root / layout.ANS2LABEL).is_file() and layout.feature_dir(root, "val").is_dir()
    manifest = json.loads((root.parent / "world.json").read_text())
    assert manifest[PRETRAIN]["splits"]["train"]["images"] == 40 and manifest["preset"] == "tiny@teacher=40"


def test_the_teacher_pre_trains_where_the_world_has_a_corpus(worlds):
    assert teacher_config(worlds["tiny@teacher=40"]) == PRETRAIN_TEACHER_CONFIG
    assert teacher_config(worlds["tiny"]) == TEACHER_CONFIG


def test_knobs_set_train_images_and_bad_knobs_are_one_line_errors():
    p = get_preset("small@teacher=0,mvqa=2000,jvg=300")
    assert (p.teacher_images, p.vqa_images["train"], p.vqa_images["val"], p.jvg_images["train"]) == ({}, 2000, 250, 300)
    assert get_preset("tiny@teacher=90").teacher_images == {"train": 90, "val": 3}
    assert get_preset("small+zh@teacher=0").languages == ("zh",)
    for bad, says in (("small@teachr=5", "did you mean 'teacher'"), ("small@mvqa=0", "at least 1"),
                      ("small@teacher=-1", "whole number"), ("small@teacher", "whole number")):
        with pytest.raises(UsageError, match=says):
            get_preset(bad)


def test_world_v2_is_kept_as_small_v2_and_v3_only_adds_the_corpus_and_halves_the_translated_set():
    v2, v3 = PRESETS["small-v2"], PRESETS["small"]
    assert v2.vqa_images == {"train": 2000, "val": 250, "test": 250} and not v2.teacher_images
    assert v3.vqa_images["train"] == 1000 and v3.teacher_images["train"] >= 6 * v3.vqa_images["train"]
    assert {f: getattr(v2, f) for f in v2.__dataclass_fields__ if f not in ("name", "vqa_images", "teacher_images")} \
        == {f: getattr(v3, f) for f in v3.__dataclass_fields__ if f not in ("name", "vqa_images", "teacher_images")}


def test_a_world_of_another_generator_version_is_refused(worlds, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((worlds["tiny"] / "world.json").read_text())
    (old / "world.json").write_text(json.dumps({**manifest, "generator_version": "1.1"}))
    with pytest.raises(UsageError, match=r"generator '1.1'.*small-v2"):
        check_world_matches(old, "tiny", 0)
    check_world_matches(worlds["tiny"], "tiny", 0)


def test_validate_checks_the_corpus_beside_vqa_and_vg(worlds):
    from cvil.data.validate import dataset_folders, validate_dataset

    root = worlds["tiny@teacher=40"]
    assert [p.name for p in dataset_folders(root)] == ["vqa", "vg", PRETRAIN]
    report = validate_dataset(root / PRETRAIN)
    assert not report.errors and [s.name for s in report.splits] == ["train", "val"]
