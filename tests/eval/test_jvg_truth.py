"""Ground-truth strings of JVG splits: the `.unknown` strings, else label2ans[an[0]] (real val rows have no strings)."""

from __future__ import annotations

import pytest

from cvil.data.errors import DataFormatError
from cvil.data.qla import QLARow
from cvil.eval.jvg_truth import ANSWER_FIELD, LABEL_MAP, jvg_truth


def _row(q_id, an, **extra):
    return QLARow(questions={"ja": f"q{q_id}"}, tags="", answer_ids=tuple(an), scores=(1.0,) * len(an), img_id=1,
                  q_id=q_id, extra=extra)


def test_labelled_rows_are_scored_through_the_label_map():
    truth = jvg_truth([_row(1, [2]), _row(2, []), _row(3, [0])], ["白", "黒", "赤"])
    assert truth.source == LABEL_MAP and truth.unscored == 1
    assert [(r["q_id"], r["answer"]) for r in truth.records] == [(1, "赤"), (3, "白")]


def test_rows_that_all_carry_strings_use_them_even_uncovered():
    truth = jvg_truth([_row(1, [2], answer="赤"), _row(2, [], answer="青")], ["白", "黒", "赤"])
    assert truth.source == ANSWER_FIELD and truth.unscored == 0
    assert [r["answer"] for r in truth.records] == ["赤", "青"]


def test_a_label_id_outside_the_map_names_the_row():
    with pytest.raises(DataFormatError, match=r"val.json: row 1 \(question 2\) field 'an': expected a label id below 3"):
        jvg_truth([_row(1, [0]), _row(2, [7])], ["白", "黒", "赤"], file="val.json")
