"""End-to-end check of a dataset folder (`ROOT/vqa`, `ROOT/vg`): everything training will read, read once.

A training run that dies on image 90,000 of epoch 3, or silently learns from half its rows, is far more expensive
than one pass over the data up front. `validate_dataset` reads every QLA file, the label maps, the features of every
referenced image and the `.unknown` file, collects **all** problems (not just the first) and counts what a
researcher wants to know before training: rows, dropped rows and why, images with features, label and alignment
coverage, feature width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.image_labels import read_image_labels
from cvil.data.label_maps import LabelMaps, load_label_maps
from cvil.data.qla import QLAFile, is_aligned, read_qla, read_unknown
from cvil.data.split_features import SplitFeatures, open_split_features
from cvil.data.text import english_words


@dataclass
class AlignmentStats:
    rows: int = 0
    rows_aligned: int = 0  # rows carrying a `{lang}-en` field
    words: int = 0
    words_aligned: int = 0
    word_mismatches: int = 0  # en_word differs from the NLTK token at en_idx


@dataclass
class SplitReport:
    name: str
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    images: int = 0
    images_with_features: int = 0
    feature_source: str = "none"
    feature_dim: int | None = None
    labelled_rows: int = 0
    alignments: dict[str, AlignmentStats] = field(default_factory=dict)
    answers_matching_label: int | None = None  # `.unknown` only: covered rows whose answer string is the label's
    row_keys: str = ""  # how rows are keyed: `q_id`, or `position@<digest>` (no unique q_ids: real train/val)


@dataclass
class DatasetReport:
    folder: Path
    num_labels: int | None = None
    splits: list[SplitReport] = field(default_factory=list)
    image_label_images: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _check_features(qla: QLAFile, features: SplitFeatures, report: SplitReport, errors: list[str]) -> None:
    first_row: dict[int, int] = {}
    for row, file_index in zip(qla.rows, qla.file_indices()):
        first_row.setdefault(row.img_id, file_index)
    report.images = len(first_row)
    known = set(features.ids())
    widths: dict[int, list[int]] = {}
    for img_id, file_index in sorted(first_row.items()):
        if img_id not in known:
            errors.append(str(DataFormatError(qla.path, f"row {file_index} img_id {img_id}",
                                              f"region features in {features.description}", "none found")))
            continue
        try:
            width = features.width(img_id)
        except DataFormatError as exc:
            errors.append(str(exc))
            continue
        report.images_with_features += 1
        if width >= 0:
            widths.setdefault(width, []).append(img_id)
    if len(widths) > 1:  # blame the images in the minority, not whichever image happened to come first
        usual = max(widths, key=lambda w: (len(widths[w]), -w))
        for width, ids in sorted(widths.items()):
            if width != usual:
                where = features.root / f"{ids[0]}.pt" if features.source is not None else features.root
                more = f" and {len(ids) - 1} more" if ids[1:] else ""
                errors.append(str(DataFormatError(where, f"img_id {ids[0]}{more}",
                                                  f"feature dim {usual} (as {len(widths[usual])} other images)",
                                                  f"dim {width}")))
    report.feature_dim = max(widths, key=lambda w: (len(widths[w]), -w)) if widths else None
    report.feature_source = features.description


def _check_labels(qla: QLAFile, labels: LabelMaps, report: SplitReport, errors: list[str]) -> None:
    for row, file_index in zip(qla.rows, qla.file_indices()):
        report.labelled_rows += bool(row.answer_ids)
        for label in row.answer_ids:
            if not 0 <= label < labels.num_labels:
                errors.append(str(DataFormatError(qla.path, f"row {file_index}",
                                                  f"label ids in [0, {labels.num_labels})", f"unknown label id {label}")))


def _check_alignments(qla: QLAFile, report: SplitReport, errors: list[str]) -> None:
    for row, file_index in zip(qla.rows, qla.file_indices()):
        english = english_words(row.questions["en"]) if "en" in row.questions else None
        for lang in row.questions.keys() - {"en"}:
            stats = report.alignments.setdefault(lang, AlignmentStats())
            stats.rows += 1
            entries = row.alignments.get(lang)
            if entries is None:
                continue
            stats.rows_aligned += 1
            stats.words += len(entries)
            for k, entry in enumerate(entries):
                if not is_aligned(entry):
                    continue
                stats.words_aligned += 1
                _, en_word, en_idx = entry
                where = f"row {file_index} field '{lang}-en'[{k}]"
                if english is None:
                    errors.append(str(DataFormatError(qla.path, where, "an `en` question for en_idx to index", "none")))
                elif en_idx >= len(english):
                    errors.append(str(DataFormatError(
                        qla.path, where, f"en_idx < {len(english)} (the NLTK words of the `en` question)", en_idx)))
                elif english[en_idx] != en_word:
                    stats.word_mismatches += 1


def _check_split(folder: Path, split: str, labels: LabelMaps | None, report: DatasetReport,
                 features: dict[str, SplitFeatures | None], unknown: bool = False) -> None:
    path = layout.unknown_path(folder) if unknown else layout.qla_path(folder, split)
    split_report = SplitReport(name=path.name if unknown else split)
    try:
        qla = read_unknown(path) if unknown else read_qla(path, drop_empty=split != "test")
    except DataFormatError as exc:
        report.errors.append(str(exc))
        return
    split_report.rows, split_report.dropped = len(qla.rows), dict(qla.dropped.by_reason)
    split_report.row_keys = qla.key_description
    if split in ("train", "val") and not unknown and not qla.rows:  # (train and val rows without a label are dropped)
        total = qla.dropped.total
        purpose = ("to train on" if split == "train" else
                   "(runs score the val split to select checkpoints: `select: val_score`)")
        report.errors.append(str(DataFormatError(path, "all rows", f"at least one labelled row {purpose}",
                                                 f"{total} rows, none labelled" if total else "no rows")))
    report.splits.append(split_report)
    if split not in features:  # the `.unknown` file shares the test split's features: open (and report) them once
        try:
            features[split] = open_split_features(folder, split)
            if features[split].stale:
                report.warnings.append(f"{layout.packed_store_path(folder, split)}: out of date (the files in "
                                       f"{layout.feature_dir(folder, split)} changed since it was packed); training "
                                       f"rebuilds it, so the per-image files were checked")
        except DataFormatError as exc:
            features[split] = None
            report.errors.append(str(exc))
    if features[split] is not None:
        _check_features(qla, features[split], split_report, report.errors)
    if labels is not None:
        _check_labels(qla, labels, split_report, report.errors)
        if unknown:
            split_report.answers_matching_label = sum(
                1 for row in qla.rows if row.answer_ids and 0 <= row.answer_ids[0] < labels.num_labels
                and labels.label2ans[row.answer_ids[0]] == row.extra["answer"])
    _check_alignments(qla, split_report, report.errors)


def validate_dataset(folder: str | Path) -> DatasetReport:
    """Validate one dataset folder; never raises on bad data: every problem lands in `report.errors`."""
    folder = Path(folder)
    report = DatasetReport(folder=folder)
    labels = None
    try:
        labels = load_label_maps(folder)
        report.num_labels = labels.num_labels
    except DataFormatError as exc:
        report.errors.append(str(exc))
    features: dict[str, SplitFeatures | None] = {}
    for split in layout.SPLITS:
        if layout.qla_path(folder, split).exists():
            _check_split(folder, split, labels, report, features)
        else:
            report.warnings.append(f"{layout.qla_path(folder, split)}: no {split} split")
    if layout.unknown_path(folder).exists():
        _check_split(folder, "test", labels, report, features, unknown=True)
    if (folder / layout.IMAGE_LABELS).exists():
        _check_image_labels(folder, report)
    if (folder / PREPARE_REPORT).exists():
        _check_prepare_report(folder, report)
    if not report.splits and not any(e.startswith(str(folder)) for e in report.errors):
        report.errors.append(f"{folder}: expected QLA files ({layout.qla_path(folder, 'train').name}, ...), got none")
    dims = {s.feature_dim for s in report.splits if s.feature_dim is not None}
    if len(dims) > 1:
        report.errors.append(f"{folder}: expected one feature dim across splits, got {sorted(dims)}")
    report.errors = list(dict.fromkeys(report.errors))  # the `.unknown` file re-reports the test split's images
    return report


PREPARE_REPORT = "prepare_report.json"  # written by `cvil data prepare-jvg`


def _check_prepare_report(folder: Path, report: DatasetReport) -> None:
    """Files edited or re-prepared after `prepare-jvg` disagree with its report: say which, so a stale mix is seen."""
    from cvil.data.json_file import load_json

    try:
        prepared = load_json(folder / PREPARE_REPORT, "a prepare-jvg report")
        expected = {s: prepared["splits"][s]["rows_written"] for s in layout.SPLITS}
        expected["unknown"], labels = prepared["splits"]["test"]["unknown_rows"], prepared["num_labels"]
    except DataFormatError as exc:
        report.errors.append(str(exc))
        return
    except (ValueError, KeyError, TypeError) as exc:
        report.errors.append(f"{folder / PREPARE_REPORT}: expected a prepare-jvg report, got {type(exc).__name__}: {exc}")
        return
    names = {layout.qla_path(folder, s).name: s for s in layout.SPLITS} | {layout.unknown_path(folder).name: "unknown"}
    for s in report.splits:
        key = s.name if s.name in expected else names.get(s.name)
        total = s.rows + sum(s.dropped.values())
        if key in expected and total != expected[key]:
            path = layout.unknown_path(folder) if key == "unknown" else layout.qla_path(folder, key)
            report.errors.append(str(DataFormatError(path, "rows", f"{expected[key]} rows (as {PREPARE_REPORT})", total)))
    if report.num_labels is not None and report.num_labels != labels:
        report.errors.append(str(DataFormatError(folder / layout.ANS2LABEL, "labels",
                                                 f"{labels} answers (as {PREPARE_REPORT})", report.num_labels)))


def _check_image_labels(folder: Path, report: DatasetReport) -> None:
    try:
        labels = read_image_labels(folder / layout.IMAGE_LABELS)
    except DataFormatError as exc:
        report.errors.append(str(exc))
        return
    report.image_label_images = len(labels)
    train = layout.qla_path(folder, "train")
    if train.exists():
        try:
            missing = {row.img_id for row in read_qla(train).rows} - labels.keys()
        except DataFormatError:
            return  # already reported by the split check
        if missing:  # the reference asserts this when extracting teacher features
            report.warnings.append(f"{folder / layout.IMAGE_LABELS}: {len(missing)} train images have no detections "
                                   f"(e.g. img_id {min(missing)})")


def dataset_folders(path: str | Path) -> list[Path]:
    """`path` itself, or its `vqa/`, `vg/` (and a synthetic world v3's `pretrain/`) subfolders when it is a dataset ROOT."""
    path = Path(path)
    children = [path / name for name in ("vqa", "vg", "pretrain") if (path / name).is_dir()]
    has_own = any(layout.qla_path(path, s).exists() for s in layout.SPLITS)
    return children if children and not has_own else [path]


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _describe_keys(row_keys: str) -> str:
    if row_keys.startswith("position"):
        return f"their position in the file ({row_keys}: the rows carry no unique non-zero q_id, as the release's)"
    return row_keys or "?"


def format_report(report: DatasetReport) -> str:
    """A human-readable summary: one block per split, then warnings and every error."""
    lines = [f"{report.folder}: {report.num_labels if report.num_labels is not None else '?'} labels"]
    for s in report.splits:
        total = s.rows + sum(s.dropped.values())
        lines.append(f"  {s.name}: {s.rows} rows kept of {total}; rows keyed by {_describe_keys(s.row_keys)}")
        for reason, count in sorted(s.dropped.items()):
            lines.append(f"    dropped {count} ({_pct(count, total)}): {reason}")
        lines.append(f"    images: {s.images} distinct, {s.images_with_features} with features "
                     f"({s.feature_source}, dim {s.feature_dim})")
        lines.append(f"    labels: {s.labelled_rows}/{total} rows labelled ({_pct(s.labelled_rows, total)})")
        if s.answers_matching_label is not None:
            lines.append(f"    answer strings equal to their label: {s.answers_matching_label}/{s.labelled_rows}")
        for lang, a in sorted(s.alignments.items()):
            lines.append(f"    {lang}-en: {_pct(a.rows_aligned, a.rows)} of rows aligned, "
                         f"{a.words_aligned}/{a.words} words aligned ({_pct(a.words_aligned, a.words)}), "
                         f"{a.word_mismatches} en_word/en_idx mismatches")
    if report.image_label_images is not None:
        lines.append(f"  {layout.IMAGE_LABELS}: {report.image_label_images} images")
    lines += [f"  warning: {w}" for w in report.warnings]
    if report.errors:
        lines.append(f"  {len(report.errors)} error(s):")
        lines += [f"  error: {e}" for e in report.errors]
    else:
        lines.append("  OK")
    return "\n".join(lines)
