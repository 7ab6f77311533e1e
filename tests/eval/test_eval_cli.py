"""`cvil eval vqa|jvg|hindi`, `cvil predict`, and the pure evaluate_predictions seam."""

from __future__ import annotations

import json

import pytest

import cvil.eval.cli as eval_cli
from cvil.cli import main
from cvil.eval.evaluate import evaluate_predictions
from cvil.eval.results_io import ResultsFormatError, read_per_question

ANNS = [
    {
        "question_id": 1, "image_id": 1, "question_type": "is the", "answer_type": "yes/no",
        "multiple_choice_answer": "yes",
        "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)],
    },
    {
        "question_id": 2, "image_id": 1, "question_type": "how many", "answer_type": "number",
        "multiple_choice_answer": "3",
        "answers": [
            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(["2"] * 2 + ["3"] * 8)
        ],
    },
]
QUESTIONS = [{"image_id": 1, "question": "Is the cat white?", "question_id": 1},
             {"image_id": 1, "question": "How many cats?", "question_id": 2}]
JVG_ROWS = [
    {"q_id": 1, "ja": "何色ですか", "answer": "赤", "an": [3], "s": [1.0]},
    {"q_id": 2, "ja": "どこですか", "answer": "公園の中", "an": [], "s": []},
]


def _write(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


@pytest.fixture
def vqa_files(tmp_path):
    return (
        _write(tmp_path / "q.json", {"questions": QUESTIONS}),
        _write(tmp_path / "a.json", {"annotations": ANNS}),
        _write(tmp_path / "r.json", [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "two"}]),
    )


def test_eval_vqa(tmp_path, vqa_files, capsys) -> None:
    q, a, r = vqa_files
    out, csv = tmp_path / "acc.json", tmp_path / "pq.csv"
    rc = main(["eval", "vqa", "--questions", q, "--annotations", a, "--results", r,
               "--out", str(out), "--per-question", str(csv)])
    assert rc == 0
    acc = json.loads(out.read_text())
    # current vqaEval.py: ten unanimous "yes" are compared raw, so "Yes" scores 0
    assert acc == {"overall": 30.0, "perQuestionType": {"is the": 0.0, "how many": 60.0},
                   "perAnswerType": {"yes/no": 0.0, "number": 60.0}, "evaluator": "vqaEval.py@a013f00 (current)"}
    assert "overall" in capsys.readouterr().out
    rc = main(["eval", "vqa", "--annotations", a, "--results", r, "--out", str(out), "--evaluator", "legacy-2017"])
    assert rc == 0
    assert json.loads(out.read_text()) == {
        "overall": 80.0, "perQuestionType": {"is the": 100.0, "how many": 60.0},
        "perAnswerType": {"yes/no": 100.0, "number": 60.0}, "evaluator": "vqaEval.py@458a8b2 (legacy-2017)"}
    table = read_per_question(csv)
    assert table["score"].tolist() == pytest.approx([0.0, 0.6])  # written by the first (current) run
    assert table["ground_truth"].tolist() == ["yes", "3"]


def test_eval_vqa_malformed_results(tmp_path, vqa_files, capsys) -> None:
    q, a, _ = vqa_files
    r = _write(tmp_path / "bad.json", [{"question_id": 1, "answer": "yes"}])
    assert main(["eval", "vqa", "--questions", q, "--annotations", a, "--results", r]) == 2
    assert "question_id 2: no prediction" in capsys.readouterr().err


def test_eval_vqa_questions_disagree(tmp_path, vqa_files, capsys) -> None:
    _, a, r = vqa_files
    q = _write(tmp_path / "q2.json", {"questions": QUESTIONS[:1]})
    assert main(["eval", "vqa", "--questions", q, "--annotations", a, "--results", r]) == 2
    assert "question_id 2" in capsys.readouterr().err


def test_eval_jvg_on_labelled_rows_uses_the_label_map_beside_the_file(tmp_path) -> None:
    """`--qla`: real val rows carry label ids only; the truth is label2ans[an[0]], unlabelled rows are left out. They
    carry no q_id either, so results name them by their position in the file (issue 23)."""
    from pathlib import Path

    val = Path(__file__).resolve().parents[1] / "fixtures" / "release_format" / "vg" / "val2014_qla_mrcnn.json"
    r = _write(tmp_path / "r.json", [{"question_id": 0, "answer": "白"}, {"question_id": 1, "answer": "x"}])
    out, csv = tmp_path / "jvg.json", tmp_path / "pq.csv"
    rc = main(["eval", "jvg", "--qla", str(val), "--results", r, "--bleu-tokenizer", "none", "--out", str(out),
               "--per-question", str(csv)])
    assert rc == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["summary"]["accuracy"] == 50.0 and rep["counts"]["n"] == 2 and rep["summary"]["coverage"] == 100.0
    assert read_per_question(csv)["ground_truth"].tolist() == ["白", "草の上"]
    with pytest.raises(SystemExit):  # exactly one source of truth
        main(["eval", "jvg", "--qla", str(val), "--unknown", str(val), "--results", r])


def test_eval_jvg(tmp_path, capsys) -> None:
    unknown = _write(tmp_path / "test-dev2015_qla_mrcnn.json.unknown", JVG_ROWS)
    r = _write(tmp_path / "r.json", [{"question_id": 1, "answer": "赤"}, {"question_id": 2, "answer": "公園"}])
    out, csv = tmp_path / "jvg.json", tmp_path / "pq.csv"
    rc = main(["eval", "jvg", "--unknown", unknown, "--results", r, "--bleu-tokenizer", "char",
               "--out", str(out), "--per-question", str(csv)])
    assert rc == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["summary"]["accuracy"] == 50.0
    assert rep["summary"]["accuracy_covered"] == 100.0
    assert rep["summary"]["coverage"] == 50.0
    assert rep["bleu"]["signature"]["tokenizer"] == "char"
    assert "bleu signature" in capsys.readouterr().out
    assert read_per_question(csv)["question_type"].tolist() == ["nani", "doko"]


def test_eval_hindi(tmp_path) -> None:
    a = _write(tmp_path / "a.json", {"annotations": ANNS})
    r = _write(tmp_path / "r.json", [{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": "2"}])
    c = _write(tmp_path / "hi.json", {"labels": ["हाँ", "तीन"], "en_to_hi": {"yes": "हाँ", "2": "तीन", "3": "तीन"}})
    out = tmp_path / "hi_out.json"
    assert main(["eval", "hindi", "--annotations", a, "--results", r, "--classes", c, "--out", str(out)]) == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["hindi"]["overall"] == 100.0  # "2" and "3" merged
    assert rep["english"]["overall"] == 80.0


def test_evaluate_predictions_seam() -> None:
    summary, table = evaluate_predictions("vqa", ANNS, {1: "yes", 2: "3"})
    assert summary == {"accuracy": 100.0, "accuracy.yes/no": 100.0, "accuracy.number": 100.0}
    res = evaluate_predictions("jvg", JVG_ROWS, {1: "赤", 2: "x"}, bleu_tokenizer=None)
    assert res.metrics("test") == {"test.accuracy": 50.0, "test.accuracy_covered": 100.0, "test.coverage": 50.0,
                                   "test.accuracy.nani": 100.0, "test.accuracy.doko": 0.0}
    with pytest.raises(ResultsFormatError, match="question_id 3"):
        evaluate_predictions("vqa", ANNS, {1: "yes", 2: "3", 3: "x"})
    with pytest.raises(ValueError, match="unknown evaluation kind"):
        evaluate_predictions("gqa", [], {})


def test_eval_jvg_bleu_options(tmp_path) -> None:
    unknown = _write(tmp_path / "test-dev2015_qla_mrcnn.json.unknown", JVG_ROWS)
    r = _write(tmp_path / "r.json", [{"question_id": 1, "answer": "赤"}, {"question_id": 2, "answer": "公園"}])
    out = tmp_path / "jvg.json"
    assert main(["eval", "jvg", "--unknown", unknown, "--results", r, "--out", str(out)]) == 0
    sig = json.loads(out.read_text(encoding="utf-8"))["bleu"]["signature"]
    assert sig["preset"] == "corpus1" and sig["weights"] == [1.0] and sig["level"] == "corpus"
    assert main(["eval", "jvg", "--unknown", unknown, "--results", r, "--out", str(out), "--bleu-level", "sentence",
                 "--bleu-smoothing", "method1", "--bleu-weights", "0.5,0.5"]) == 0
    sig = json.loads(out.read_text(encoding="utf-8"))["bleu"]["signature"]
    assert (sig["level"], sig["smoothing"], sig["weights"], sig["preset"]) == ("sentence", "method1", [0.5, 0.5], None)


def test_eval_jvg_bad_bleu_weights(tmp_path, capsys) -> None:
    unknown = _write(tmp_path / "u.unknown", JVG_ROWS)
    r = _write(tmp_path / "r.json", [{"question_id": 1, "answer": "赤"}, {"question_id": 2, "answer": "公園"}])
    assert main(["eval", "jvg", "--unknown", unknown, "--results", r, "--bleu-weights", "a,b"]) == 2
    assert "--bleu-weights: expected comma-separated numbers" in capsys.readouterr().err


def test_eval_input_errors_are_one_line_naming_the_file(tmp_path, vqa_files, capsys) -> None:
    q, a, r = vqa_files
    missing = tmp_path / "missing.json"
    assert main(["eval", "vqa", "--annotations", str(missing), "--results", r]) == 2
    assert capsys.readouterr().err == f"cvil eval: {missing}: file: expected a VQA annotations file, got no such file\n"
    broken = tmp_path / "broken.json"
    broken.write_text('{"annotations": [', encoding="utf-8")
    assert main(["eval", "vqa", "--annotations", str(broken), "--results", r]) == 2
    assert capsys.readouterr().err.startswith(f"cvil eval: {broken}: line 1 column 18: expected valid JSON")
    classes = _write(tmp_path / "hi.json", {"labels": ["हाँ"], "en_to_hi": {"yes": "जी"}})
    assert main(["eval", "hindi", "--annotations", a, "--results", r, "--classes", classes]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{classes}: en_to_hi:" in err and "'जी'" in err
    unknown = _write(tmp_path / "u.unknown", JVG_ROWS)
    r_jvg = _write(tmp_path / "r.json", [{"question_id": 1, "answer": "赤"}, {"question_id": 2, "answer": "公園"}])
    assert main(["eval", "jvg", "--unknown", unknown, "--results", r_jvg, "--bleu-tokenizer", "char",
                 "--bleu-preset", "corpus1"]) == 2
    assert "are NLTK options" in capsys.readouterr().err


def test_a_bug_inside_eval_keeps_its_traceback(vqa_files, monkeypatch) -> None:
    """Only input errors (`CvilError`) become one-line messages; before, any KeyError/ValueError did, bugs included."""
    import cvil.eval.evaluate as evaluate

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(evaluate, "evaluate_predictions", broken)
    q, a, r = vqa_files
    with pytest.raises(KeyError, match="a bug"):
        main(["eval", "vqa", "--questions", q, "--annotations", a, "--results", r])
