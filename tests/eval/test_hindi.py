"""Hindi: accuracy over merged Hindi classes vs English classes."""

from __future__ import annotations

import json

import pytest

from cvil.eval.hindi import HindiClasses, evaluate_hindi, load_hindi_classes

CLASSES = HindiClasses(
    labels=("ऊपर", "हाँ", "नीचे"), en_to_hi={"up": "ऊपर", "above": "ऊपर", "yes": "हाँ", "down": "नीचे"}
)


def _ann(qid: int, answers: list[str], atype: str) -> dict:
    return {
        "question_id": qid,
        "question_type": "where is",
        "answer_type": atype,
        "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)],
    }


ANNS = [
    _ann(1, ["above"] * 3 + ["down"] * 7, "other"),  # "up" and "above" merge in Hindi
    _ann(2, ["yes"] * 10, "yes/no"),
    _ann(3, ["up"] * 2 + ["above"] * 2 + ["left"] * 6, "other"),  # 2 + 2 English matches = 4 Hindi matches
]


def test_merged_classes_vs_english() -> None:
    res = evaluate_hindi(ANNS, {1: "up", 2: "yes", 3: "up"}, CLASSES)
    assert res.hindi.per_question == pytest.approx({1: 0.9, 2: 1.0, 3: 1.0})
    assert res.english.per_question == pytest.approx({1: 0.0, 2: 1.0, 3: 0.6})
    s = res.summary()
    assert s["accuracy"] == round(100 * 2.9 / 3, 2)
    assert s["accuracy_en"] == round(100 * 1.6 / 3, 2)
    assert s["accuracy.other"] == 95.0 and s["accuracy.yes/no"] == 100.0
    assert s["accuracy_en.other"] == 30.0


def test_prediction_given_as_hindi_class_and_unmapped_answers() -> None:
    res = evaluate_hindi(ANNS, {1: "ऊपर", 2: "no", 3: "left"}, CLASSES)
    assert res.hindi.per_question == pytest.approx({1: 0.9, 2: 0.0, 3: 1.0})  # "left" unmapped: matches itself


def test_load_and_validate(tmp_path) -> None:
    path = tmp_path / "hi_ans2label.json"
    path.write_text(json.dumps({"labels": ["ऊपर"], "en_to_hi": {"up": "ऊपर"}}, ensure_ascii=False), encoding="utf-8")
    assert load_hindi_classes(path).to_class("up") == ("hi", "ऊपर")
    with pytest.raises(ValueError, match="not in labels"):
        HindiClasses(labels=("ऊपर",), en_to_hi={"down": "नीचे"})
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="'labels' and 'en_to_hi'"):
        load_hindi_classes(path)
