"""Metric names declared with the dataset (issue 24): each evaluation produces exactly what it declares, in the
declared unit; the in-loop val score is a percent like every final accuracy; a missing Hindi class file is said."""

from __future__ import annotations

import logging

import pytest

from cvil.eval.datasets import eval_dataset
from cvil.eval.evaluate import evaluate_predictions
from cvil.eval.metrics import check_declared, declared, logged_name

JVG_ROWS = [{"q_id": 1, "answer": "赤", "ja": "車は何色ですか", "an": [0]},
            {"q_id": 2, "answer": "公園", "ja": "どこですか", "an": []}]
VQA_ANNS = [{"question_id": 1, "question_type": "is the", "answer_type": "yes/no",
             "answers": [{"answer": "yes", "answer_id": i + 1} for i in range(10)]},
            {"question_id": 2, "question_type": "what color", "answer_type": "other",
             "answers": [{"answer": "red", "answer_id": i + 1} for i in range(10)]}]


@pytest.mark.parametrize("kind, rows, predictions", [
    ("jvg", JVG_ROWS, {1: "赤", 2: "森"}),
    ("vqa", VQA_ANNS, {1: "yes", 2: "blue"}),
])
def test_every_produced_metric_is_declared_and_the_main_score_is_there(kind, rows, predictions):
    options = {"bleu_tokenizer": "char"} if kind == "jvg" else {}
    result = evaluate_predictions(kind, rows, predictions, **options)
    names = set(result.metrics("test"))
    check_declared(kind, [n.removeprefix("test.") for n in names])
    assert "test.accuracy" in names and all("/" not in n for n in names)
    assert all(0 <= v <= 100 for v in result.metrics("test").values())  # percents (and BLEU 0-100)
    exact = {m.name for m in declared(kind) if not m.name.endswith(".*")}
    assert {f"test.{n}" for n in exact} <= names


def test_an_undeclared_metric_is_refused():
    with pytest.raises(ValueError, match=r"undeclared metric\(s\) \['vqa_score'\]"):
        check_declared("vqa", ["accuracy", "vqa_score"])
    assert logged_name("accuracy.yes/no") == "accuracy.yes_no"


def test_datasets_declare_their_metrics_and_the_hindi_fallback_is_said(tmp_path, caplog):
    vqa = eval_dataset("vqa")
    assert vqa.main_score("ja") == "accuracy" and {m.name for m in vqa.metrics("hi")} >= {"accuracy", "accuracy_en"}
    with caplog.at_level(logging.WARNING):
        assert vqa.metric_for("hi", tmp_path) == "vqa"
    assert "hi_ans2label.json is missing" in caplog.text and "cvil data hindi-classes" in caplog.text
    (tmp_path / "hi_ans2label.json").write_text("{}")
    assert vqa.metric_for("hi", tmp_path) == "hindi"
