"""Code-mix generation (reference §2.4) and code-mix alignment B (§2.5)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from cvil.inputs.codemix import (
    AlignmentFieldError,
    CodeMixer,
    CodeMixPlan,
    codemix_alignment,
    draw,
    draw_rng,
    whole_words,
)


class NoShuffle(random.Random):
    """Keeps the candidates in sentence order, so a test can say which n are replaced."""

    def shuffle(self, x, *args, **kwargs):
        return None


@pytest.fixture
def ja_mixer(teacher_tok, student_tok):
    return CodeMixer(teacher_tok, student_tok, "ja")


def _plan(mixer, row, lang, tok):
    return mixer.plan(row.alignments.get(lang), row.questions["en"], len(tok.tokenize(row.questions[lang])), row.q_id)


def test_candidates_follow_the_reference_filter(ja_mixer, student_tok, ja_rows):
    plans = [_plan(ja_mixer, row, "ja", student_tok) for row in ja_rows]
    # row 0: unaligned は/ですか out; en_idx given as the string "0" works
    assert plans[0].candidates == ((0, "cat"), (2, "What"), (3, "color"))
    assert plans[0].words == ("猫", "は", "何", "色", "ですか")
    # row 2: "table" is aligned from two target words (机, の): both out
    assert plans[2].candidates == ((0, "cat"), (4, "on"), (6, "Is"))
    assert [p.n for p in plans] == [1, 1, 1, 1]  # 7, 7, 6, 5 student pieces -> round(0.15 * n) <= 1 -> max(1, .)


def test_english_words_split_differently_by_the_tokenizers_are_not_candidates(ja_mixer):
    entries = [["ラケット", "racket", 1], ["スケボー", "skateboard", 2], ["猫", "cat", 0]]
    plan = ja_mixer.plan(entries, "cat racket skateboard", 6, q_id=1)
    assert ja_mixer.same_tokenization(["racket", "skateboard", "cat", "dogs"]) == [False, False, True, True]
    assert plan.candidates == ((2, "cat"),)


@pytest.mark.parametrize(("pieces", "n"), [(3, 1), (6, 1), (10, 2), (17, 3), (30, 4), (50, 8), (70, 9)])
def test_fifteen_percent_of_subwords_with_python_round(ja_mixer, pieces, n):
    words = "what color is the cat on a table man".split()
    entries = [[f"w{i}", w, i] for i, w in enumerate(words)]
    plan = ja_mixer.plan(entries, " ".join(words), pieces, q_id=1)
    assert len(plan.candidates) == 9
    assert plan.n == n == min(max(1, round(0.15 * pieces)), 9)  # 1.5 -> 2, 4.5 -> 4 (banker's), 10.5 -> 10 -> cap 9


def test_ja_and_hi_joining(ja_mixer, teacher_tok, student_tok, ja_rows, hi_rows):
    ja = dataclasses.replace(_plan(ja_mixer, ja_rows[0], "ja", student_tok), n=2)
    assert draw(ja, NoShuffle()) == "cat は What 色ですか"
    hi = _plan(CodeMixer(teacher_tok, student_tok, "hi"), hi_rows[0], "hi", student_tok)
    assert draw(dataclasses.replace(hi, n=2), NoShuffle()) == "cat  What रंग की है ?"  # one replace('  ', ' ') pass
    assert draw(dataclasses.replace(hi, n=1), NoShuffle()) == "cat किस रंग की है ?"


def test_no_candidate_rebuilds_the_sentence_from_the_alignment_words(ja_mixer):
    plan = ja_mixer.plan([["猫"], ["は"], ["何"]], "What is it?", 3, q_id=5)
    assert plan.n == 0 and plan.candidates == ()
    assert draw(plan, random.Random(0)) == "猫は何"
    assert draw(CodeMixPlan(("बिल्ली", "है"), (), 0, " "), random.Random(0)) == "बिल्ली है"


def test_missing_or_bad_alignment_field_names_the_question(ja_mixer):
    with pytest.raises(AlignmentFieldError, match="question 777.*'ja-en'"):
        ja_mixer.plan(None, "What?", 2, q_id=777)
    with pytest.raises(AlignmentFieldError, match="question 778"):
        ja_mixer.plan([["猫", "cat", 9]], "What cat?", 2, q_id=778)
    with pytest.raises(ValueError, match="code-mixing is defined"):
        CodeMixer(None, None, "fr")


def test_draws_are_a_pure_function_of_seed_epoch_index(ja_mixer, student_tok, ja_rows):
    plan = dataclasses.replace(_plan(ja_mixer, ja_rows[1], "ja", student_tok), n=1)
    by_epoch = [draw(plan, draw_rng(0, epoch, 3)) for epoch in range(12)]
    assert by_epoch == [draw(plan, draw_rng(0, epoch, 3)) for epoch in range(12)]
    assert len(set(by_epoch)) > 1  # re-drawn across epochs
    assert [draw(plan, draw_rng(1, e, 3)) for e in range(12)] != by_epoch  # and the seed matters


def test_whole_words_keep_markers():
    assert whole_words(["cat", "##s", "play", "##ing", "?"]) == [(0, 2, "cat##s"), (2, 2, "play##ing"), (4, 1, "?")]


def test_alignment_b_whole_word_matches_with_cls_offset():
    student = ["cat", "##s", "は", "what"]
    teacher = ["what", "cat", "##s", "?"]
    assert codemix_alignment(student, teacher) == [(1, 2), (2, 3), (4, 1)]
    assert codemix_alignment(["cat"], ["cat", "##s"]) == []  # a different split is a different word


def test_alignment_b_last_english_occurrence_wins():
    assert codemix_alignment(["the", "猫"], ["the", "cat", "on", "the", "table"]) == [(1, 4)]


def test_alignment_b_matches_the_incidental_hindi_question_mark(teacher_tok, student_tok, hi_rows):
    row = hi_rows[0]
    student = student_tok.tokenize(row.questions["hi"])  # nothing replaced: the sentence as rebuilt with n = 0
    teacher = teacher_tok.tokenize(row.questions["en"])
    assert codemix_alignment(student, teacher) == [(len(student), len(teacher))]  # the final '?' on both sides


def test_the_entry_s_own_english_word_is_written(ja_mixer):
    """run_vqa_student.py:560-566 @98f288b writes `en_word` of the alignment entry, not word_tokenize(en)[en_idx];
    the filter (frequency, same tokenisation) still looks at the NLTK word."""
    entries = [["猫", "cats", 4], ["は"], ["何", "what", 0], ["色", "colour", 1], ["ですか"]]
    plan = ja_mixer.plan(entries, "What color is the cat?", 7, q_id=9)
    assert plan.candidates == ((0, "cats"), (2, "what"), (3, "colour"))
    assert draw(dataclasses.replace(plan, n=3), NoShuffle()) == "cats は what colour ですか"
    # "racket" (NLTK word) splits differently in the two tokenizers: out, whatever the entry says
    assert ja_mixer.plan([["ラケット", "cat", 1]], "a racket", 3, q_id=10).candidates == ()


@pytest.mark.parametrize(("unit", "rate", "n"), [
    ("subwords", 0.15, 4),  # round(0.15 * 30) = round(4.5) = 4 (banker's): the release
    ("words", 0.15, 1),  # round(0.15 * 9 target words) = round(1.35) = 1: the paper's "15 % of words"
    ("subwords", 0.5, 9),  # round(15) capped by the 9 candidates
    ("words", 0.5, 4),  # round(4.5) = 4
])
def test_rate_and_unit_choose_what_n_counts(teacher_tok, student_tok, unit, rate, n):
    words = "what color is the cat on a table man".split()
    entries = [[f"w{i}", w, i] for i, w in enumerate(words)]
    mixer = CodeMixer(teacher_tok, student_tok, "ja", rate=rate, unit=unit)
    plan = mixer.plan(entries, " ".join(words), 30, q_id=1)
    assert len(plan.words) == 9 and len(plan.candidates) == 9
    words_n = min(max(1, round(rate * 9)), 9)
    assert plan.n == n == (min(max(1, round(rate * 30)), 9) if unit == "subwords" else words_n)


@pytest.mark.parametrize(("unit", "rate", "n"), [("subwords", 0.15, 1), ("words", 0.15, 1),
                                                 ("subwords", 0.4, 3), ("words", 0.4, 2)])
def test_rate_and_unit_on_a_real_question(teacher_tok, student_tok, ja_rows, unit, rate, n):
    # 猫は何色ですか: 5 target words, 7 student pieces, 3 candidates; 0.4 * 7 = 2.8 -> 3, 0.4 * 5 = 2
    plan = _plan(CodeMixer(teacher_tok, student_tok, "ja", rate=rate, unit=unit), ja_rows[0], "ja", student_tok)
    assert (len(plan.words), len(student_tok.tokenize(ja_rows[0].questions["ja"])), len(plan.candidates)) == (5, 7, 3)
    assert plan.n == n


def test_defaults_are_the_release_s_and_bad_options_are_refused(teacher_tok, student_tok, ja_rows):
    from cvil.config import KDConfig
    from cvil.inputs.alignment import KDSelection
    from cvil.inputs.codemix import CODEMIX_RATE

    assert KDConfig().codemix_rate == KDSelection().codemix_rate == CODEMIX_RATE == 0.15
    assert KDConfig().codemix_unit == KDSelection().codemix_unit == "subwords"
    default, explicit = CodeMixer(teacher_tok, student_tok, "ja"), CodeMixer(teacher_tok, student_tok, "ja",
                                                                             rate=0.15, unit="subwords")
    assert [_plan(default, r, "ja", student_tok) for r in ja_rows] == [_plan(explicit, r, "ja", student_tok)
                                                                      for r in ja_rows]
    for kw in ({"rate": 0.0}, {"rate": 1.5}, {"unit": "pieces"}):
        with pytest.raises(ValueError, match="code-mix"):
            CodeMixer(teacher_tok, student_tok, "ja", **kw)
