"""`cvil data prepare-jvg`: the Japanese Visual Genome VQA release -> the dataset folder the reference reads.

The release never shipped this conversion (reference §4.6 [GAP]); the rules here are ours, each stated once:
- input questions: Visual Genome's `question_answers.json` layout, a list of `{"id", "qas": [{"qa_id", "image_id",
  "question", "answer"}]}`; `q_id` = `qa_id` (unique), questions and answers kept as raw strings (白 ≠ 白色 ≠ 白です。);
- `o`: the VinVL detector classes of the image (`image_labels.tsv`), in file order, duplicates kept, those with
  `conf >= min_conf`, joined by `;` (the VQA files' tag format); an image without detections gets `o = ""`;
- splits are image-level: `train.txt`/`val.txt`/`test.txt` (one image id a line) or, without them, a split seeded
  by `seed` with the paper's image proportions 59,550 / 1,984 / 37,674 (val and test get at least one image);
- labels: the `top_k` most frequent train answers, ties broken by the answer string (code point order), id 0 = most
  frequent; or, with `ans2label`, a given answer list with its own ids (UC2's `misc/ans2label_ja.json`, a JSON object
  `{answer: id}` with ids 0..N-1, or a JSON list of answers, id = position), answers matched as raw strings;
  rows are one-hot (`an: [id]`, `s: [1.0]`). Train/val/test files hold covered rows only; the `.unknown`
  file holds every test row with its `answer` string (`an: []` when uncovered), for string-level scoring.
- the report gives the answer coverage per split and over all splits together (the paper's 74.39 % for JVG).
The outputs are byte-identical for the same inputs and options.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.image_labels import read_image_labels
from cvil.data.label_maps import save_label_maps
from cvil.data.json_file import load_json, read_text
from cvil.data.prepare.common import progress, write_json
from cvil.errors import UsageError
from cvil.languages import JVG_LANGUAGE, get_language

log = logging.getLogger(__name__)

PAPER_SPLIT_IMAGES = {"train": 59_550, "val": 1_984, "test": 37_674}
REPORT = "prepare_report.json"
NOT_IN_SPLIT = "image in no split file"
UNCOVERED = "answer outside the top-K train answers"
UNCOVERED_GIVEN = "answer outside the given answer list"
DEFAULT_TOP_K = 3000
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


def read_split_files(folder: str | Path, *, allow_empty: bool = False, warnings: list[str] | None = None
                     ) -> dict[int, str]:
    """`{img_id: split}` from `train.txt`, `val.txt`, `test.txt`; an image listed twice is an error, and so is a file
    without any image id unless `allow_empty` (then a line is added to `warnings`)."""
    folder = Path(folder)
    split_of: dict[int, str] = {}
    where_of: dict[int, str] = {}
    for split in layout.SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            raise DataFormatError(path, "file", f"the {split} image ids, one per line", "no such file")
        before = len(split_of)
        for line_no, line in enumerate(read_text(path, f"the {split} image ids").splitlines(), start=1):
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
        if len(split_of) == before:
            _empty_split(DataFormatError(path, "file", f"the {split} image ids, one per line",
                                         f"none ({path.stat().st_size} bytes): an empty {split} split"),
                         allow_empty, warnings)
    return split_of


ALLOW_EMPTY = "--allow-empty-splits"


def _empty_split(error: DataFormatError, allow_empty: bool, warnings: list[str] | None) -> None:
    """Refuse an empty split, or with `allow_empty` record it (the report's `warnings`, and a log line)."""
    if not allow_empty:
        raise DataFormatError(error.file, error.where, error.expected, f"{error.got} (pass {ALLOW_EMPTY} to write it "
                              "anyway)")
    message = f"{error}; written anyway ({ALLOW_EMPTY})"
    log.warning("WARNING: %s", message)
    if warnings is not None:
        warnings.append(message)


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


def read_answer_list(path: str | Path) -> list[str]:
    """The answers of a given label set, in id order: a JSON object `{answer: id}` whose ids are exactly 0..N-1
    (UC2's `misc/ans2label_ja.json`) or a JSON list of distinct answers (id = position)."""
    path = Path(path)
    data = load_json(path, "an answer list: a JSON object {answer: id} or a JSON list of answers")
    if isinstance(data, list):
        first: dict[str, int] = {}
        for i, answer in enumerate(data):
            if not isinstance(answer, str):
                raise DataFormatError(path, f"entry {i}", "an answer string", repr(answer))
            if answer in first:
                raise DataFormatError(path, f"entry {i}", "each answer once",
                                      f"{answer!r} again (entry {first[answer]})")
            first[answer] = i
        answers: list = list(data)
    elif isinstance(data, dict):
        answers = [None] * len(data)
        for answer, label in data.items():
            if not _is_int(label) or not 0 <= label < len(data):
                raise DataFormatError(path, f"entry {answer!r}", f"an int id in 0..{len(data) - 1} (ids 0..N-1)",
                                      repr(label))
            if answers[label] is not None:
                raise DataFormatError(path, f"entry {answer!r}", f"ids 0..{len(data) - 1}, each once",
                                      f"id {label}, already the id of {answers[label]!r}")
            answers[label] = answer
    else:
        raise DataFormatError(path, "top level", "a JSON object {answer: id} or a JSON list of answers",
                              type(data).__name__)
    if not answers:
        raise DataFormatError(path, "top level", "at least one answer", "none")
    return answers


def image_tags(path: str | Path, min_conf: float | None) -> dict[int, str]:
    """`o` per image: detector classes in file order with `conf >= min_conf`, `;`-joined."""
    if not Path(path).is_file():
        raise DataFormatError(path, "file", "a VinVL image_labels.tsv (img_id \\t {\"objects\": [...]})", "no such file")
    labels = read_image_labels(path)
    if not labels:
        raise DataFormatError(path, "file", 'the detections of the images, one line each (img_id \\t {"objects": '
                              '[...]})', f"no image lines ({Path(path).stat().st_size} bytes)")
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


def _check_splits(by_split: dict[str, list[QA]], split_of: dict[int, str], *, qa: Path, splits: str | Path | None,
                  allow_empty: bool, warnings: list[str]) -> None:
    """Every split has questions, before anything is written. (A split whose answers are all outside the labels is
    written and its coverage reported; `cvil data validate` refuses a train or val split without a labelled row.)"""
    listed = Counter(split_of.values())
    for split in layout.SPLITS:
        if by_split[split] or (splits and not listed[split]):  # an empty split file: read_split_files said so
            continue
        source = Path(splits) / f"{split}.txt" if splits else qa
        why = (f"none of its {listed[split]} images has a question in {qa.name}" if listed[split] else
               f"too few images ({len(split_of)}) for a seeded split")
        _empty_split(DataFormatError(source, f"{split} split", "at least one question", why), allow_empty, warnings)


def _row(qa: QA, tags: str, label: int | None) -> dict:
    return {get_language(JVG_LANGUAGE).question_field: qa.question, "o": tags, "an": [] if label is None else [label], "s": [] if label is None else [1.0],
            "img_id": qa.img_id, "q_id": qa.qa_id}


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def prepare_jvg(*, qa: str | Path, tags: str | Path, out: str | Path, splits: str | Path | None = None,
                top_k: int | None = None, ans2label: str | Path | None = None, min_conf: float | None = None,
                seed: int = 0, features: Iterable[str | Path] = (), show_progress: bool | None = None,
                allow_empty_splits: bool = False) -> dict:
    """Write the JVG dataset folder `out` and its `prepare_report.json`; returns the report.

    Labels: the `top_k` (default 3000) most frequent train answers, or the answer list of the file `ans2label`.
    An empty split (an empty split file, or no questions) is refused before anything is written, unless
    `allow_empty_splits` (then it is a warning, logged and listed in the report's `warnings`)."""
    if top_k is not None and ans2label is not None:
        raise UsageError("--top-k and --ans2label contradict each other: the labels are either the top-K train "
                         "answers or the given answer list")
    if ans2label is None:
        top_k = DEFAULT_TOP_K if top_k is None else top_k
        if top_k < 1:
            raise DataFormatError("--top-k", "value", "a positive number of answer classes", top_k)
    given = read_answer_list(ans2label) if ans2label is not None else None
    uncovered = UNCOVERED if given is None else UNCOVERED_GIVEN
    out = Path(out)
    qas = read_question_answers(qa, show_progress=show_progress)
    tag_of = image_tags(tags, min_conf)
    images = sorted({q.img_id for q in qas})
    warnings: list[str] = []
    split_of = (read_split_files(splits, allow_empty=allow_empty_splits, warnings=warnings) if splits
                else seeded_split(images, seed))
    by_split: dict[str, list[QA]] = {s: [] for s in layout.SPLITS}
    dropped: Counter[str] = Counter()
    for q in qas:
        if q.img_id in split_of:
            by_split[split_of[q.img_id]].append(q)
        else:
            dropped[NOT_IN_SPLIT] += 1
    _check_splits(by_split, split_of, qa=Path(qa), splits=splits, allow_empty=allow_empty_splits, warnings=warnings)
    labels = save_label_maps(out, given if given is not None else
                             top_answers((q.answer for q in by_split["train"]), top_k))
    rows: dict[str, list[dict]] = {}
    for split, items in by_split.items():
        rows[split] = [_row(q, tag_of.get(q.img_id, ""), labels.ans2label.get(q.answer))
                       for q in progress(items, desc=f"rows {split}", total=len(items), enabled=show_progress)]
    for split in layout.SPLITS:
        covered = [r for r in rows[split] if r["an"]]
        write_json(layout.qla_path(out, split), covered)
        if split != "test":
            dropped[f"{split}: {uncovered}"] += len(rows[split]) - len(covered)
    unknown = [r | {"answer": q.answer} for r, q in zip(rows["test"], by_split["test"])]
    write_json(layout.unknown_path(out), unknown)

    with_features = set().union(*(feature_ids(p) for p in features)) if features else None
    report: dict = {"options": {"top_k": top_k if given is None else None, "min_conf": min_conf,
                                "seed": seed if not splits else None,
                                "splits": "files" if splits else "seeded (paper proportions)",
                                "labels": "top-k train answers" if given is None else "given (--ans2label)"},
                    "inputs": {"qa": Path(qa).name, "tags": Path(tags).name, "splits": str(splits) if splits else None,
                               "ans2label": Path(ans2label).name if ans2label is not None else None},
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
    questions = sum(len(rows[s]) for s in layout.SPLITS)
    covered = sum(1 for s in layout.SPLITS for r in rows[s] if r["an"])
    report["all_splits"] = {"questions": questions, "covered": covered, "coverage": _pct(covered, questions)}
    listed_without_qa = sorted(set(split_of) - set(images))
    report["images_in_splits_without_questions"] = len(listed_without_qa)
    report["train_answers_distinct"] = len(set(q.answer for q in by_split["train"]))
    if warnings:
        report["warnings"] = warnings
    write_json(out / REPORT, report, indent=2)
    return report
