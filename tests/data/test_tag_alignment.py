"""Tag alignment A: the released code's parallel walk over the tag words."""

from __future__ import annotations

import torch

from cvil.inputs.encoding import encode_text
from cvil.inputs.alignment import (
    COMPONENT_CLS,
    COMPONENT_CODEMIX,
    COMPONENT_TAG,
    KDSelection,
    tag_alignment,
    text_pairs,
)


def _pairs_as_tokens(teacher, student, pairs):
    return [(student[s], teacher[t]) for s, t in pairs]


def test_identical_splits_match_every_tag_piece_and_both_separators():
    teacher = "[CLS] what color ? [SEP] cat play ##ing table [SEP]".split()
    student = "[CLS] 猫 は 何 色 ? [SEP] cat play ##ing table [SEP]".split()
    pairs = tag_alignment(teacher, student)
    assert pairs == [(6, 4), (7, 5), (8, 6), (9, 7), (10, 8), (11, 9)]
    assert all(s == t for s, t in _pairs_as_tokens(teacher, student, pairs))


def test_differently_split_words_are_skipped_position_wise():
    teacher = "[CLS] q [SEP] tennis rack ##et skate ##board dog ##s [SEP]".split()
    student = "[CLS] q q [SEP] tennis racket skat ##eb ##oard dog ##s [SEP]".split()
    pairs = tag_alignment(teacher, student)
    # first [SEP], tennis, (racket != rack), (skat != skate; ##eb != ##board; ##oard vs t+2 = dog), dog ##s, [SEP]
    assert _pairs_as_tokens(teacher, student, pairs) == [
        ("[SEP]", "[SEP]"), ("tennis", "tennis"), ("dog", "dog"), ("##s", "##s"), ("[SEP]", "[SEP]")]
    assert pairs[0] == (3, 2)


def test_first_sep_is_matched_even_when_questions_differ():
    teacher = "[CLS] a b c d [SEP] [SEP]".split()
    student = "[CLS] x [SEP] [SEP]".split()
    assert tag_alignment(teacher, student) == [(2, 5), (3, 6)]


def test_continuation_overrun_reference_bug_kept_by_default_and_fixable():
    # teacher splits word 1 as one piece, the student in three; the student's ##c at offset 2 is compared with the
    # teacher's t+2, which is the continuation of the NEXT teacher word (`b ##c`).
    teacher = "[CLS] q [SEP] a b ##c [SEP]".split()
    student = "[CLS] q [SEP] a ##x ##c b ##c [SEP]".split()
    faithful = tag_alignment(teacher, student)
    fixed = tag_alignment(teacher, student, fix_continuation_overrun=True)
    assert (5, 5) in faithful  # student word-1 piece ##c <- teacher word-2 piece ##c
    assert (5, 5) not in fixed
    assert set(faithful) - set(fixed) == {(5, 5)}
    # the walk then re-synchronises on word 2 and the final [SEP]
    assert fixed == [(2, 2), (3, 3), (6, 4), (7, 5), (8, 6)]


def test_walk_is_bounded_by_max_len():
    teacher = "[CLS] q [SEP] cat dog man [SEP]".split()
    student = "[CLS] q [SEP] cat dog man [SEP]".split()
    assert tag_alignment(teacher, student, max_len=5) == [(2, 2), (3, 3), (4, 4)]


def test_tokenizer_level_tags(teacher_tok, student_tok):
    teacher = encode_text(teacher_tok, "What color is the cat?", "cat;table;tennis racket").tokens
    student = encode_text(student_tok, "猫は何色ですか", "cat;table;tennis racket").tokens
    pairs = tag_alignment(teacher, student)
    assert _pairs_as_tokens(teacher, student, pairs) == [
        ("[SEP]", "[SEP]"), ("cat", "cat"), ("table", "table"), ("tennis", "tennis"), ("[SEP]", "[SEP]")]


def test_text_pairs_flags():
    tags, cm = [(5, 4), (6, 5)], [(1, 2)]
    full = text_pairs(KDSelection(codemix=True), tags, cm)
    assert full.tolist() == [
        [0, 0, COMPONENT_CLS], [1, 2, COMPONENT_CODEMIX], [5, 4, COMPONENT_TAG], [6, 5, COMPONENT_TAG]]
    assert text_pairs(KDSelection(cls=False, tags=False), tags, cm).shape == (0, 3)
    assert text_pairs(KDSelection(), tags, cm)[:, 2].tolist() == [COMPONENT_CLS, COMPONENT_TAG, COMPONENT_TAG]
    assert text_pairs(KDSelection()).dtype == torch.long
