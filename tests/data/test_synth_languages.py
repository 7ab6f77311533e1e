"""A third language in the synthetic world (`cvil synth --preset tiny+zh`): its fields come from its own random stream
and lexicon, the Japanese and Hindi fields stay those of the world without it, and the default world is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvil.data import layout
from cvil.data.qla import read_qla
from cvil.data.synth.lexicon import EXTRA_LEXICONS, VQA_TEMPLATES
from cvil.data.synth.presets import get_preset
from cvil.data.synth.writer import generate
from cvil.data.text import english_words, target_words
from cvil.errors import UsageError

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth_lang")
    generate("tiny", 0, root / "tiny")
    generate("tiny+zh", 0, root / "tiny_zh")
    return root / "tiny", root / "tiny_zh"


def _rows(world: Path, split: str) -> list[dict]:
    return json.loads(layout.qla_path(world / "vqa", split).read_text(encoding="utf-8"))


def test_the_added_language_leaves_every_other_field_and_the_default_world_as_they_were(worlds):
    tiny, tiny_zh = worlds
    for split in SPLITS:
        plain, with_zh = _rows(tiny, split), _rows(tiny_zh, split)
        assert len(plain) == len(with_zh)
        for a, b in zip(plain, with_zh):
            assert list(b)[: len(a)] == list(a) and list(b)[len(a):] == ["zh", "zh-en", "gold-zh-en"]
            assert {k: b[k] for k in a} == a  # ja / hi fields and their random draws unchanged
    assert "languages" not in json.loads((tiny / "world.json").read_text())
    manifest = json.loads((tiny_zh / "world.json").read_text())
    assert manifest["preset"] == "tiny+zh" and manifest["languages"] == ["zh"]
    for folder in ("vg", "tokenizers/teacher"):  # only the VQA files and the student tokenizer see Chinese
        for path in sorted((tiny / folder).rglob("*")):
            if path.is_file():
                assert path.read_bytes() == (tiny_zh / path.relative_to(tiny)).read_bytes(), path
    vocab = (tiny_zh / "tokenizers" / "student" / "vocab.txt").read_text(encoding="utf-8").split()
    assert {"猫", "颜", "哪"} <= set(vocab)


def test_chinese_rows_are_char_segmented_with_gold_and_reference_alignments(worlds):
    _, tiny_zh = worlds
    rows = _rows(tiny_zh, "train")
    noisy = 0
    for row in rows:
        words = [e[0] for e in row["zh-en"]]
        assert tuple(words) == target_words(row["zh"], "zh") and all(len(w) == 1 for w in words)
        en = english_words(row["en"])
        for t, e in row["gold-zh-en"]:
            assert 0 <= t < len(words) and 0 <= e < len(en)
        gold = {t: e for t, e in row["gold-zh-en"]}
        for t, entry in enumerate(row["zh-en"]):
            if len(entry) == 3:
                assert entry[1] == en[int(entry[2])]
                noisy += gold.get(t) != int(entry[2])
    assert 0 < noisy < sum(len(r["gold-zh-en"]) for r in rows) * 0.2  # aligner-like noise, as ja-en / hi-en
    q = read_qla(layout.qla_path(tiny_zh / "vqa", "train"))
    assert {"en", "ja", "hi", "zh"} <= set(q.languages) and q.rows[0].alignments["zh"]
    colour = next(r for r in rows if r["en"].startswith("what color is the"))
    assert colour["zh"].endswith("是什么颜色的？")


def test_every_template_has_a_chinese_rendering():
    zh = EXTRA_LEXICONS["zh"]
    assert {t.en for t in VQA_TEMPLATES} == set(zh.templates)
    assert set(zh.classes) == set(zh.counters)


def test_an_unknown_added_language_or_preset_is_refused_with_a_suggestion():
    assert get_preset("small+zh").languages == ("zh",) and get_preset("small").languages == ()
    with pytest.raises(UsageError, match=r"tiny\+zx: unknown language of the synthetic lexicon 'zx'; did you mean 'zh'"):
        get_preset("tiny+zx")
    with pytest.raises(UsageError, match="unknown synth preset 'tny'; did you mean 'tiny'"):
        get_preset("tny+zh")
    with pytest.raises(UsageError, match="names a language twice"):
        get_preset("tiny+zh+zh")
