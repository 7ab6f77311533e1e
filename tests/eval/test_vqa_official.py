"""Official VQA accuracy: every normalisation rule and quirk, with hand-computed expectations."""

from __future__ import annotations

import pytest

from cvil.eval.vqa_official import (
    evaluate_vqa,
    normalize_ground_truth,
    normalize_prediction,
    official_round,
    process_digit_article,
    process_punctuation,
    question_accuracy,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000", "1000"),  # digit-comma-digit: every mark deleted
        ("red,blue", "red blue"),  # no adjacent space: replaced by a space
        ("red, blue", "red blue"),  # ", " present: the comma is deleted
        ("t-shirt", "t shirt"),
        ("1,000 t-shirt", "1000 tshirt"),  # a number comma anywhere deletes the hyphen too
        ("yes ?", "yes "),
        ("yes!", "yes "),
        ("a/b", "a b"),
        ("(left)", " left "),
        ("a.m.", "am"),  # every period not followed by a digit goes
        ("u.s.a", "usa"),
        ("3.5", "3.5"),  # decimal point kept
        ("5.", "5"),
        (".5", ".5"),
        ("don't", "don't"),  # apostrophe is not in the list
        ("2:30", "2:30"),  # neither is the colon
        ("Yes", "Yes"),  # no case change here
    ],
)
def test_process_punctuation(text: str, expected: str) -> None:
    assert process_punctuation(text) == expected


def test_period_strip_count_quirk() -> None:
    # re.UNICODE (32) is passed as `count`: only the first 32 periods go.
    assert process_punctuation("a." * 40).count(".") == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two Dogs", "2 dogs"),
        ("none", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("the cat", "cat"),
        ("a", ""),
        ("an apple", "apple"),
        ("The   Big  cat ", "big cat"),  # whitespace collapsed
        ("dont", "don't"),
        ("whats up", "what's up"),
        ("Im", "im"),  # capitalised keys never match after lower-casing
        ("one a", "1"),
    ],
)
def test_process_digit_article(text: str, expected: str) -> None:
    assert process_digit_article(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two\tdogs\n", "2 dogs"),
        ("  The Cat. ", "cat"),
        ("A.M.", "am"),
        ("1,000", "1000"),
        ("dont", "don't"),
    ],
)
def test_normalize_prediction(text: str, expected: str) -> None:
    assert normalize_prediction(text) == expected


def test_ground_truth_processed_only_on_disagreement() -> None:
    assert normalize_ground_truth(["t-shirt"] * 10) == ["t-shirt"] * 10
    assert normalize_ground_truth(["t-shirt", "shirt"]) == ["t shirt", "shirt"]
    # never lower-cased or article-stripped
    assert normalize_ground_truth(["The Cat", "dog"]) == ["The Cat", "dog"]


@pytest.mark.parametrize(("n_match", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out(n_match: int, expected: float) -> None:
    answers = ["cat"] * n_match + ["dog"] * (10 - n_match)
    assert question_accuracy("cat", answers) == pytest.approx(expected)


def test_two_of_ten_is_not_naive_two_thirds() -> None:
    acc = question_accuracy("cat", ["cat", "cat"] + ["dog"] * 8)
    assert acc == pytest.approx(0.6)
    assert acc != pytest.approx(min(1, 2 / 3))


def test_number_word_prediction_matches_digit_ground_truth() -> None:
    assert question_accuracy("two", ["2"] * 10) == 1.0


def test_quirk_unanimous_raw_ground_truth_is_not_normalised() -> None:
    # all ten say "two": prediction "two" becomes "2" and can never match the raw "two"
    assert question_accuracy("two", ["two"] * 10) == 0.0
    # all ten say "t-shirt": the prediction becomes "t shirt", ground truth stays "t-shirt"
    assert question_accuracy("t-shirt", ["t-shirt"] * 10) == 0.0
    # with disagreement both sides become "t shirt": 3 matches -> 0.9
    assert question_accuracy("t-shirt", ["t-shirt"] * 3 + ["shirt"] * 7) == pytest.approx(0.9)


def test_quirk_ground_truth_case_and_articles_kept() -> None:
    assert question_accuracy("Yes", ["Yes"] * 5 + ["no"] * 5) == 0.0
    assert question_accuracy("the cat", ["the cat"] * 4 + ["dog"] * 6) == 0.0


def test_quirk_duplicate_answer_dicts_dropped_together() -> None:
    dup = {"answer": "cat", "answer_id": 1, "answer_confidence": "yes"}
    others = [{"answer": "dog", "answer_id": i, "answer_confidence": "yes"} for i in range(3, 11)]
    # leaving out either duplicate drops both (0 matches); leaving out a dog leaves 2 matches -> 2/3
    assert question_accuracy("cat", [dup, dict(dup)] + others) == pytest.approx(8 * (2 / 3) / 10)
    distinct = [dup, dup | {"answer_id": 2}] + others
    assert question_accuracy("cat", distinct) == pytest.approx(0.6)


def test_comma_number_prediction() -> None:
    assert question_accuracy("1,000", ["1000"] * 10) == 1.0


def test_rounding() -> None:
    assert official_round(100 * 2 / 3) == 66.67
    assert official_round(100 * 0.3) == 30.0


def _ann(qid: int, answers: list[str], qtype: str, atype: str) -> dict:
    return {
        "question_id": qid,
        "image_id": 1,
        "question_type": qtype,
        "answer_type": atype,
        "multiple_choice_answer": answers[0],
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
    }


def test_evaluate_vqa_summary() -> None:
    anns = [
        _ann(1, ["yes"] * 10, "is the", "yes/no"),
        _ann(2, ["2"] * 2 + ["3"] * 8, "how many", "number"),
        _ann(3, ["red"] * 1 + ["blue"] * 9, "what color is the", "other"),
    ]
    acc = evaluate_vqa(anns, {1: "Yes", 2: "two", 3: "red"})
    assert acc.per_question == pytest.approx({1: 1.0, 2: 0.6, 3: 0.3})
    assert acc.overall == 63.33  # round(100 * 1.9 / 3, 2)
    assert acc.per_answer_type == {"yes/no": 100.0, "number": 60.0, "other": 30.0}
    assert acc.per_question_type == {"is the": 100.0, "how many": 60.0, "what color is the": 30.0}
    assert acc.to_official() == {
        "overall": 63.33,
        "perQuestionType": {"is the": 100.0, "how many": 60.0, "what color is the": 30.0},
        "perAnswerType": {"yes/no": 100.0, "number": 60.0, "other": 30.0},
    }
    assert acc.eval_qa() == {1: 100.0, 2: 60.0, 3: 30.0}


def test_evaluate_vqa_missing_prediction() -> None:
    with pytest.raises(KeyError, match="question_id 2"):
        evaluate_vqa([_ann(2, ["a"] * 10, "t", "other")], {})
