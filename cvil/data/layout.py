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
