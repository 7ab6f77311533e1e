"""Bad data caught where it enters, as one line naming the file and the place (exit 2 from the CLI), never a
traceback, a silent drop or a NaN training run: packed-store integrity, QLA value ranges, empty or unlabelled val
splits, non-UTF-8 and deeply nested inputs, empty split/tag files, conflicting translations, a damaged world.json."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from cvil.cli import main
from cvil.data import feature_store, layout
from cvil.data.errors import DataFormatError
from cvil.data.feature_store import FEATURES_FILE, INDEX_FILE, PackedFeatureStore, pack_features
from cvil.data.label_maps import save_label_maps
from cvil.data.qla import read_qla
from cvil.data.region_features import PtDirSource
from cvil.errors import CvilError

D = 4
F16_NAN = b"\x00\x7e"
DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit in any JSON parser


def _one_line_error(capsys, argv) -> str:
    """Run the `cvil` CLI; the command must fail with exit 2 and exactly one stderr line, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------------------------
# 1. packed feature store integrity


def _pt_dir(folder, ids=(1, 2, 3, 4, 5, 6), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for img_id in ids:
        torch.save(torch.from_numpy(rng.standard_normal((img_id + 2, D)).astype(np.float32)), folder / f"{img_id}.pt")
    return folder


@pytest.fixture(autouse=True)
def _fresh_verification_cache():
    feature_store._verified.clear()
    feature_store._warned_unverifiable.clear()
    yield
    feature_store._verified.clear()


def _write_at(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_nan_bytes_written_into_a_packed_store_fail_its_checksum_on_open(tmp_path):
    """Before: the store opened and served NaN features (training ran with NaN losses)."""
    store_dir = tmp_path / "packed"
    pack_features(PtDirSource(_pt_dir(tmp_path / "train")), store_dir, progress=False)
    _write_at(store_dir / FEATURES_FILE, 10, F16_NAN * 3)  # same size: only the content changed
    with pytest.raises(DataFormatError) as err:
        PackedFeatureStore(store_dir)
    message = str(err.value)
    assert message.startswith(f"{store_dir / FEATURES_FILE}: block 0 of 1 (bytes 0-")
    assert f"packed store {store_dir} changed after packing; re-run `cvil data pack`" in message
    assert "\n" not in message and isinstance(err.value, CvilError)


def test_the_bad_block_and_its_images_are_named(tmp_path):
    store_dir = tmp_path / "packed"
    pack_features(PtDirSource(_pt_dir(tmp_path / "train")), store_dir, progress=False, block_bytes=64)
    index = json.loads((store_dir / INDEX_FILE).read_text())
    assert index["checksum"]["block_bytes"] == 64 and len(index["checksum"]["blocks"]) == -(-(39 * D * 2) // 64)
    offset_of_5 = index["ids"]["5"][0] * D * 2  # first byte of image 5's regions
    _write_at(store_dir / FEATURES_FILE, offset_of_5 + 8, F16_NAN)
    block = (offset_of_5 + 8) // 64
    assert block == 2  # bytes 128-191 = rows 16-23: the end of image 4 (rows 12-17) and image 5 (rows 18-24)
    with pytest.raises(DataFormatError, match=r"block 2 of 5 \(bytes 128-191, img_ids 4..5 \(2 images\)\): expected "
                                              r"the sha256 recorded in index.json"):
        PackedFeatureStore(store_dir)


def test_validate_reports_a_corrupted_store(tmp_path, capsys):
    folder = tmp_path / "vg"
    save_label_maps(folder, ["a", "b"])
    rows = [{"ja": "q", "o": "", "an": [0], "s": [1.0], "img_id": i} for i in (1, 2)]
    for split in ("train", "val"):
        layout.qla_path(folder, split).write_text(json.dumps(rows))
        pack_features(PtDirSource(_pt_dir(tmp_path / f"src-{split}", ids=(1, 2))),
                      layout.packed_store_path(folder, split), progress=False)
    _write_at(layout.packed_store_path(folder, "val") / FEATURES_FILE, 0, F16_NAN)
    assert main(["data", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"error: {layout.packed_store_path(folder, 'val') / FEATURES_FILE}: block 0 of 1" in out
    assert "re-run `cvil data pack`" in out


def test_an_unchanged_store_is_hashed_once_then_trusted_by_its_marker(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_store, "RACY_NS", 0)  # no 2 s wait: the file's timestamps are not racy here
    hashed = []
    original = PackedFeatureStore._check_blocks
    monkeypatch.setattr(PackedFeatureStore, "_check_blocks", lambda self, *a: (hashed.append(1), original(self, *a)))
    store_dir = tmp_path / "packed"
    pack_features(PtDirSource(_pt_dir(tmp_path / "train")), store_dir, progress=False)
    assert hashed == []  # the pack took the digests from the bytes it wrote
    PackedFeatureStore(store_dir)
    PackedFeatureStore(store_dir)
    assert len(hashed) == 1  # the second open: the in-process cache
    feature_store._verified.clear()  # a new process: the marker beside the store
    PackedFeatureStore(store_dir)
    assert len(hashed) == 1 and (tmp_path / ".packed.verified.json").is_file()
    assert sorted(p.name for p in store_dir.iterdir()) == [FEATURES_FILE, INDEX_FILE]  # the store folder untouched
    PackedFeatureStore(store_dir, verify=True)
    assert len(hashed) == 2
    data = (store_dir / FEATURES_FILE).read_bytes()
    (store_dir / FEATURES_FILE).write_bytes(data[:-2] + F16_NAN)  # rewritten: new mtime/ctime, so hashed again
    with pytest.raises(DataFormatError, match="changed after packing"):
        PackedFeatureStore(store_dir)


def test_a_change_right_after_verification_is_still_caught(tmp_path):
    """A write in the same timestamp tick as the verification keeps the mtime: such a marker is not trusted."""
    store_dir = tmp_path / "packed"
    pack_features(PtDirSource(_pt_dir(tmp_path / "train")), store_dir, progress=False)
    PackedFeatureStore(store_dir)
    _write_at(store_dir / FEATURES_FILE, 0, F16_NAN)
    with pytest.raises(DataFormatError, match="block 0 of 1"):
        PackedFeatureStore(store_dir)


def test_a_store_without_checksums_opens_with_a_warning(tmp_path, caplog):
    store_dir = tmp_path / "packed"
    packed = pack_features(PtDirSource(_pt_dir(tmp_path / "train")), store_dir, progress=False)
    index = json.loads((store_dir / INDEX_FILE).read_text())
    del index["checksum"]
    index["version"] = 1
    (store_dir / INDEX_FILE).write_text(json.dumps(index))
    with caplog.at_level(logging.WARNING, logger="cvil.data.feature_store"):
        old = PackedFeatureStore(store_dir)
        PackedFeatureStore(store_dir)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and f"packed store {store_dir} has no block checksums" in warnings[0]
    assert "re-run `cvil data pack`" in warnings[0]
    assert torch.equal(old.get(3, 10)[0], packed.get(3, 10)[0])  # reads unchanged


def test_a_damaged_checksum_entry_is_named(tmp_path):
    store_dir = tmp_path / "packed"
    pack_features(PtDirSource(_pt_dir(tmp_path / "train")), store_dir, progress=False)
    index = json.loads((store_dir / INDEX_FILE).read_text())
    index["checksum"]["blocks"] = []
    (store_dir / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(DataFormatError, match=r"index.json: checksum: expected"):
        PackedFeatureStore(store_dir)


def test_pack_refuses_non_finite_values_naming_the_image(tmp_path):
    """(Already refused before these fixes, by `check_features`; kept here as the pack-time half of item 1.)"""
    folder = _pt_dir(tmp_path / "train")
    torch.save(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), folder / "4.pt")
    with pytest.raises(DataFormatError, match=r"4.pt: img_id 4: expected finite features, got NaN/inf at region 0"):
        pack_features(PtDirSource(folder), tmp_path / "packed", progress=False)
    assert not (tmp_path / "packed" / INDEX_FILE).exists()


# ---------------------------------------------------------------------------------------------------------------
# 2. value ranges in QLA rows


def _row(**fields):
    return {"ja": "猫は何色ですか", "o": "cat", "an": [1, 0], "s": [1.0, 0.3], "img_id": 7} | fields


@pytest.mark.parametrize("fields, where, got", [
    ({"s": [1e30, 0.3]}, "row 1 field 's'[0]: expected a soft score in [0, 1]", "got 1e+30"),
    ({"s": [1.0, -0.3]}, "row 1 field 's'[1]: expected a soft score in [0, 1]", "got -0.3"),
    ({"img_id": -3}, "row 1 field 'img_id': expected an image id >= 0", "got -3"),
    ({"an": [1, -1]}, "row 1 field 'an'[1]: expected a label id >= 0", "got -1"),
])
def test_out_of_range_values_are_named(tmp_path, capsys, fields, where, got):
    """Before: read, validated and trained on (a score of 1e30 in a BCE target, img_id -3)."""
    folder = tmp_path / "vg"
    save_label_maps(folder, ["a", "b"])
    path = layout.qla_path(folder, "train")
    path.write_text(json.dumps([_row(), _row(**fields)], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        read_qla(path)
    assert str(err.value) == f"{path}: {where}, {got}"
    assert main(["data", "validate", str(folder)]) == 1
    assert f"error: {path}: {where}, {got}" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# 3. an empty or unlabelled val split


@pytest.mark.parametrize("val_rows, got", [
    ([], "got no rows"),
    ([_row(an=[], s=[]), _row(an=[], s=[])], "got 2 rows, none labelled"),
])
def test_validate_refuses_a_val_split_without_a_labelled_row(tmp_path, capsys, val_rows, got):
    """Before: `validate` said OK, and a run selecting checkpoints on val had nothing to select on."""
    folder = tmp_path / "vg"
    save_label_maps(folder, ["a", "b"])
    _pt_dir(layout.feature_dir(folder, "train"), ids=(7,))
    _pt_dir(layout.feature_dir(folder, "val"), ids=(7,))
    layout.qla_path(folder, "train").write_text(json.dumps([_row()]), encoding="utf-8")
    val = layout.qla_path(folder, "val")
    val.write_text(json.dumps(val_rows), encoding="utf-8")
    assert main(["data", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert (f"error: {val}: all rows: expected at least one labelled row (runs score the val split to select "
            f"checkpoints: `select: val_score`), {got}") in out


# ---------------------------------------------------------------------------------------------------------------
# 4. any input file, any bytes; empty tag and split files


def _jvg_sources(folder):
    """The smallest prepare-jvg inputs: 6 images with 2 questions each, their detections, a split folder."""
    folder.mkdir(parents=True, exist_ok=True)
    qas = [{"id": img, "qas": [{"qa_id": 10 * img + k, "image_id": img, "question": f"質問{k}", "answer": a}
                               for k, a in enumerate(["白", "青"])]} for img in range(1, 7)]
    (folder / "qa.json").write_text(json.dumps(qas, ensure_ascii=False), encoding="utf-8")
    (folder / "image_labels.tsv").write_text("".join(
        f'{img}\t{{"objects": [{{"class": "car", "rect": [0, 0, 1, 1], "conf": 0.9}}]}}\n' for img in range(1, 7)))
    (folder / "splits").mkdir()
    for split, ids in {"train": [1, 2, 3, 4], "val": [5], "test": [6]}.items():
        (folder / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return folder


def _prepare_argv(src, out, *extra):
    return ["data", "prepare-jvg", "--qa", str(src / "qa.json"), "--tags", str(src / "image_labels.tsv"),
            "--splits", str(src / "splits"), "--out", str(out), "--top-k", "2", *extra]


def test_prepare_jvg_sources_as_given_work(tmp_path, capsys):
    src = _jvg_sources(tmp_path / "src")
    assert main(_prepare_argv(src, tmp_path / "vg")) == 0
    assert "warnings" not in json.loads(capsys.readouterr().out)


def test_non_utf8_tag_file_is_one_line(tmp_path, capsys):
    """Before: a UnicodeDecodeError traceback."""
    src = _jvg_sources(tmp_path / "src")
    tags = src / "image_labels.tsv"
    lines = tags.read_bytes().splitlines(keepends=True)
    bad_line = b"2\t{\"objects\": [], \"note\": \"\xff\"}\n"
    tags.write_bytes(lines[0] + bad_line)
    err = _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))
    at = bad_line.index(b"\xff")
    assert err == (f"cvil data: {tags}: line 2 byte {at + 1} (byte {len(lines[0]) + at} of the file): expected UTF-8 "
                   "text, got invalid start byte")


def test_deeply_nested_json_in_the_tag_file_is_one_line(tmp_path, capsys):
    """Before: a RecursionError traceback."""
    src = _jvg_sources(tmp_path / "src")
    (src / "image_labels.tsv").write_text(f"1\t{DEEP}\n")
    err = _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))
    assert err == (f"cvil data: {src / 'image_labels.tsv'}: line 1: expected JSON nested at most ~1000 levels deep, "
                   "got deeper")


def test_deeply_nested_or_non_utf8_question_file_is_one_line(tmp_path, capsys):
    src = _jvg_sources(tmp_path / "src")
    (src / "qa.json").write_text(DEEP)
    assert "qa.json: nesting: expected JSON nested at most ~1000 levels deep" in _one_line_error(
        capsys, _prepare_argv(src, tmp_path / "vg"))
    (src / "qa.json").write_bytes(b'[{"id": 1, "qas": "\xc3"}]')
    assert "qa.json: byte 19: expected UTF-8 text" in _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))


def test_non_utf8_split_file_is_one_line(tmp_path, capsys):
    """Before: a UnicodeDecodeError traceback."""
    src = _jvg_sources(tmp_path / "src")
    (src / "splits" / "test.txt").write_bytes(b"6\n\xe3\x81\n")
    err = _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))
    assert err == (f"cvil data: {src / 'splits' / 'test.txt'}: line 2 byte 1 (byte 2 of the file): expected UTF-8 "
                   "text, got invalid continuation byte")


def test_an_empty_tag_file_is_refused(tmp_path, capsys):
    """Before: exit 0, every row written with `o: ""`."""
    src = _jvg_sources(tmp_path / "src")
    (src / "image_labels.tsv").write_bytes(b"")
    err = _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))
    assert err == (f"cvil data: {src / 'image_labels.tsv'}: file: expected the detections of the images, one line "
                   'each (img_id \\t {"objects": [...]}), got no image lines (0 bytes)')
    assert not (tmp_path / "vg").exists()


def test_an_empty_split_file_is_refused_unless_allowed(tmp_path, capsys, caplog):
    """Before: exit 0 with an empty val split (and then training had nothing to select checkpoints on)."""
    src = _jvg_sources(tmp_path / "src")
    val = src / "splits" / "val.txt"
    val.write_text("")
    err = _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))
    assert err == (f"cvil data: {val}: file: expected the val image ids, one per line, got none (0 bytes): an empty "
                   "val split (pass --allow-empty-splits to write it anyway)")
    assert not (tmp_path / "vg").exists()
    with caplog.at_level(logging.WARNING, logger="cvil.data.prepare.jvg"):
        assert main(_prepare_argv(src, tmp_path / "vg", "--allow-empty-splits")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["warnings"] == [f"{val}: file: expected the val image ids, one per line, got none (0 bytes): an "
                                  "empty val split; written anyway (--allow-empty-splits)"]
    assert [r.getMessage() for r in caplog.records] == ["WARNING: " + report["warnings"][0]]


def test_a_split_whose_images_have_no_questions_is_refused(tmp_path, capsys):
    src = _jvg_sources(tmp_path / "src")
    (src / "splits" / "test.txt").write_text("99\n")
    err = _one_line_error(capsys, _prepare_argv(src, tmp_path / "vg"))
    assert err == (f"cvil data: {src / 'splits' / 'test.txt'}: test split: expected at least one question, got none "
                   "of its 1 images has a question in qa.json (pass --allow-empty-splits to write it anyway)")


def _add_language_inputs(tmp_path, tsv: bytes):
    qla = tmp_path / "train2014_qla_mrcnn.json"
    qla.write_text(json.dumps([{"en": "What color is the car?", "o": "car", "an": [0], "s": [1.0], "img_id": 1},
                               {"en": "Where is the cat?", "o": "cat", "an": [1], "s": [1.0], "img_id": 1}]))
    (tmp_path / "mt.tsv").write_bytes(tsv)
    (tmp_path / "align.txt").write_text("4-0\n3-0\n")
    return ["data", "add-language", "--qla", str(qla), "--lang", "ja", "--translations", str(tmp_path / "mt.tsv"),
            "--alignments", str(tmp_path / "align.txt"), "--out", str(tmp_path / "ja.json")]


GOOD_TSV = "What color is the car?\t車は何色ですか？\nWhere is the cat?\t猫はどこにいますか？\n".encode()


def test_add_language_inputs_as_given_work(tmp_path, capsys):
    assert main(_add_language_inputs(tmp_path, GOOD_TSV)) == 0


def test_non_utf8_translations_and_alignments_are_one_line(tmp_path, capsys):
    """Before: UnicodeDecodeError tracebacks."""
    argv = _add_language_inputs(tmp_path, GOOD_TSV.replace("猫".encode(), b"\x8c\x4c"))  # Shift-JIS bytes
    first = len("What color is the car?\t車は何色ですか？\n".encode())
    assert _one_line_error(capsys, argv) == (f"cvil data: {tmp_path / 'mt.tsv'}: line 2 byte 19 (byte {first + 18} "
                                             "of the file): expected UTF-8 text, got invalid start byte")
    argv = _add_language_inputs(tmp_path, GOOD_TSV)
    (tmp_path / "align.txt").write_bytes(b"4-0\n3-0\xa0\n")
    assert _one_line_error(capsys, argv) == (f"cvil data: {tmp_path / 'align.txt'}: line 2 byte 4 (byte 7 of the "
                                             "file): expected UTF-8 text, got invalid start byte")


def test_deeply_nested_qla_is_one_line_in_add_language(tmp_path, capsys):
    argv = _add_language_inputs(tmp_path, GOOD_TSV)
    (tmp_path / "train2014_qla_mrcnn.json").write_text(DEEP)
    assert _one_line_error(capsys, argv) == (f"cvil data: {tmp_path / 'train2014_qla_mrcnn.json'}: nesting: expected "
                                             "JSON nested at most ~1000 levels deep, got deeper")


def test_non_utf8_hindi_translations_are_one_line(tmp_path, capsys):
    """Before: a UnicodeDecodeError traceback."""
    save_label_maps(tmp_path / "vqa", ["yes", "no"])
    (tmp_path / "answers.tsv").write_bytes("yes\tहाँ\n".encode() + b"no\t\xe0\xa4\n")
    err = _one_line_error(capsys, ["data", "hindi-classes", "--ans2label", str(tmp_path / "vqa" / layout.ANS2LABEL),
                                   "--translations", str(tmp_path / "answers.tsv"), "--out", str(tmp_path / "vqa")])
    first = len("yes\tहाँ\n".encode())
    assert err == (f"cvil data: {tmp_path / 'answers.tsv'}: line 2 byte 4 (byte {first + 3} of the file): expected "
                   "UTF-8 text, got invalid continuation byte")


# ---------------------------------------------------------------------------------------------------------------
# 5. duplicates that disagree


def test_add_language_names_two_different_translations_of_one_question(tmp_path, capsys):
    """Before: the first line was kept and the second counted as a plain duplicate (hindi-classes refused it)."""
    tsv = GOOD_TSV + "What color is the car?\t車の色は何ですか？\n".encode()
    argv = _add_language_inputs(tmp_path, tsv)
    (tmp_path / "align.txt").write_text("4-0\n3-0\n0-0\n")
    assert _one_line_error(capsys, argv) == (f"cvil data: {tmp_path / 'mt.tsv'}: line 3: expected one translation of "
                                             "'What color is the car?', got '車の色は何ですか？' here, '車は何色ですか？' "
                                             "at line 1")
    (tmp_path / "mt.tsv").write_bytes(GOOD_TSV + "What color is the car?\t 車は何色ですか？\n".encode())
    assert main(argv) == 0  # the same translation again: counted, as before
    assert json.loads(capsys.readouterr().out)["duplicate_translation_lines"] == [3]


# ---------------------------------------------------------------------------------------------------------------
# 6. a truncated world.json


def test_a_truncated_world_manifest_is_one_line(tmp_path, capsys):
    """Before: a JSONDecodeError traceback."""
    world = tmp_path / "w"
    world.mkdir()
    (world / "world.json").write_text('{"generator": "cvil.data.synth", "preset": "ti')
    err = _one_line_error(capsys, ["demo", "--root", str(world), "--preset", "tiny"])
    assert err.startswith(f"cvil demo: {world / 'world.json'}: line 1 column ")
    assert err.endswith(f"(a truncated or damaged world manifest); rebuild the world: delete {world} and run the "
                        "command again")
