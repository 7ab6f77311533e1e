"""EvalAI results format and the per-question CSV: round trips and every malformed-file error."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cvil.eval.results_io import (
    ResultsFormatError,
    read_per_question,
    read_results,
    validate_results,
    write_per_question,
    write_results,
)


def test_results_round_trip(tmp_path) -> None:
    preds = {3: "二", 1: "yes", 2: ""}
    path = write_results(tmp_path / "sub" / "test-dev2015_results.json", preds)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == [
        {"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": ""}, {"question_id": 3, "answer": "二"}
    ]
    assert read_results(path, expected_ids=[1, 2, 3]) == preds
    assert "二" in path.read_text(encoding="utf-8")  # UTF-8, not \\u escapes


@pytest.mark.parametrize(
    ("data", "expected", "message"),
    [
        ({"question_id": 1, "answer": "a"}, None, "must be a JSON list"),
        ([{"question_id": 1, "answer": "a"}], [1, 2], "question_id 2: no prediction"),
        ([{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], None, "question_id 1: duplicated"),
        (
            [{"question_id": 1, "answer": "a"}, {"question_id": 9, "answer": "b"}],
            [1],
            "question_id 9: not in the question set",
        ),
        ([{"question_id": 5, "answer": 3}], None, "question_id 5: answer 3 is a int, not a string"),
        ([{"question_id": 5, "answer": None}], None, "question_id 5: answer None"),
        ([{"question_id": 5}], None, "question_id 5: no 'answer'"),
        ([{"question_id": "5", "answer": "a"}], None, "entry 0: question_id '5' is not an integer"),
        ([{"question_id": True, "answer": "a"}], None, "is not an integer"),
        ([{"answer": "a"}], None, "entry 0 has no 'question_id'"),
        (["a"], None, "entry 0 is a str"),
    ],
)
def test_malformed_results(data, expected, message) -> None:
    with pytest.raises(ResultsFormatError, match=message.replace("(", r"\(")):
        validate_results(data, expected)


def test_read_results_names_file_and_bad_json(tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(ResultsFormatError, match="not valid JSON"):
        read_results(path)
    path.write_text('[{"question_id": 7, "answer": 1}]', encoding="utf-8")
    with pytest.raises(ResultsFormatError, match=r"r\.json: question_id 7"):
        read_results(path)


def test_write_results_refuses_bad_input(tmp_path) -> None:
    with pytest.raises(ResultsFormatError, match="question_id 1"):
        write_results(tmp_path / "r.json", [(1, "a"), (1, "b")])
    assert not (tmp_path / "r.json").exists()


def test_per_question_round_trip(tmp_path) -> None:
    table = pd.DataFrame(
        {
            "question_type": ["nani", "other", "nani|ikutsu", ""],
            "question_id": [10, 11, 12, 13],
            "prediction": ["NA", "none", 'say "hi", ok', ""],
            "ground_truth": ["null", "赤", "1,000", "N/A"],
            "score": [1.0, 0.0, 0.6, 1 / 3],
            "answer_type": ["other", "other", "number", "yes/no"],
        }
    )
    path = write_per_question(tmp_path / "p" / "test_per_question.csv", table)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == "question_id,prediction,ground_truth,score,question_type,answer_type"
    back = read_per_question(path)
    assert back["question_id"].dtype == "int64" and back["score"].dtype == "float64"
    assert back["question_id"].tolist() == [10, 11, 12, 13]
    assert back["prediction"].tolist() == ["NA", "none", 'say "hi", ok', ""]  # no NaN conversion
    assert back["ground_truth"].tolist() == ["null", "赤", "1,000", "N/A"]
    assert back["question_type"].tolist() == ["nani", "other", "nani|ikutsu", ""]
    assert back["score"].tolist() == pytest.approx([1.0, 0.0, 0.6, 1 / 3], abs=1e-15)


def test_per_question_missing_columns(tmp_path) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        write_per_question(tmp_path / "x.csv", pd.DataFrame({"question_id": [1]}))
    (tmp_path / "y.csv").write_text("question_id,score\n1,0.5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks columns"):
        read_per_question(tmp_path / "y.csv")
