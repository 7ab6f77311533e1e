"""`cvil data prepare-jvg` on hand-written Visual Genome / VinVL inputs: layout, labels, report, determinism, errors."""

from __future__ import annotations

import json

import pytest
from prepare_sources import SPLITS, question_answers, write_feature_tsv, write_jvg_sources

from cvil.cli import main
from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.label_maps import load_label_maps
from cvil.data.prepare.jvg import prepare_jvg, seeded_split, top_answers
from cvil.data.qla import read_qla, read_unknown
from cvil.data.validate import validate_dataset


@pytest.fixture
def sources(tmp_path):
    return write_jvg_sources(tmp_path / "src")


def _prepare(sources, out, **kw):
    return prepare_jvg(qa=sources["qa"], tags=sources["tags"], out=out, splits=sources.get("splits"), top_k=5,
                       show_progress=False, **kw)


def test_layout_labels_rows_and_report(sources, tmp_path):
    out = tmp_path / "vg"
    report = _prepare(sources, out)
    # top-5 train answers: 青 4, 赤 3, 白 2, then the single answers by code point (2人 < 2台); 白色 ≠ 白
    assert load_label_maps(out).label2ans == ["青", "赤", "白", "2人", "2台"]
    train = read_qla(layout.qla_path(out, "train"))
    assert len(train.rows) == 11 and train.dropped.total == 0  # only covered rows are written
    first = json.loads(layout.qla_path(out, "train").read_text(encoding="utf-8"))[0]
    assert first == {"ja": "車は何色ですか？", "o": "car;tree", "an": [2], "s": [1.0], "img_id": 1, "q_id": 100}
    assert len(read_qla(layout.qla_path(out, "val")).rows) == 3
    test = read_qla(layout.qla_path(out, "test"), drop_empty=False)
    assert [r.q_id for r in test.rows] == [900, 902, 1000] and all(r.answer_ids for r in test.rows)
    unknown = read_unknown(layout.unknown_path(out))
    assert [r.extra["answer"] for r in unknown.rows] == ["赤", "道の上", "青", "白", "家の中", "雨"]
    assert [r.answer_ids for r in unknown.rows] == [(1,), (), (0,), (2,), (), ()]
    assert unknown.rows[3].tags == ""  # image 10 has no detections
    assert report["splits"]["train"] | {"images_without_tags_examples": None} == {
        "images": 6, "questions": 18, "covered": 11, "coverage": 61.11, "rows_written": 11,
        "images_without_tags": 0, "images_without_tags_examples": None}
    assert (report["splits"]["val"]["coverage"], report["splits"]["test"]["coverage"]) == (50.0, 50.0)
    assert report["splits"]["test"]["images_without_tags_examples"] == [10]
    assert report["splits"]["test"]["unknown_rows"] == 6
    assert report["dropped"] == {"train: answer outside the top-K train answers": 7,
                                 "val: answer outside the top-K train answers": 3}
    assert json.loads((out / "prepare_report.json").read_text()) == report


def test_same_inputs_give_byte_identical_outputs(sources, tmp_path):
    for splits in (sources["splits"], None):
        a, b = tmp_path / f"a{splits is None}", tmp_path / f"b{splits is None}"
        for out in (a, b):
            prepare_jvg(qa=sources["qa"], tags=sources["tags"], out=out, splits=splits, top_k=5, seed=3,
                        show_progress=False)
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(p.name for p in b.iterdir()) and len(names) == 7
        for name in names:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_min_conf_filters_tags(sources, tmp_path):
    _prepare(sources, tmp_path / "vg", min_conf=0.5)
    assert {r.tags for r in read_qla(layout.qla_path(tmp_path / "vg", "train")).rows} == {"car"}


def test_seeded_split_has_the_paper_proportions_and_is_a_partition():
    ids = list(range(5000, 15000))
    split = seeded_split(ids, seed=0)
    counts = {s: sum(1 for v in split.values() if v == s) for s in ("train", "val", "test")}
    assert counts == {"train": 6003, "val": 200, "test": 3797}  # 10,000 x 59,550|1,984|37,674 / 99,208
    assert sorted(split) == ids and split == seeded_split(reversed(ids), seed=0) and split != seeded_split(ids, seed=1)
    assert set(seeded_split([1, 2, 3], seed=0).values()) == {"train", "val", "test"}


def test_top_answers_ties_do_not_depend_on_input_order():
    answers = ["b", "a", "c", "a", "c", "d"]
    assert top_answers(answers, 3) == top_answers(reversed(answers), 3) == ["a", "c", "b"]


def test_validate_checks_features_agree_with_the_prepared_files(sources, tmp_path):
    out = tmp_path / "vg"
    _prepare(sources, out)
    tsv = write_feature_tsv(tmp_path / "gqa.tsv", range(1, 11), dim=8)
    for split, qla in (("train", layout.qla_path(out, "train")), ("val", layout.qla_path(out, "val")),
                       ("test", layout.unknown_path(out))):
        assert main(["data", "pack", "--source", "tsv", "--input", str(tsv), "--ids-from", str(qla),
                     "--out", str(layout.packed_store_path(out, split))]) == 0
    report = validate_dataset(out)
    assert report.ok, report.errors
    assert [s.images_with_features for s in report.splits] == [s.images for s in report.splits] == [5, 2, 2, 2]
    # features that lack image 10: both test files name their first row of it
    test_store = layout.packed_store_path(out, "test")
    for p in test_store.iterdir():
        p.unlink()
    tsv = write_feature_tsv(tmp_path / "gqa_part.tsv", range(1, 10), dim=8)
    main(["data", "pack", "--source", "tsv", "--input", str(tsv), "--out", str(test_store)])
    errors = validate_dataset(out).errors
    assert len(errors) == 2, errors
    assert "test-dev2015_qla_mrcnn.json: row 2 img_id 10: expected region features" in errors[0]
    assert "test-dev2015_qla_mrcnn.json.unknown: row 3 img_id 10: expected region features" in errors[1]


def test_validate_flags_files_that_disagree_with_the_prepare_report(sources, tmp_path):
    out = tmp_path / "vg"
    _prepare(sources, out)
    rows = json.loads(layout.qla_path(out, "val").read_text(encoding="utf-8"))
    layout.qla_path(out, "val").write_text(json.dumps(rows[:1]), encoding="utf-8")
    errors = validate_dataset(out).errors
    assert any("val2014_qla_mrcnn.json: rows: expected 3 rows (as prepare_report.json), got 1" in e for e in errors)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_errors_naming_file_place_and_value(sources, tmp_path, capsys):
    base = ["data", "prepare-jvg", "--tags", str(sources["tags"]), "--out", str(tmp_path / "vg")]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1,\n "qas": [}]', encoding="utf-8")
    assert f"{bad}: line 2 column 10: expected valid JSON" in _error(capsys, [*base, "--qa", str(bad)])
    data = question_answers()
    del data[2]["qas"][1]["answer"]
    text = json.dumps(data, ensure_ascii=False, indent=1)
    bad.write_text(text, encoding="utf-8")
    line = next(n for n, s in enumerate(text.splitlines(), start=1) if '"qa_id": 301' in s)
    column = text.splitlines()[line - 1].index('"qa_id"') + 1
    assert (f"{bad}: line {line} column {column} [2].qas[1] (qa_id 301): expected field 'answer', got keys "
            "['a_objects', 'image_id', 'q_objects', 'qa_id', 'question']" in _error(capsys, [*base, "--qa", str(bad)]))
    (sources["splits"] / "test.txt").write_text(f"{SPLITS['test'][0]}\n7\n", encoding="utf-8")
    err = _error(capsys, [*base, "--qa", str(sources["qa"]), "--splits", str(sources["splits"])])
    assert err == (f"cvil data: {sources['splits'] / 'test.txt'}: line 2: expected each image in exactly one split, "
                   "got image 7 already at val.txt line 1")


def test_reads_errors_on_a_bad_qa_id_and_an_image_listed_twice(sources, tmp_path):
    data = question_answers()
    data[1]["qas"][0]["qa_id"] = "x"
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1 column \d+ \[1\]\.qas\[0\] \(qa_id 'x'\): expected an int qa_id, got 'x'"):
        prepare_jvg(qa=path, tags=sources["tags"], out=tmp_path / "vg")
    data = question_answers() + [question_answers()[0]]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"\[10\]: expected each image once, got image id 1 again"):
        prepare_jvg(qa=path, tags=sources["tags"], out=tmp_path / "vg")


def test_images_outside_the_splits_and_without_features_are_reported(sources, tmp_path):
    (sources["splits"] / "test.txt").write_text("9\n42\n", encoding="utf-8")  # image 10 in no split, 42 has no QAs
    tsv = write_feature_tsv(tmp_path / "feats.tsv", [1, 2, 3, 4, 5, 6, 7, 9], dim=8)
    report = _prepare(sources, tmp_path / "vg", features=[tsv])
    assert report["dropped"]["image in no split file"] == 3
    assert report["images_in_splits_without_questions"] == 1
    assert report["splits"]["val"]["images_without_features"] == 1
    assert report["splits"]["val"]["images_without_features_examples"] == [8]
    assert report["splits"]["test"]["images_without_features"] == 0 and report["splits"]["test"]["unknown_rows"] == 3


def test_report_gives_coverage_over_all_splits_beside_each_split(sources, tmp_path):
    report = _prepare(sources, tmp_path / "vg")
    # train 11/18, val 3/6, test 3/6 (the paper's 74.39 % is this figure on the full JVG)
    assert report["all_splits"] == {"questions": 30, "covered": 17, "coverage": 56.67}
    assert [report["splits"][s]["coverage"] for s in ("train", "val", "test")] == [61.11, 50.0, 50.0]
    assert report["options"]["top_k"] == 5 and report["inputs"]["ans2label"] is None


def _write(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_given_answer_list_sets_labels_and_ids(sources, tmp_path, capsys):
    # UC2's misc/ans2label_ja.json layout, ids not in file order; 雨 occurs only in test, 木の上 not in the top-5
    given = _write(tmp_path / "ans2label_ja.json", {"白": 2, "赤": 0, "雨": 1, "木の上": 3})
    out = tmp_path / "vg"
    report = prepare_jvg(qa=sources["qa"], tags=sources["tags"], out=out, splits=sources["splits"], ans2label=given,
                         show_progress=False)
    maps = load_label_maps(out)
    assert maps.label2ans == ["赤", "雨", "白", "木の上"]
    assert list(maps.ans2label.items()) == [("赤", 0), ("雨", 1), ("白", 2), ("木の上", 3)]  # ids in insertion order
    first = json.loads(layout.qla_path(out, "train").read_text(encoding="utf-8"))[0]
    assert (first["q_id"], first["an"]) == (100, [2])  # 白 -> the file's id
    assert [r.answer_ids for r in read_unknown(layout.unknown_path(out)).rows] == [(0,), (), (), (2,), (), (1,)]
    assert report["num_labels"] == 4 and report["options"]["top_k"] is None
    assert report["inputs"]["ans2label"] == "ans2label_ja.json"
    assert [report["splits"][s]["covered"] for s in ("train", "val", "test")] == [6, 3, 3]
    assert report["all_splits"] == {"questions": 30, "covered": 12, "coverage": 40.0}
    assert report["dropped"] == {"train: answer outside the given answer list": 12,
                                 "val: answer outside the given answer list": 3}
    assert validate_dataset(out).num_labels == 4
    # a JSON list of answers (id = position) through the CLI writes the same files
    listed = _write(tmp_path / "answers.json", ["赤", "雨", "白", "木の上"])
    out2 = tmp_path / "vg2"
    assert main(["data", "prepare-jvg", "--qa", str(sources["qa"]), "--tags", str(sources["tags"]), "--out", str(out2),
                 "--splits", str(sources["splits"]), "--ans2label", str(listed)]) == 0
    capsys.readouterr()
    for name in (layout.ANS2LABEL, layout.LABEL2ANS, layout.qla_path(out, "train").name):
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


@pytest.mark.parametrize("value, message", [
    ({"赤": 0, "白": 2}, "entry '白': expected an int id in 0..1 (ids 0..N-1), got 2"),
    ({"赤": 0, "白": 0}, "entry '白': expected ids 0..1, each once, got id 0, already the id of '赤'"),
    ({"赤": "0", "白": 1}, "entry '赤': expected an int id in 0..1 (ids 0..N-1), got '0'"),
    ({"赤": 1.0, "白": 0}, "entry '赤': expected an int id in 0..1 (ids 0..N-1), got 1.0"),
    (["赤", "白", "赤"], "entry 2: expected each answer once, got '赤' again (entry 0)"),
    (["赤", 3], "entry 1: expected an answer string, got 3"),
    ({}, "top level: expected at least one answer, got none"),
    ("赤", "top level: expected a JSON object {answer: id} or a JSON list of answers, got str"),
])
def test_bad_answer_lists_are_one_line_errors_naming_the_file_and_entry(sources, tmp_path, capsys, value, message):
    bad = _write(tmp_path / "ans2label.json", value)
    err = _error(capsys, ["data", "prepare-jvg", "--qa", str(sources["qa"]), "--tags", str(sources["tags"]),
                          "--out", str(tmp_path / "vg"), "--ans2label", str(bad)])
    assert err == f"cvil data: {bad}: {message}"
    assert not (tmp_path / "vg").exists()  # refused before writing anything


def test_top_k_and_ans2label_together_are_a_usage_error(sources, tmp_path, capsys):
    given = _write(tmp_path / "ans2label.json", ["赤"])
    err = _error(capsys, ["data", "prepare-jvg", "--qa", str(sources["qa"]), "--tags", str(sources["tags"]),
                          "--out", str(tmp_path / "vg"), "--ans2label", str(given), "--top-k", "3000"])
    assert err.startswith("cvil data: --top-k and --ans2label contradict each other")
    assert not (tmp_path / "vg").exists()
