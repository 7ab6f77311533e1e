"""Where things live in a dataset folder: the file names of the released cViL/Oscar layout.

The reference reuses VQA v2's file names for every dataset (`train2014_qla_mrcnn.json` even for Japanese Visual
Genome), so the names are fixed here once and every reader and writer asks this module.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")
QLA_STEM = {"train": "train2014", "val": "val2014", "test": "test-dev2015"}
FEATURE_DIR = {"train": "train", "val": "val", "test": "test-dev2015"}
ANS2LABEL = "trainval_ans2label.pkl"
LABEL2ANS = "trainval_label2ans.pkl"
IMAGE_LABELS = "image_labels.tsv"
UNKNOWN_SUFFIX = ".unknown"
HINDI_CLASSES = "hi_ans2label.json"


def _check_split(split: str) -> None:
    if split not in QLA_STEM:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def qla_path(folder: str | Path, split: str) -> Path:
    """The QLA JSON file of a split, e.g. `vg/val2014_qla_mrcnn.json`."""
    _check_split(split)
    return Path(folder) / f"{QLA_STEM[split]}_qla_mrcnn.json"


def unknown_path(folder: str | Path) -> Path:
    """The JVG test file with every test question and its answer string (`test-dev2015_qla_mrcnn.json.unknown`)."""
    return qla_path(folder, "test").with_name(qla_path(folder, "test").name + UNKNOWN_SUFFIX)


def feature_dir(folder: str | Path, split: str) -> Path:
    """The folder of per-image feature files `{img_id}.pt` of a split."""
    _check_split(split)
    return Path(folder) / FEATURE_DIR[split]


def packed_store_path(folder: str | Path, split: str) -> Path:
    """Where `cvil data pack` writes the memory-mapped store of a split by default."""
    _check_split(split)
    return Path(folder) / "packed" / FEATURE_DIR[split]


def release_feature_files(folder: str | Path, split: str) -> tuple[Path, Path, Path]:
    """The release's whole-split feature files: the VinVL TSV, its offset map and the VinVL dict `.pt`
    (`{split}_img_frcnn_feats.tsv`, `..._offset_map.json`, `{split}_img_frcnn_feats.pt`)."""
    _check_split(split)
    stem = Path(folder) / f"{FEATURE_DIR[split]}_img_frcnn_feats"
    return stem.with_suffix(".tsv"), stem.with_name(stem.name + "_offset_map.json"), stem.with_suffix(".pt")


def pack_hint(folder: str | Path, split: str) -> str:
    """When a split has features only in a release whole-split file: the file found and the command converting it
    to the packed store training reads; "" when there is none."""
    tsv, offsets, vinvl = release_feature_files(folder, split)
    out = packed_store_path(folder, split)
    if tsv.is_file():
        offset_arg = f" --offset-map {offsets}" if offsets.is_file() else ""
        return (f"found {tsv} (the release's TSV feature layout): convert it with "
                f"`cvil data pack --source tsv --input {tsv}{offset_arg} --out {out}`")
    if vinvl.is_file():
        return (f"found {vinvl} (the release's VinVL dict layout): convert it with "
                f"`cvil data pack --source vinvl-pt --input {vinvl} --out {out}`")
    return ""
