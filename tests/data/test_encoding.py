"""Text encoding: layout, segments and the reference's pair truncation."""

from __future__ import annotations

import pytest

from cvil.data.tokenizers import tokenize_batch
from cvil.inputs.encoding import encode_batch, encode_text, tags_text, truncate_pair, truncated_lengths


def test_layout_and_segments(student_tok):
    tokens, ids, segments = encode_text(student_tok, "猫は何色ですか", "cat;table;tennis racket")
    assert tokens == ["[CLS]", *student_tok.tokenize("猫は何色ですか"), "[SEP]", "cat", "table", "tennis", "racket", "[SEP]"]
    assert ids == student_tok.convert_tokens_to_ids(tokens)
    first_sep = tokens.index("[SEP]")
    assert segments == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_tags_text():
    assert tags_text(" cat;table;tennis racket ") == "cat table tennis racket"
    assert tags_text("") == ""


@pytest.mark.parametrize("tags", ["", ";", " ; ", ";;"])
def test_empty_tags_give_no_second_separator(teacher_tok, tags):
    """The release (`tensorize_example`, run_vqa_student.py:586-600 @98f288b) adds the second [SEP] only `if tokens_b:`;
    `o.replace(';', ' ').strip()` makes `''` and `';'` alike."""
    tokens, ids, segments = encode_text(teacher_tok, "What color?", tags)
    assert tokens == ["[CLS]", "what", "color", "?", "[SEP]"]
    assert ids == teacher_tok.convert_tokens_to_ids(tokens)
    assert segments == [0, 0, 0, 0, 0]


def test_question_budget_is_max_len_minus_two_without_tags_and_minus_three_with(teacher_tok):
    question = " ".join(["cat"] * 40)
    empty = encode_text(teacher_tok, question, "", max_len=12).tokens
    assert empty == ["[CLS]", *["cat"] * 10, "[SEP]"]  # 12 - 2 question pieces
    tagged = encode_text(teacher_tok, question, "dog", max_len=12).tokens
    assert tagged == ["[CLS]", *["cat"] * 8, "[SEP]", "dog", "[SEP]"]  # 12 - 3 for the pair


def test_tag_text_that_tokenises_to_nothing_keeps_the_pair_budget(teacher_tok):
    """Raw text non-empty (a zero-width space survives `.strip()`), no pieces: budget - 3, and no second [SEP]."""
    assert teacher_tok.tokenize("\u200b") == []
    tokens, _, segments = encode_text(teacher_tok, " ".join(["cat"] * 40), "\u200b", max_len=12)
    assert tokens == ["[CLS]", *["cat"] * 9, "[SEP]"] and segments == [0] * 11


def release_tensorize(tokenizer, question: str, o: str, max_len: int) -> list[str]:
    """The release's text assembly restated from run_vqa_student.py:586-608 (slow-tokenizer `tokenize` calls)."""
    tokens_a = tokenizer.tokenize(question)
    text_b = o.replace(";", " ").strip()
    tokens_b = None
    if text_b:
        tokens_b = tokenizer.tokenize(text_b)
        while len(tokens_a) + len(tokens_b) > max_len - 3:
            (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
    elif len(tokens_a) > max_len - 2:
        tokens_a = tokens_a[: max_len - 2]
    tokens = tokens_a + ["[SEP]"]
    if tokens_b:
        tokens += tokens_b + ["[SEP]"]
    return ["[CLS]"] + tokens


@pytest.mark.parametrize("max_len", [6, 9, 128])
@pytest.mark.parametrize("tags", ["", ";", "cat;table;tennis racket", "skateboard", "\u200b", " umbrella ; "])
def test_encoding_equals_the_release(teacher_tok, student_tok, tags, max_len):
    for tok, question in ((teacher_tok, "How many dogs are on the table playing tennis?"), (student_tok, "猫は机の上にいますか")):
        assert encode_text(tok, question, tags, max_len=max_len).tokens == release_tensorize(tok, question, tags, max_len)


@pytest.mark.parametrize(
    ("la", "lb", "total", "expected"),
    [(3, 4, 10, (3, 4)), (8, 4, 10, (6, 4)), (4, 8, 10, (4, 6)), (6, 6, 10, (5, 5)), (6, 5, 10, (5, 5)),
     (20, 20, 7, (4, 3))],
)
def test_truncation_pops_from_the_longer_and_b_on_ties(la, lb, total, expected):
    assert truncated_lengths(la, lb, total) == expected
    a, b = list(range(la)), list(range(lb))
    truncate_pair(a, b, total)
    assert (a, b) == (list(range(expected[0])), list(range(expected[1])))


def test_encode_truncates_to_max_len(teacher_tok):
    question = "what color is the cat ?"  # 6 pieces
    tags = ";".join(["table"] * 20)
    tokens, ids, segments = encode_text(teacher_tok, question, tags, max_len=12)
    assert len(tokens) == len(ids) == len(segments) == 12
    # 6 + 20 pieces into 9: tags shrink to 6, then ties pop the tags and the longer question alternately -> 5 + 4
    assert tokens == ["[CLS]", *question.split()[:5], "[SEP]", *["table"] * 4, "[SEP]"]


def test_batch_equals_single_and_tokenize(student_tok):
    questions = ["猫は何色ですか", "What is on the table?", "बिल्ली किस रंग की है ?"]
    tags = ["cat;table", "tennis racket;skateboard", "cat;table"]
    singles = [encode_text(student_tok, q, t) for q, t in zip(questions, tags)]
    assert encode_batch(student_tok, questions, tags) == singles
    for q, (pieces, ids) in zip(questions, tokenize_batch(student_tok, questions)):
        assert pieces == student_tok.tokenize(q)
        assert ids == student_tok.convert_tokens_to_ids(pieces)
