"""Text encoding: layout, segments and the reference's pair truncation."""

from __future__ import annotations

import pytest

from cvil.data.encoding import encode_batch, encode_text, tags_text, tokenize_batch, truncate_pair, truncated_lengths


def test_layout_and_segments(student_tok):
    tokens, ids, segments = encode_text(student_tok, "猫は何色ですか", "cat;table;tennis racket")
    assert tokens == ["[CLS]", *student_tok.tokenize("猫は何色ですか"), "[SEP]", "cat", "table", "tennis", "racket", "[SEP]"]
    assert ids == student_tok.convert_tokens_to_ids(tokens)
    first_sep = tokens.index("[SEP]")
    assert segments == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_tags_text():
    assert tags_text(" cat;table;tennis racket ") == "cat table tennis racket"
    assert tags_text("") == ""


def test_empty_tags_keeps_both_separators(teacher_tok):
    tokens, _, segments = encode_text(teacher_tok, "What color?", "")
    assert tokens == ["[CLS]", "what", "color", "?", "[SEP]", "[SEP]"]
    assert segments == [0, 0, 0, 0, 0, 1]


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
