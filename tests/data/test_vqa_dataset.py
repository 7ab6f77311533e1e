"""VQADataset + collate: encodings, labels, masks, dynamic vs fixed padding, KD index tensors and selection flags."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cvil.inputs.collate import SparseLabels, collate
from cvil.inputs.encoding import encode_text
from cvil.data.qla import QLARow
from cvil.inputs.dataset import VQADataset
from cvil.inputs.alignment import (
    COMPONENT_CLS,
    COMPONENT_CODEMIX,
    COMPONENT_IMAGE,
    COMPONENT_TAG,
    KDSelection,
    tag_alignment,
    text_pairs,
)
from cvil.inputs.codemix import AlignmentFieldError

R = 5  # max_regions: image 2 has 7 regions (truncated), images 1 and 3 fewer (padded)
LABELS = 4


def _dataset(rows, student_tok, features, teacher_tok=None, kd=None, lang="ja", **kw):
    return VQADataset(rows, student_tok, features, LABELS, lang, R, teacher_tokenizer=teacher_tok, kd=kd, **kw)


def _pairs(batch) -> set[tuple[int, int, int, int]]:
    keys = ("kd_batch", "kd_student_pos", "kd_teacher_pos", "kd_component")
    return set(zip(*(batch[k].tolist() for k in keys)))


def test_plain_examples_and_batch(student_tok, features, ja_rows):
    ds = _dataset(ja_rows, student_tok, features)
    assert len(ds) == 4
    ex = ds[0]
    enc = encode_text(student_tok, ja_rows[0].questions["ja"], ja_rows[0].tags)
    assert ex["input_ids"].tolist() == enc.input_ids and ex["token_type_ids"].tolist() == enc.token_type_ids
    assert isinstance(ex["labels"], SparseLabels) and ex["question_id"] == 101 and "teacher_input_ids" not in ex
    batch = collate([ds[i] for i in range(4)])
    t = max(len(ds[i]["input_ids"]) for i in range(4))
    assert batch["input_ids"].shape == (4, t) and batch["img_feats"].shape == (4, R, 6)
    assert batch["attention_mask"].shape == (4, t + R)
    assert batch["attention_mask"][0, t:].tolist() == [1, 1, 1, 0, 0]  # image 1: 3 regions
    assert batch["attention_mask"][1, t:].tolist() == [1] * 5  # image 2: 7 regions, truncated to 5
    assert batch["attention_mask"][0, :t].sum() == len(ds[0]["input_ids"])
    assert torch.equal(batch["labels"], torch.tensor([[1.0, 0, 0.3, 0], [0, 0.6, 0, 0], [0, 0, 0, 0.9], [0, 0, 0, 0]]))
    assert batch["question_ids"].tolist() == [101, 102, 103, 104]
    assert "kd_batch" not in batch


def test_kd_pairs_are_precomputed_from_the_tag_walk(teacher_tok, student_tok, features, ja_rows):
    kd = KDSelection()
    ds = _dataset(ja_rows, student_tok, features, teacher_tok, kd)
    for i, row in enumerate(ja_rows):
        teacher = encode_text(teacher_tok, row.questions["en"], row.tags)
        student = encode_text(student_tok, row.questions["ja"], row.tags)
        ex = ds[i]
        assert ex["teacher_input_ids"].tolist() == teacher.input_ids
        assert ex["teacher_token_type_ids"].tolist() == teacher.token_type_ids
        assert torch.equal(ex["kd_text_pairs"], text_pairs(kd, tag_alignment(teacher.tokens, student.tokens)))


def test_dynamic_and_fixed_padding_agree(teacher_tok, student_tok, features, ja_rows):
    ds = _dataset(ja_rows, student_tok, features, teacher_tok, KDSelection())
    examples = [ds[i] for i in range(len(ds))]
    dyn, fix = collate(examples), collate(examples, fixed_text_len=128)
    ts, tt = dyn["input_ids"].shape[1], dyn["teacher_input_ids"].shape[1]
    assert fix["input_ids"].shape[1] == fix["teacher_input_ids"].shape[1] == 128
    assert fix["attention_mask"].shape[1] == 128 + R
    for key, width in (("input_ids", ts), ("token_type_ids", ts), ("teacher_input_ids", tt)):
        assert torch.equal(fix[key][:, :width], dyn[key]) and not fix[key][:, width:].any()
    assert torch.equal(fix["attention_mask"][:, 128:], dyn["attention_mask"][:, ts:])
    assert torch.equal(fix["img_feats"], dyn["img_feats"])

    def meaning(batch, t_s, t_t):
        """Each pair as (batch, kind, student index, teacher index) in layout-independent terms, checked on the way."""
        out = set()
        for b, s, t, c in _pairs(batch):
            if c == COMPONENT_IMAGE:
                assert s >= t_s and t >= t_t and s - t_s == t - t_t
                out.add((b, "image", s - t_s, t - t_t))
            else:
                assert batch["attention_mask"][b, s] == 1 and batch["teacher_attention_mask"][b, t] == 1
                assert s < t_s and t < t_t
                out.add((b, c, s, t))
        return out

    assert meaning(dyn, ts, tt) == meaning(fix, 128, 128)
    image = {p for p in _pairs(dyn) if p[3] == COMPONENT_IMAGE}
    assert len(image) == len(ds) * R  # all slots, padded ones included
    # text pairs select equal tokens here (identical tag words, [CLS]/[SEP])
    for b, s, t, c in _pairs(dyn):
        if c != COMPONENT_IMAGE:
            s_tok, t_tok = (tok.convert_ids_to_tokens(int(ids[b, p])) for tok, ids, p in (
                (student_tok, dyn["input_ids"], s), (teacher_tok, dyn["teacher_input_ids"], t)))
            assert s_tok == t_tok


@pytest.mark.parametrize("flag", ["cls", "image", "tags"])
def test_each_flag_removes_exactly_its_positions(teacher_tok, student_tok, features, ja_rows, flag):
    component = {"cls": COMPONENT_CLS, "image": COMPONENT_IMAGE, "tags": COMPONENT_TAG}[flag]
    full = _pairs(collate([ex for ex in _dataset(ja_rows, student_tok, features, teacher_tok, KDSelection())]))
    ds = _dataset(ja_rows, student_tok, features, teacher_tok, dataclasses.replace(KDSelection(), **{flag: False}))
    without = _pairs(collate([ds[i] for i in range(len(ds))]))
    assert {p for p in full if p[3] == component}  # there was something to remove
    assert without == {p for p in full if p[3] != component}


def test_codemix_flag_adds_exactly_its_positions(teacher_tok, student_tok, features, ja_rows):
    on = _dataset(ja_rows, student_tok, features, teacher_tok, KDSelection(codemix=True))
    only = _dataset(ja_rows, student_tok, features, teacher_tok,
                    KDSelection(cls=False, image=False, tags=False, codemix=True))
    for ds in (on, only):
        ds.set_epoch(3)
    full = _pairs(collate([on[i] for i in range(len(on))]))
    assert _pairs(collate([only[i] for i in range(len(only))])) == {p for p in full if p[3] == COMPONENT_CODEMIX}


def test_codemix_draws_per_epoch_and_alignment_b(teacher_tok, student_tok, features, ja_rows):
    kd = KDSelection(codemix=True)
    ds = _dataset(ja_rows, student_tok, features, teacher_tok, kd, seed=7)
    again = _dataset(ja_rows, student_tok, features, teacher_tok, kd, seed=7)
    seen = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        again.set_epoch(epoch)
        for i in range(len(ds)):
            ex, twin = ds[i], again[i]
            assert torch.equal(ex["input_ids"], twin["input_ids"])
            assert torch.equal(ex["kd_text_pairs"], twin["kd_text_pairs"])
            assert torch.equal(ex["input_ids"], ds[i]["input_ids"])  # stable within an epoch
            student = student_tok.convert_ids_to_tokens(ex["input_ids"].tolist())
            teacher = teacher_tok.convert_ids_to_tokens(ex["teacher_input_ids"].tolist())
            assert ex["token_type_ids"].tolist() == [0] * (student.index("[SEP]") + 1) + [1] * (
                len(student) - student.index("[SEP]") - 1)
            cm = [(s, t) for s, t, c in ex["kd_text_pairs"].tolist() if c == COMPONENT_CODEMIX]
            assert cm and all(student[s] == teacher[t] and 0 < s < student.index("[SEP]") for s, t in cm)
            seen.add((i, tuple(ex["input_ids"].tolist())))
    assert len(seen) > len(ds)  # some example was mixed differently in different epochs
    ds.set_epoch(0)
    assert ds.codemixed_question(0) == ds.codemixed_question(0, epoch=0)


def test_codemix_needs_the_alignment_field(teacher_tok, student_tok, features, ja_rows):
    rows = [*ja_rows, QLARow(questions={"en": "What?", "ja": "何"}, tags="cat", answer_ids=(0,), scores=(1.0,),
                             img_id=1, q_id=4242)]
    with pytest.raises(AlignmentFieldError, match="question 4242"):
        _dataset(rows, student_tok, features, teacher_tok, KDSelection(codemix=True))
    _dataset(rows, student_tok, features, teacher_tok, KDSelection())  # only code-mixing needs it


def test_hindi_codemix_and_truncation(teacher_tok, student_tok, features, hi_rows):
    ds = _dataset(hi_rows, student_tok, features, teacher_tok, KDSelection(codemix=True), lang="hi", max_text_len=9)
    for epoch in range(3):
        ds.set_epoch(epoch)
        batch = collate([ds[i] for i in range(len(ds))], fixed_text_len=9)
        assert batch["input_ids"].shape[1] == 9
        for b, s, t, c in _pairs(batch):
            assert (s < 9) == (t < 9)  # text pairs stay within both texts, image pairs after them
            if c != COMPONENT_IMAGE:
                assert batch["attention_mask"][b, s] and batch["teacher_attention_mask"][b, t]


def test_errors(teacher_tok, student_tok, features, ja_rows):
    with pytest.raises(ValueError, match="teacher's tokenizer"):
        _dataset(ja_rows, student_tok, features, None, KDSelection())
    with pytest.raises(KeyError, match="question 101 has no 'hi'"):
        _dataset(ja_rows, student_tok, features, lang="hi")
    ds = _dataset(ja_rows, student_tok, features)
    with pytest.raises(ValueError, match="fixed_text_len=4"):
        collate([ds[0]], fixed_text_len=4)


@pytest.mark.parametrize("codemix", [False, True])
@pytest.mark.parametrize("lang", ["ja", "hi"])
def test_empty_tags_follow_the_release_for_student_and_teacher(teacher_tok, student_tok, features, ja_rows, hi_rows,
                                                                lang, codemix):
    """`o: ''` / `o: ';'`: `[CLS] q [SEP]` for both models (no second [SEP], question budget max_len - 2), and the
    KD tag term holds just the first-[SEP] pair; tagged rows keep the pair layout. Checked against the release's
    assembly restated in test_encoding.release_tensorize."""
    from tests.data.test_encoding import release_tensorize

    base = ja_rows if lang == "ja" else hi_rows
    rows = [dataclasses.replace(base[0], tags=""), dataclasses.replace(base[1], tags=";"), base[0]]
    ds = _dataset(rows, student_tok, features, teacher_tok, KDSelection(codemix=codemix), lang=lang, max_text_len=10)
    for i, row in enumerate(rows):
        ex = ds[i]
        question = ds.codemixed_question(i) if codemix else row.questions[lang]
        student = student_tok.convert_ids_to_tokens(ex["input_ids"].tolist())
        teacher = teacher_tok.convert_ids_to_tokens(ex["teacher_input_ids"].tolist())
        assert student == release_tensorize(student_tok, question, row.tags, 10)
        assert teacher == release_tensorize(teacher_tok, row.questions["en"], row.tags, 10)
        s_sep, t_sep = student.index("[SEP]"), teacher.index("[SEP]")
        if row.tags.strip(";"):
            assert student.count("[SEP]") == teacher.count("[SEP]") == 2
            continue
        assert student.count("[SEP]") == teacher.count("[SEP]") == 1 and student[-1] == teacher[-1] == "[SEP]"
        assert not ex["token_type_ids"].any() and not ex["teacher_token_type_ids"].any()
        tag_pairs = [tuple(p[:2]) for p in ex["kd_text_pairs"].tolist() if p[2] == COMPONENT_TAG]
        assert tag_pairs == [(s_sep, t_sep)]


def test_codemix_rate_and_unit_reach_the_plans(teacher_tok, student_tok, features, ja_rows):
    from cvil.config import KDConfig
    from cvil.train.data_setup import kd_selection

    kd = kd_selection(KDConfig(codemix_rate=0.4, codemix_unit="words"), split="train")
    assert (kd.codemix, kd.codemix_rate, kd.codemix_unit) == (True, 0.4, "words")
    words = _dataset(ja_rows, student_tok, features, teacher_tok, kd)
    subwords = _dataset(ja_rows, student_tok, features, teacher_tok, dataclasses.replace(kd, codemix_unit="subwords"))
    default = _dataset(ja_rows, student_tok, features, teacher_tok, KDSelection(codemix=True))
    # row 0 (猫は何色ですか): 5 words, 7 student pieces, 3 candidates
    assert (words._plans[0].n, subwords._plans[0].n, default._plans[0].n) == (2, 3, 1)
