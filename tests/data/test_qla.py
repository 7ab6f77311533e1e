import json

import pytest

from cvil.data.errors import DataFormatError
from cvil.data.qla import NO_LABEL, NO_LABEL_WITH_ANSWER, is_aligned, read_qla, read_unknown


def row(**overrides):
    base = {"en": "What color is the cat?", "ja": "猫は何色ですか？", "o": "cat;table", "an": [3], "s": [1.0],
            "img_id": 7, "q_id": 70, "ja-en": [["猫", "cat", "4"], ["は"], ["何色", "color", 1]]}
    base.update(overrides)
    return base


def write(tmp_path, rows, name="train2014_qla_mrcnn.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_reads_fields_alignments_and_extra(tmp_path):
    qla = read_qla(write(tmp_path, [row(answer_type="other", question_type="what color")]))
    (r,) = qla.rows
    assert r.questions == {"en": "What color is the cat?", "ja": "猫は何色ですか？"}
    assert (r.tags, r.answer_ids, r.scores, r.img_id, r.q_id) == ("cat;table", (3,), (1.0,), 7, 70)
    assert r.alignments["ja"] == [("猫", "cat", 4), ("は",), ("何色", "color", 1)]  # string en_idx -> int
    assert [is_aligned(e) for e in r.alignments["ja"]] == [True, False, True]
    assert r.extra == {"answer_type": "other", "question_type": "what color"}
    assert qla.languages == ("en", "ja") and qla.dropped.total == 0


def test_upstream_q_field_is_the_english_question(tmp_path):
    raw = row()
    del raw["en"], raw["ja"], raw["ja-en"]
    raw["q"] = "Is it red?"
    assert read_qla(write(tmp_path, [raw])).rows[0].questions == {"en": "Is it red?"}


def test_empty_answers_dropped_and_counted_in_train_kept_in_test(tmp_path):
    rows = [row(q_id=70), row(an=[], s=[], q_id=71), row(an=[], s=[], answer="白です", q_id=72), row(q_id=73)]
    train = read_qla(write(tmp_path, rows))
    assert len(train.rows) == 2
    assert train.dropped.total == 2 and train.dropped.row_indices == (1, 2)
    assert train.dropped.by_reason == {NO_LABEL: 1, NO_LABEL_WITH_ANSWER: 1}
    assert train.file_indices() == [0, 3]
    test = read_qla(write(tmp_path, rows, "test-dev2015_qla_mrcnn.json"), drop_empty=False)
    assert len(test.rows) == 4 and test.dropped.total == 0


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "val2014_qla_mrcnn.json"
    path.write_text('[\n {"en": "a",,}\n]')
    with pytest.raises(DataFormatError, match=r"val2014_qla_mrcnn.json: line 2 column \d+: expected valid JSON"):
        read_qla(path)


@pytest.mark.parametrize("field, name", [("o", "train2014_qla_mrcnn.json"), ("an", "train2014_qla_mrcnn.json"),
                                         ("s", "train2014_qla_mrcnn.json"), ("img_id", "val2014_qla_mrcnn.json"),
                                         ("q_id", "test-dev2015_qla_mrcnn.json")])
def test_missing_required_field_names_row_and_field(tmp_path, field, name):
    """`q_id` is required in test files only: the release reads it nowhere else (issue 23)."""
    bad = row(q_id=71)
    del bad[field]
    with pytest.raises(DataFormatError, match=rf"row 1: expected field\(s\) {field}"):
        read_qla(write(tmp_path, [row(), bad], name), drop_empty=False)


@pytest.mark.parametrize("overrides, message", [
    ({"s": [1.0, 0.3]}, r"row 0 field 's': expected 1 scores"),
    ({"an": ["3"]}, r"row 0 field 'an': expected a list of int label ids"),
    ({"img_id": "7"}, r"row 0 field 'img_id': expected an int"),
    ({"ja-en": [["猫", "cat", "x"]]}, r"row 0 field 'ja-en'\[0\]: expected an integer en_idx"),
    ({"ja-en": "猫"}, r"row 0 field 'ja-en': expected a list"),
    ({"s": [float("nan")]}, r"row 0 field 's': expected a list of finite soft scores"),
])
def test_malformed_fields(tmp_path, overrides, message):
    with pytest.raises(DataFormatError, match=message):
        read_qla(write(tmp_path, [row(**overrides)]))


def test_row_without_any_question(tmp_path):
    bad = row()
    for key in ("en", "ja", "ja-en"):
        del bad[key]
    with pytest.raises(DataFormatError, match=r"row 0: expected a question field"):
        read_qla(write(tmp_path, [bad]))


def test_unknown_file_requires_answer_strings(tmp_path):
    good = read_unknown(write(tmp_path, [row(answer="白"), row(an=[], s=[], answer="白色", q_id=71)], "t.unknown"))
    assert [r.extra["answer"] for r in good.rows] == ["白", "白色"]
    with pytest.raises(DataFormatError, match=r"row 1 field 'answer': expected the ground-truth answer string"):
        read_unknown(write(tmp_path, [row(answer="白"), row(q_id=71)], "t.unknown"))


def test_a_q_id_used_twice_in_a_test_file_names_both_rows(tmp_path):
    """Issue 19: test predictions go to EvalAI by q_id; a duplicate used to pass silently. Issue 23: only test files:
    the release's train/val rows carry `q_id: 0` on every row, and are keyed by position instead."""
    rows = [row(q_id=70), row(q_id=71), row(q_id=70, an=[], s=[])]
    with pytest.raises(DataFormatError, match=r"test-dev2015_qla_mrcnn.json: row 2 field 'q_id': expected a q_id "
                                              r"used by one row only \(a test file\), got 70, already the q_id of row 0"):
        read_qla(write(tmp_path, rows, "test-dev2015_qla_mrcnn.json"), drop_empty=False)
    train = read_qla(write(tmp_path, rows))
    assert train.key_source == "position" and [r.key for r in train.rows] == [0, 1]
