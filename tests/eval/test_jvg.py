"""JVG: exact-match accuracy over all rows, covered accuracy, coverage, per question word."""

from __future__ import annotations

import json

import pytest

from cvil.eval.jvg import evaluate_jvg, load_unknown, unknown_frame

ROWS = [
    {"q_id": 1, "ja": "何色ですか", "answer": "赤", "an": [3], "s": [1.0]},
    {"q_id": 2, "ja": "何がいくつありますか", "answer": "2", "an": [5], "s": [1.0]},
    {"q_id": 3, "ja": "どこですか", "answer": "公園", "an": [7], "s": [1.0]},
    {"q_id": 4, "ja": "誰ですか", "answer": "男性", "an": [9], "s": [1.0]},
    {"q_id": 5, "ja": "どうしてですか", "answer": "雨が降っているから", "an": [], "s": []},
    {"q_id": 6, "q": "これは", "answer": "白い大きな犬", "an": [], "s": []},
]


def test_unknown_frame_and_loader(tmp_path) -> None:
    path = tmp_path / "test-dev2015_qla_mrcnn.json.unknown"
    path.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    gt = load_unknown(path)
    assert list(gt.columns) == ["question_id", "question", "ground_truth", "covered"]
    assert gt["covered"].tolist() == [True, True, True, True, False, False]
    assert gt["question"].iloc[5] == "これは"  # upstream `q` field


def test_unknown_frame_errors_name_the_file_and_row() -> None:
    from cvil.data.errors import DataFormatError

    with pytest.raises(DataFormatError, match=r"u\.unknown: row 0: expected fields 'q_id' and 'answer', got keys \['q_id'\]"):
        unknown_frame([{"q_id": 1}], "u.unknown")
    with pytest.raises(DataFormatError, match="field 'q_id': expected a q_id used by one row only, got 1 twice"):
        unknown_frame([ROWS[0], ROWS[0]])


def test_coverage_rescaling() -> None:
    preds = {1: "赤", 2: " 2 ", 3: "家", 4: "女性", 5: "晴れ", 6: "犬"}
    res = evaluate_jvg(unknown_frame(ROWS), preds, bleu_tokenizer=None)
    s = res.summary
    assert s["accuracy"] == pytest.approx(100 * 2 / 6)
    assert s["accuracy_covered"] == pytest.approx(100 * 2 / 4)
    assert s["coverage"] == pytest.approx(100 * 4 / 6)
    # reported accuracy = covered accuracy × coverage when no uncovered row is right
    assert res.counts["correct_uncovered"] == 0
    assert s["accuracy"] == pytest.approx(s["accuracy_covered"] * s["coverage"] / 100)
    assert "bleu" not in s


def test_correct_uncovered_breaks_the_identity() -> None:
    preds = {1: "赤", 2: "2", 3: "家", 4: "女性", 5: "雨が降っているから", 6: "犬"}
    res = evaluate_jvg(unknown_frame(ROWS), preds, bleu_tokenizer=None)
    assert res.counts["correct_uncovered"] == 1
    assert res.summary["accuracy"] == pytest.approx(100 * 3 / 6)
    assert res.summary["accuracy_covered"] * res.summary["coverage"] / 100 == pytest.approx(100 * 2 / 6)


def test_per_type_and_per_question_table() -> None:
    preds = {1: "赤", 2: "3", 3: "公園", 4: "女性", 5: "雨が降っている", 6: "犬"}
    res = evaluate_jvg(unknown_frame(ROWS), preds, bleu_tokenizer="char")
    s = res.summary
    assert s["accuracy.nani"] == pytest.approx(50.0)  # rows 1 (right) and 2 (wrong)
    assert s["accuracy.ikutsu"] == pytest.approx(0.0)
    assert s["accuracy.doko"] == pytest.approx(100.0)
    assert s["accuracy.dare"] == pytest.approx(0.0)
    assert s["accuracy.naze"] == pytest.approx(0.0)
    assert "accuracy.dou" not in s  # どうして is naze only
    assert s["accuracy.other"] == pytest.approx(0.0)
    assert res.counts["n.nani"] == 2 and res.counts["n.ikutsu"] == 1
    table = res.per_question
    assert list(table.columns[:5]) == ["question_id", "prediction", "ground_truth", "score", "question_type"]
    assert table.loc[table["question_id"] == 2, "question_type"].item() == "nani|ikutsu"
    assert table["score"].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert 0 < s["bleu"] < 100
    assert res.bleu is not None and res.bleu.signature.tokenizer == "char"


def test_missing_prediction() -> None:
    with pytest.raises(KeyError, match="question_id 6"):
        evaluate_jvg(unknown_frame(ROWS), {i: "x" for i in range(1, 6)}, bleu_tokenizer=None)
