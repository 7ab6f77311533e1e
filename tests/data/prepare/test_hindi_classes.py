"""`cvil data hindi-classes`: merged Hindi label maps, the English -> Hindi map, the report, target remapping."""

from __future__ import annotations

import json
import pickle

import pytest

from cvil.cli import main
from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.label_maps import load_label_maps, save_label_maps
from cvil.data.prepare.hindi_classes import build_hindi_classes, load_merged_label_set, remap_targets
from cvil.eval.hindi import load_hindi_classes

ANSWERS = ["yes", "up", "no", "above", "2", "two", "red"]
TSV = "yes\tहाँ\nup\tऊपर\nno\tनहीं\nabove\t ऊपर \n2\t2\ntwo\t2\nred\tलाल\nup\tऊपर\nblue\tनीला\n"


@pytest.fixture
def inputs(tmp_path):
    save_label_maps(tmp_path / "vqa", ANSWERS)
    (tmp_path / "answers.tsv").write_text(TSV, encoding="utf-8")
    return tmp_path / "vqa" / layout.ANS2LABEL, tmp_path / "answers.tsv"


def test_merged_classes_maps_and_report(inputs, tmp_path):
    ans2label, tsv = inputs
    out = tmp_path / "vqa"
    report = build_hindi_classes(ans2label=ans2label, translations=tsv, out=out)
    assert (report["english_classes"], report["hindi_classes"], report["merged_english_answers"]) == (7, 5, 4)
    assert report["merges"] == {"ऊपर": ["up", "above"], "2": ["2", "two"]}
    assert (report["duplicate_rows"], report["unused_rows"], report["untranslated"]) == (1, 1, [])
    classes = load_hindi_classes(out / layout.HINDI_CLASSES)  # what `cvil eval hindi` reads
    assert classes.labels == ("हाँ", "ऊपर", "नहीं", "2", "लाल") and classes.en_to_hi["above"] == "ऊपर"
    with open(out / "hi_trainval_ans2label.pkl", "rb") as fh:  # our own file: the release's pickle layout
        assert pickle.load(fh) == {"हाँ": 0, "ऊपर": 1, "नहीं": 2, "2": 3, "लाल": 4}
    labels, mapping = load_merged_label_set(out)
    assert mapping == [0, 1, 2, 1, 3, 3, 4]
    # a hand-written file without the id map (docs/architecture.md format) gives the same mapping
    data = json.loads((out / layout.HINDI_CLASSES).read_text(encoding="utf-8"))
    del data["en_label_to_hi_label"]
    (out / layout.HINDI_CLASSES).write_text(json.dumps(data), encoding="utf-8")
    assert load_merged_label_set(out) == (labels, mapping)
    assert load_label_maps(out).label2ans == ANSWERS  # the English maps are untouched


def test_deterministic(inputs, tmp_path):
    for name in ("a", "b"):
        build_hindi_classes(ans2label=inputs[0], translations=inputs[1], out=tmp_path / name)
    for name in (layout.HINDI_CLASSES, "hi_trainval_ans2label.pkl", "hi_trainval_label2ans.pkl",
                 "hindi_classes_report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_remap_targets_combines_merged_scores_by_max():
    mapping = [0, 1, 2, 1, 3, 3, 4]
    assert remap_targets([3, 1, 4], [0.3, 0.9, 0.6], mapping) == ((1, 3), (0.9, 0.6))
    assert remap_targets([5, 4], [1.0, 0.3], mapping) == ((3,), (1.0,))
    assert remap_targets([], [], mapping) == ((), ())


def test_missing_and_conflicting_translations(inputs, tmp_path, capsys):
    ans2label, tsv = inputs
    tsv.write_text(TSV.replace("red\tलाल\n", ""), encoding="utf-8")
    argv = ["data", "hindi-classes", "--ans2label", str(ans2label), "--translations", str(tsv), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cvil data: {tsv}: rows: expected a translation of every answer in trainval_ans2label.pkl, "
                   "got 1 missing, e.g. 'red' (or pass --allow-missing)")
    assert main([*argv, "--allow-missing"]) == 0
    assert load_hindi_classes(tmp_path / "o" / layout.HINDI_CLASSES).en_to_hi["red"] == "red"
    tsv.write_text(TSV + "up\tऊपर की ओर\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 10: expected one translation of 'up', got 'ऊपर की ओर' here, "
                                              "'ऊपर' at line 2"):
        build_hindi_classes(ans2label=ans2label, translations=tsv, out=tmp_path / "o")
    tsv.write_text("yes\tहाँ\textra\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1: expected 2 tab-separated columns"):
        build_hindi_classes(ans2label=ans2label, translations=tsv, out=tmp_path / "o")
