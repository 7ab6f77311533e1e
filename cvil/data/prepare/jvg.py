"""`cvil data prepare-jvg`: the Japanese Visual Genome VQA release -> the dataset folder the reference reads.

The release never shipped this conversion (reference §4.6 [GAP]); the rules here are ours, each stated once:
- input questions: Visual Genome's `question_answers.json` layout, a list of `{"id", "qas": [{"qa_id", "image_id",
  "question", "answer"}]}`; `q_id` = `qa_id` (unique), questions and answers kept as raw strings (白 ≠ 白色 ≠ 白です。);
- `o`: the VinVL detector classes of the image (`image_labels.tsv`), in file order, duplicates kept, those with
  `conf >= min_conf`, joined by `;` (the VQA files' tag format); an image without detections gets `o = ""`;
- splits are image-level: `train.txt`/`val.txt`/`test.txt` (one image id a line) or, without them, a split seeded
  by `seed` with the paper's image proportions 59,550 / 1,984 / 37,674 (val and test get at least one image);
- labels: the `top_k` most frequent train answers, ties broken by the answer string (code point order), id 0 = most
  frequent; rows are one-hot (`an: [id]`, `s: [1.0]`). Train/val/test files hold covered rows only; the `.unknown`
  file holds every test row with its `answer` string (`an: []` when uncovered), for string-level scoring.
The outputs are byte-identical for the same inputs and options.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.image_labels import read_image_labels
from cvil.data.label_maps import save_label_maps
from cvil.data.json_file import load_json
from cvil.data.prepare.common import progress, write_json

PAPER_SPLIT_IMAGES = {"train": 59_550, "val": 1_984, "test": 37_674}
REPORT = "prepare_report.json"
NOT_IN_SPLIT = "image in no split file"
UNCOVERED = "answer outside the top-K train answers"
_EXAMPLES = 5


@dataclass(frozen=True)
class QA:
    qa_id: int
    img_id: int
    question: str
    answer: str


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _locate(path: Path, key: str, value: object) -> str:
    """`line L column C` of the first `"key": value` in the file (for error messages only; VG files are one line)."""
    import re

    if not isinstance(value, int) or isinstance(value, bool):
        return ""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf'(?<![A-Za-z_])"{key}"\s*:\s*{value}(?![0-9])', text)
    if match is None:
        return ""
    line = text.count("\n", 0, match.start()) + 1
    return f"line {line} column {match.start() - text.rfind(chr(10), 0, match.start())} "


def read_question_answers(path: str | Path, *, show_progress: bool | None = None) -> list[QA]:
    """Every QA of a `question_answers.json`, in file order; a malformed entry raises naming its line, column and
    JSON path (VG files are one long line, so the path is what finds it)."""
    path = Path(path)
    data = load_json(path, "a Visual Genome question_answers.json")
    if not isinstance(data, list):
        raise DataFormatError(path, "top level", 'a JSON list of images {"id", "qas"}', type(data).__name__)

    def fail(at: str, expected: str, got: object, anchor: tuple[str, object]) -> DataFormatError:
        return DataFormatError(path, _locate(path, *anchor) + at, expected, got)

    out: list[QA] = []
    seen_qa: dict[int, str] = {}
    seen_img: dict[int, int] = {}
    for i, image in enumerate(progress(data, desc="reading QAs", total=len(data), enabled=show_progress)):
        where = f"[{i}]"
        img_id = image.get("id", image.get("image_id")) if isinstance(image, dict) else None
        if not isinstance(image, dict) or not isinstance(image.get("qas"), list):
            raise fail(where, 'an image {"id": int, "qas": [...]}', repr(image)[:80], ("id", img_id))
        if not _is_int(img_id):
            raise fail(f"{where} field 'id'", "an int image id", repr(img_id), ("id", img_id))
        if img_id in seen_img:
            raise fail(where, "each image once", f"image id {img_id} again (first at [{seen_img[img_id]}])",
                       ("id", None))
        seen_img[img_id] = i
        for k, qa in enumerate(image["qas"]):
            at = f"{where}.qas[{k}]"
            qa_id = qa.get("qa_id") if isinstance(qa, dict) else None
            anchor = ("qa_id", qa_id) if _is_int(qa_id) else ("id", img_id)
            if not isinstance(qa, dict):
                raise fail(at, 'a QA {"qa_id", "question", "answer"}', repr(qa)[:80], anchor)
            at += f" (qa_id {qa_id!r})"
            for name in ("qa_id", "question", "answer"):
                if name not in qa:
                    raise fail(at, f"field {name!r}", f"keys {sorted(qa)}", anchor)
            if not _is_int(qa_id):
                raise fail(at, "an int qa_id", repr(qa_id), anchor)
            for name in ("question", "answer"):
                if not isinstance(qa[name], str):
                    raise fail(f"{at} field {name!r}", "a string", repr(qa[name]), anchor)
            if qa.get("image_id", img_id) != img_id:
                raise fail(f"{at} field 'image_id'", f"the image's id {img_id}", repr(qa["image_id"]), anchor)
            if qa_id in seen_qa:
                raise fail(at, "each qa_id once", f"qa_id {qa_id} again (first at {seen_qa[qa_id]})", ("id", img_id))
            seen_qa[qa_id] = at
            out.append(QA(qa_id, img_id, qa["question"], qa["answer"]))
    return out


def read_split_files(folder: str | Path) -> dict[int, str]:
    """`{img_id: split}` from `train.txt`, `val.txt`, `test.txt`; an image listed twice is an error."""
    folder = Path(folder)
    split_of: dict[int, str] = {}
    where_of: dict[int, str] = {}
    for split in layout.SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            raise DataFormatError(path, "file", f"the {split} image ids, one per line", "no such file")
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip()
            if not text:
                continue
            try:
                img_id = int(text)
            except ValueError:
                raise DataFormatError(path, f"line {line_no}", "an integer image id", repr(text)) from None
            if img_id in split_of:
                raise DataFormatError(path, f"line {line_no}", "each image in exactly one split",
                                      f"image {img_id} already at {where_of[img_id]}")
            split_of[img_id], where_of[img_id] = split, f"{path.name} line {line_no}"
    return split_of


def seeded_split(img_ids: Iterable[int], seed: int) -> dict[int, str]:
    """Images shuffled by `seed` and cut in the paper's proportions (val and test at least 1 image when N >= 3)."""
    ids = sorted(set(img_ids))
    total = sum(PAPER_SPLIT_IMAGES.values())
    n_val = round(len(ids) * PAPER_SPLIT_IMAGES["val"] / total)
    n_test = round(len(ids) * PAPER_SPLIT_IMAGES["test"] / total)
    if len(ids) >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    random.Random(seed).shuffle(ids)
    split_of = {i: "val" for i in ids[:n_val]}
    split_of |= {i: "test" for i in ids[n_val : n_val + n_test]}
    split_of |= {i: "train" for i in ids[n_val + n_test :]}
    return split_of


def top_answers(answers: Iterable[str], k: int) -> list[str]:
    """The `k` most frequent answers; equal counts ordered by the answer string, so the set never depends on order."""
    counts = Counter(answers)
    return sorted(counts, key=lambda a: (-counts[a], a))[:k]


def image_tags(path: str | Path, min_conf: float | None) -> dict[int, str]:
    """`o` per image: detector classes in file order with `conf >= min_conf`, `;`-joined."""
    if not Path(path).is_file():
        raise DataFormatError(path, "file", "a VinVL image_labels.tsv (img_id \\t {\"objects\": [...]})", "no such file")
    labels = read_image_labels(path)
    return {img_id: ";".join(o.cls for o in objects if min_conf is None or o.conf >= min_conf)
            for img_id, objects in labels.items()}


def feature_ids(path: str | Path) -> set[int]:
    """Image ids with features: the keys of a VinVL offset map (`.json`) or the first column of a feature TSV."""
    path = Path(path)
    if path.suffix == ".json":
        value = load_json(path, "an offset map {img_id: byte offset}")
        if not isinstance(value, dict):
            raise DataFormatError(path, "top level", "a dict {img_id: byte offset}", type(value).__name__)
        try:
            return {int(k) for k in value}
        except ValueError as exc:
            raise DataFormatError(path, "keys", "integer image ids", str(exc)) from None
    from cvil.data.region_features import TsvSource

    return set(TsvSource(path).ids())


def _row(qa: QA, tags: str, label: int | None) -> dict:
    return {"ja": qa.question, "o": tags, "an": [] if label is None else [label], "s": [] if label is None else [1.0],
            "img_id": qa.img_id, "q_id": qa.qa_id}


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def prepare_jvg(*, qa: str | Path, tags: str | Path, out: str | Path, splits: str | Path | None = None,
                top_k: int = 3000, min_conf: float | None = None, seed: int = 0,
                features: Iterable[str | Path] = (), show_progress: bool | None = None) -> dict:
    """Write the JVG dataset folder `out` and its `prepare_report.json`; returns the report."""
    if top_k < 1:
        raise DataFormatError("--top-k", "value", "a positive number of answer classes", top_k)
    out = Path(out)
    qas = read_question_answers(qa, show_progress=show_progress)
    tag_of = image_tags(tags, min_conf)
    images = sorted({q.img_id for q in qas})
    split_of = read_split_files(splits) if splits else seeded_split(images, seed)
    by_split: dict[str, list[QA]] = {s: [] for s in layout.SPLITS}
    dropped: Counter[str] = Counter()
    for q in qas:
        if q.img_id in split_of:
            by_split[split_of[q.img_id]].append(q)
        else:
            dropped[NOT_IN_SPLIT] += 1
    labels = save_label_maps(out, top_answers((q.answer for q in by_split["train"]), top_k))
    rows: dict[str, list[dict]] = {}
    for split, items in by_split.items():
        rows[split] = [_row(q, tag_of.get(q.img_id, ""), labels.ans2label.get(q.answer))
                       for q in progress(items, desc=f"rows {split}", total=len(items), enabled=show_progress)]
    for split in layout.SPLITS:
        covered = [r for r in rows[split] if r["an"]]
        write_json(layout.qla_path(out, split), covered)
        if split != "test":
            dropped[f"{split}: {UNCOVERED}"] += len(rows[split]) - len(covered)
    unknown = [r | {"answer": q.answer} for r, q in zip(rows["test"], by_split["test"])]
    write_json(layout.unknown_path(out), unknown)

    with_features = set().union(*(feature_ids(p) for p in features)) if features else None
    report: dict = {"options": {"top_k": top_k, "min_conf": min_conf, "seed": seed if not splits else None,
                                "splits": "files" if splits else "seeded (paper proportions)"},
                    "inputs": {"qa": Path(qa).name, "tags": Path(tags).name, "splits": str(splits) if splits else None},
                    "num_labels": len(labels), "splits": {}, "dropped": dict(sorted(dropped.items()))}
    for split in layout.SPLITS:
        split_images = sorted({q.img_id for q in by_split[split]})
        covered = sum(1 for r in rows[split] if r["an"])
        no_tags = [i for i in split_images if i not in tag_of]
        entry = {"images": len(split_images), "questions": len(rows[split]), "covered": covered,
                 "coverage": _pct(covered, len(rows[split])), "rows_written": covered,
                 "images_without_tags": len(no_tags), "images_without_tags_examples": no_tags[:_EXAMPLES]}
        if with_features is not None:
            missing = [i for i in split_images if i not in with_features]
            entry |= {"images_without_features": len(missing), "images_without_features_examples": missing[:_EXAMPLES]}
        report["splits"][split] = entry
    report["splits"]["test"]["unknown_rows"] = len(unknown)
    listed_without_qa = sorted(set(split_of) - set(images))
    report["images_in_splits_without_questions"] = len(listed_without_qa)
    report["train_answers_distinct"] = len(set(q.answer for q in by_split["train"]))
    write_json(out / REPORT, report, indent=2)
    return report
