"""`cvil data pack` and `cvil data validate`, run in-process through the real `cvil` entry point."""

import json

import numpy as np
import torch

import cvil.data.validate  # noqa: F401  (imports NLTK, ~1.5 s: paid once at collection, not inside a test)
from cvil.cli import main
from cvil.data import layout
from cvil.data.feature_store import PackedFeatureStore
from cvil.data.label_maps import save_label_maps

D = 4


def qla_row(img_id, an, **extra):
    return {"en": "What color is the cat?", "ja": "猫は何色ですか", "o": "cat", "an": an, "s": [1.0] * len(an),
            "img_id": img_id, "q_id": img_id * 10 + len(an), "ja-en": [["猫", "cat", "4"], ["は"]], **extra}


def make_dataset(folder):
    """A tiny JVG-like folder: 3 splits, labels, per-image features, the `.unknown` file and image labels."""
    save_label_maps(folder, ["白", "黒"])
    rng = np.random.default_rng(0)
    for split, ids in {"train": [1, 2], "val": [3], "test": [4, 5]}.items():
        rows = [qla_row(i, [i % 2]) for i in ids] + [qla_row(ids[0], [])]
        layout.qla_path(folder, split).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        feature_dir = layout.feature_dir(folder, split)
        feature_dir.mkdir()
        for i in ids:
            torch.save(torch.from_numpy(rng.standard_normal((i + 1, D)).astype(np.float32)), feature_dir / f"{i}.pt")
    unknown = [qla_row(4, [0], answer="白"), qla_row(5, [], answer="白色")]
    layout.unknown_path(folder).write_text(json.dumps(unknown, ensure_ascii=False), encoding="utf-8")
    (folder / layout.IMAGE_LABELS).write_text('1\t{"objects": []}\n')
    return folder


def test_validate_reports_counts_for_a_root(tmp_path, capsys):
    make_dataset(tmp_path / "vg")
    (tmp_path / "vqa").mkdir()  # a ROOT: both subfolders are validated; the empty one fails
    assert main(["data", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    vqa, vg = out.split(f"{tmp_path / 'vg'}: 2 labels")
    assert "train: 2 rows kept of 3" in vg and "dropped 1 (33.3%): empty `an`" in vg
    assert "images: 2 distinct, 2 with features (train/*.pt, dim 4)" in vg
    assert "labels: 2/3 rows labelled (66.7%)" in vg and "test: 3 rows kept of 3" in vg
    assert "ja-en: 100.0% of rows aligned, 2/4 words aligned (50.0%), 0 en_word/en_idx mismatches" in vg
    assert "test-dev2015_qla_mrcnn.json.unknown: 2 rows" in vg and "answer strings equal to their label: 1/1" in vg
    assert "warning: " in vg and "1 train images have no detections" in vg and "OK" in vg
    assert ("answer lengths (2 test answers, 2 distinct; fugashi tokens): mean 1.00, 0.0% with >= 3 tokens, "
            "top-K coverage 50.0% [1: 2]") in vg
    assert "vqa/trainval_ans2label.pkl: file: expected a label map pickle" in vqa
    assert main(["data", "validate", str(tmp_path / "vg")]) == 0


def test_validate_lists_every_error_of_a_broken_folder(tmp_path, capsys):
    folder = make_dataset(tmp_path)
    (folder / "train" / "2.pt").unlink()
    torch.save(torch.full((2, D), float("nan")), folder / "val" / "3.pt")
    for img_id in (4, 5):
        torch.save(torch.zeros(2, D + 1), folder / "test-dev2015" / f"{img_id}.pt")
    rows = json.loads(layout.qla_path(folder, "train").read_text())
    rows[0]["an"], rows[0]["s"] = [7], [1.0]
    rows[0]["ja-en"] = [["猫", "cat", 99]]
    layout.qla_path(folder, "train").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert main(["data", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "5 error(s)" in out
    assert "train2014_qla_mrcnn.json: row 1 img_id 2: expected region features in train/*.pt, got none found" in out
    assert "train2014_qla_mrcnn.json: row 0: expected label ids in [0, 2), got unknown label id 7" in out
    assert "row 0 field 'ja-en'[0]: expected en_idx < 6" in out
    assert "val/3.pt: img_id 3: expected finite features" in out
    assert "expected one feature dim across splits, got [4, 5]" in out


def test_pack_then_validate_uses_the_packed_store(tmp_path, capsys):
    folder = make_dataset(tmp_path)
    for split in layout.SPLITS:
        out = layout.packed_store_path(folder, split)
        args = ["data", "pack", "--source", "pt-dir", "--input", str(layout.feature_dir(folder, split)), "--out", str(out)]
        assert main(args) == 0
    assert PackedFeatureStore(layout.packed_store_path(folder, "train")).ids() == [1, 2]
    assert main(["data", "validate", str(folder)]) == 0
    assert "with features (packed packed/train/, dim 4)" in capsys.readouterr().out


def test_pack_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    args = ["data", "pack", "--source", "tsv", "--input", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "o")]
    assert main(args) == 2  # before: exit 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.tsv: file: expected a VinVL feature TSV, got no such file" in err
    assert main(["data", "pack", "--source", "pt-dir", "--input", str(tmp_path), "--offset-map", str(tmp_path / "m"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == "cvil data: --offset-map only applies to tsv sources, not 'pt-dir'\n"
    assert not (tmp_path / "o").exists()  # nothing written


def _write_release_tsv(folder, split, ids, rng):
    """The release's `{split}_img_frcnn_feats.tsv` (img_id, num_boxes, base64 float32) and its offset map."""
    import base64

    tsv, offsets, _ = layout.release_feature_files(folder, split)
    offset_map, position = {}, 0
    with open(tsv, "wb") as f:
        for i in ids:
            feats = rng.standard_normal((i + 1, D)).astype(np.float32)
            line = f"{i}\t{i + 1}\t{base64.b64encode(feats.tobytes()).decode()}\n".encode()
            offset_map[str(i)], position = position, position + len(line)
            f.write(line)
    offsets.write_text(json.dumps(offset_map), encoding="utf-8")
    return tsv, offsets


def test_validate_names_the_release_tsv_and_the_pack_command(tmp_path, capsys):
    import shlex
    import shutil

    folder = make_dataset(tmp_path)
    shutil.rmtree(layout.feature_dir(folder, "train"))
    tsv, offsets = _write_release_tsv(folder, "train", [1, 2], np.random.default_rng(1))
    assert main(["data", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    command = (f"cvil data pack --source tsv --input {tsv} --offset-map {offsets} "
               f"--out {layout.packed_store_path(folder, 'train')}")
    assert f"found {tsv} (the release's TSV feature layout)" in out and f"`{command}`" in out
    assert main(shlex.split(command)[1:]) == 0  # the printed command works as printed
    assert main(["data", "validate", str(folder)]) == 0


def test_pack_max_regions_and_workers_options(tmp_path, capsys):
    import numpy as np
    import torch

    from cvil.data.feature_store import PackedFeatureStore

    folder = tmp_path / "pt"
    folder.mkdir()
    for img_id, n in ((1, 9), (2, 3)):
        torch.save(torch.from_numpy(np.ones((n, 4), dtype=np.float32)), folder / f"{img_id}.pt")
    args = ["data", "pack", "--source", "pt-dir", "--input", str(folder), "--out", str(tmp_path / "out"),
            "--max-regions", "5", "--workers", "2"]
    assert main(args) == 0
    assert "packed 2 images, 8 regions (first 5 per image) x 4 (float16)" in capsys.readouterr().out
    assert PackedFeatureStore(tmp_path / "out").max_regions == 5
    tsv = ["data", "pack", "--source", "tsv", "--input", str(tmp_path / "f.tsv"), "--out", str(tmp_path / "o"),
           "--workers", "2"]
    assert main(tsv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers reads per-image files in parallel: it applies to --source pt-dir" in err[0]
