"""Official VQA accuracy: every normalisation rule and quirk, with hand-computed expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvil.eval.vqa_official import (
    evaluate_vqa,
    normalize_answers,
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
    # with disagreeing ground truth both evaluators normalise the prediction fully
    for evaluator in ("current", "legacy-2017"):
        assert normalize_answers(text, ["x", "y"], evaluator=evaluator)[0] == expected


def test_legacy_ground_truth_punctuation_only_on_disagreement() -> None:
    legacy = {"evaluator": "legacy-2017"}
    assert normalize_answers("x", ["t-shirt"] * 10, **legacy)[1] == ["t-shirt"] * 10
    assert normalize_answers("x", ["t-shirt", "shirt"], **legacy)[1] == ["t shirt", "shirt"]
    # never lower-cased, article-stripped or even stripped of surrounding blanks
    assert normalize_answers("x", ["The Cat", " dog "], **legacy)[1] == ["The Cat", " dog "]


def test_current_normalises_both_sides_or_neither() -> None:
    # unanimous (after the blank clean-up): neither side is normalised beyond \n, \t and strip
    assert normalize_answers(" Two\n", ["2 "] * 9 + ["2"]) == ("Two", ["2"] * 10)
    # disagreement: both sides get punctuation + digit/article processing
    assert normalize_answers("Two", ["The Cat", "t-shirt"]) == ("2", ["cat", "t shirt"])


def test_unknown_evaluator() -> None:
    with pytest.raises(ValueError, match="legacy-2017"):
        question_accuracy("a", ["a"], evaluator="2016")


@pytest.mark.parametrize(("n_match", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out(n_match: int, expected: float) -> None:
    answers = ["cat"] * n_match + ["dog"] * (10 - n_match)
    assert question_accuracy("cat", answers) == pytest.approx(expected)


def test_two_of_ten_is_not_naive_two_thirds() -> None:
    acc = question_accuracy("cat", ["cat", "cat"] + ["dog"] * 8)
    assert acc == pytest.approx(0.6)
    assert acc != pytest.approx(min(1, 2 / 3))


def test_number_word_prediction_against_unanimous_digit_ground_truth() -> None:
    # issue 13: current master compares the raw strings when all ten agree; the 2017 file normalised the prediction
    assert question_accuracy("two", ["2"] * 10) == 0.0
    assert question_accuracy("two", ["2"] * 10, evaluator="legacy-2017") == 1.0
    # with disagreement both map "two" -> "2"
    assert question_accuracy("two", ["2"] * 9 + ["3"]) == 1.0


def test_unanimous_mixed_case_ground_truth() -> None:
    # ten "Yes": current compares raw strings (case matters), legacy lower-cases only the prediction
    assert question_accuracy("Yes", ["Yes"] * 10) == 1.0
    assert question_accuracy("yes", ["Yes"] * 10) == 0.0
    assert question_accuracy("Yes", ["Yes"] * 10, evaluator="legacy-2017") == 0.0
    assert question_accuracy("yes", ["Yes"] * 10, evaluator="legacy-2017") == 0.0
    # "Yes" vs "yes" annotators disagree, so current lower-cases both sides: all ten match
    assert question_accuracy("YES", ["Yes"] * 5 + ["yes"] * 5) == 1.0
    assert question_accuracy("YES", ["Yes"] * 5 + ["yes"] * 5, evaluator="legacy-2017") == pytest.approx(1.0)


def test_unanimous_raw_ground_truth_current_vs_legacy() -> None:
    # all ten say "two": legacy turns the prediction into "2", which can never match the raw "two"
    assert question_accuracy("two", ["two"] * 10, evaluator="legacy-2017") == 0.0
    assert question_accuracy("two", ["two"] * 10) == 1.0
    # all ten say "t-shirt": legacy's prediction becomes "t shirt"; current compares raw strings
    assert question_accuracy("t-shirt", ["t-shirt"] * 10, evaluator="legacy-2017") == 0.0
    assert question_accuracy("t-shirt", ["t-shirt"] * 10) == 1.0
    # with disagreement both sides become "t shirt": 3 matches -> 0.9 (both evaluators)
    for evaluator in ("current", "legacy-2017"):
        acc = question_accuracy("t-shirt", ["t-shirt"] * 3 + ["shirt"] * 7, evaluator=evaluator)
        assert acc == pytest.approx(0.9)
    # blanks: current strips the ground truth before the unanimity test, legacy never cleans it
    assert question_accuracy("yes", ["yes "] * 9 + ["yes"]) == 1.0
    # legacy: only the one unpadded "yes" matches -> 9 x (1/3) / 10
    assert question_accuracy("yes", ["yes "] * 9 + ["yes"], evaluator="legacy-2017") == pytest.approx(0.3)


def test_ground_truth_case_and_articles() -> None:
    # legacy keeps the ground truth's case and articles; current normalises both sides on disagreement
    assert question_accuracy("Yes", ["Yes"] * 5 + ["no"] * 5, evaluator="legacy-2017") == 0.0
    assert question_accuracy("the cat", ["the cat"] * 4 + ["dog"] * 6, evaluator="legacy-2017") == 0.0
    assert question_accuracy("Yes", ["Yes"] * 5 + ["no"] * 5) == 1.0
    assert question_accuracy("the cat", ["the cat"] * 4 + ["dog"] * 6) == 1.0


def test_quirk_duplicate_answer_dicts_dropped_together() -> None:
    dup = {"answer": "cat", "answer_id": 1, "answer_confidence": "yes"}
    others = [{"answer": "dog", "answer_id": i, "answer_confidence": "yes"} for i in range(3, 11)]
    # leaving out either duplicate drops both (0 matches); leaving out a dog leaves 2 matches -> 2/3
    assert question_accuracy("cat", [dup, dict(dup)] + others) == pytest.approx(8 * (2 / 3) / 10)
    distinct = [dup, dup | {"answer_id": 2}] + others
    assert question_accuracy("cat", distinct) == pytest.approx(0.6)


def test_comma_number_prediction() -> None:
    assert question_accuracy("1,000", ["1000"] * 9 + ["10"]) == pytest.approx(1.0)
    assert question_accuracy("1,000", ["1000"] * 10) == 0.0
    assert question_accuracy("1,000", ["1000"] * 10, evaluator="legacy-2017") == 1.0


def test_rounding() -> None:
    assert official_round(100 * 2 / 3) == 66.67
    assert official_round(100 * 0.3) == 30.0
    # an exact binary tie: Python 3 rounds half to even, Python 2 (the official file's interpreter) away from zero
    assert official_round(18.125) == 18.12
    assert official_round(18.125, rounding="python2") == 18.13
    assert official_round(0.285, rounding="python2") == official_round(0.285) == 0.28  # 0.285 is below the tie


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
    acc = evaluate_vqa(anns, {1: "yes", 2: "two", 3: "red"})
    assert acc.evaluator == "current"
    assert acc.evaluator_label == "vqaEval.py@a013f00 (current)"
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


def test_evaluate_vqa_legacy_differs_on_unanimous_ground_truth() -> None:
    anns = [_ann(1, ["yes"] * 10, "is the", "yes/no"), _ann(2, ["2"] * 10, "how many", "number")]
    preds = {1: "Yes", 2: "two"}
    assert evaluate_vqa(anns, preds).overall == 0.0
    legacy = evaluate_vqa(anns, preds, evaluator="legacy-2017")
    assert legacy.overall == 100.0
    assert legacy.evaluator_label == "vqaEval.py@458a8b2 (legacy-2017)"


GOLDEN = json.loads((Path(__file__).parent / "data" / "vqa_official_golden.json").read_text(encoding="utf-8"))


def _golden_annotation(case: dict) -> dict:
    return {
        "question_id": case["question_id"],
        "question_type": case["question_type"],
        "answer_type": case["answer_type"],
        "answers": [{"answer": a, "answer_id": i, "answer_confidence": c} for a, i, c in case["answers"]],
    }


@pytest.mark.parametrize("evaluator", ["current", "legacy-2017"])
def test_golden_against_original_vqaeval(evaluator: str) -> None:
    """Differential check against the original file (fixture built offline, see its "about")."""
    expected = GOLDEN["expected"][evaluator]
    cases = {c["question_id"]: c for c in GOLDEN["cases"]}
    anns = [_golden_annotation(c) for c in GOLDEN["cases"]]
    preds = {c["question_id"]: c["prediction"] for c in GOLDEN["cases"]}
    acc = evaluate_vqa(anns, preds, evaluator=evaluator)
    eval_qa = acc.eval_qa()
    for qid, (raw, rounded) in expected["per_question"].items():
        assert repr(acc.per_question[int(qid)]) == raw, cases[int(qid)]
        assert repr(eval_qa[int(qid)]) == rounded
    for batch in expected["batches"]:
        sub = [_golden_annotation(cases[q]) for q in batch["question_ids"]]
        for rounding in ("python3", "python2"):
            got = evaluate_vqa(sub, preds, evaluator=evaluator, rounding=rounding).to_official()
            assert got == batch[rounding]


def test_golden_fixture_exercises_the_differences() -> None:
    current, legacy = GOLDEN["expected"]["current"], GOLDEN["expected"]["legacy-2017"]
    differ = [q for q in current["per_question"] if current["per_question"][q] != legacy["per_question"][q]]
    assert len(GOLDEN["cases"]) > 300 and len(differ) > 50
    ties = [b for b in legacy["batches"] + current["batches"] if b["python2"] != b["python3"]]
    assert ties  # at least one summary where Python 2 and Python 3 round() disagree
