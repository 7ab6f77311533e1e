"""`cvil data hindi-classes`: merge the English answer classes whose Hindi translations coincide (paper §V-B).

The paper translates the 3,129 VQA answers and merges duplicates into 2,912 Hindi classes; the release never does
(reference §4.6 [DIFF]). From an `english answer \\t hindi` TSV this writes, into `out`:
- `hi_ans2label.json` = `{"labels": [hindi classes], "en_to_hi": {en: hi}, "en_label_to_hi_label": [...]}`, the file
  `cvil eval hindi` reads (the last key is the label-id map training on merged classes uses);
- `hi_trainval_ans2label.pkl` / `hi_trainval_label2ans.pkl`: the merged label maps in the release's pickle layout;
- `hindi_classes_report.json`: class counts and every merge.
Rules (ours): Hindi strings are stripped of surrounding whitespace and compared exactly; a Hindi class gets the
position of its first English member in label-id order; a duplicate TSV row with the same translation is counted,
one with a different translation is an error; every English answer needs a row unless `allow_missing`, which keeps
the English string as its own class.

Training on merged classes (`data.label_set: hindi_merged`): a question's soft target for a Hindi class is the
**max** of its English answers' soft scores (`remap_targets`). The paper does not say how; max keeps targets in
[0, 1] and gives a merged class the credit of its best-supported English answer, like the VQA metric's min(1, ·).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.label_maps import _dump
from cvil.data.prepare.common import read_tsv, write_json
from cvil.data.safe_pickle import load_restricted_pickle

HINDI_ANS2LABEL = "hi_trainval_ans2label.pkl"
HINDI_LABEL2ANS = "hi_trainval_label2ans.pkl"
REPORT = "hindi_classes_report.json"


def read_ans2label(path: str | Path) -> list[str]:
    """The English answers of a `trainval_ans2label.pkl`, in label-id order (ids must be 0..N-1)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file", "a label map pickle {answer: id}", "no such file")
    value = load_restricted_pickle(path)
    if not isinstance(value, dict) or not all(isinstance(a, str) and type(i) is int for a, i in value.items()):
        raise DataFormatError(path, "top level", "a dict {str answer: int label id}", type(value).__name__)
    if sorted(value.values()) != list(range(len(value))):
        raise DataFormatError(path, "values", f"distinct label ids 0..{len(value) - 1}", "gaps or duplicates")
    return sorted(value, key=value.__getitem__)


def read_answer_translations(path: str | Path) -> tuple[dict[str, str], int]:
    """`{english: hindi}` from the TSV and the number of duplicate rows that agreed with an earlier one."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    duplicates = 0
    for line_no, (english, hindi) in read_tsv(path, 2, "english answer \\t hindi"):
        hindi = hindi.strip()
        if not hindi:
            raise DataFormatError(path, f"line {line_no}", "a non-empty Hindi translation", repr(english))
        if english in out:
            if out[english] != hindi:
                raise DataFormatError(path, f"line {line_no}", f"one translation of {english!r}",
                                      f"{hindi!r} here, {out[english]!r} at line {first_line[english]}")
            duplicates += 1
            continue
        out[english], first_line[english] = hindi, line_no
    return out, duplicates


def merge_classes(answers: Sequence[str], en_to_hi: dict[str, str]) -> tuple[list[str], list[int]]:
    """Hindi labels (first-member order) and, per English label id, its Hindi label id."""
    labels: list[str] = []
    index: dict[str, int] = {}
    mapping: list[int] = []
    for answer in answers:
        hindi = en_to_hi[answer]
        if hindi not in index:
            index[hindi] = len(labels)
            labels.append(hindi)
        mapping.append(index[hindi])
    return labels, mapping


def remap_targets(answer_ids: Sequence[int], scores: Sequence[float], mapping: Sequence[int]
                  ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """English `(an, s)` -> merged-class `(an, s)`: scores of answers that merge are combined by max; ids ascending."""
    best: dict[int, float] = {}
    for label, score in zip(answer_ids, scores, strict=True):
        merged = mapping[label]
        best[merged] = max(best.get(merged, float("-inf")), float(score))
    ids = tuple(sorted(best))
    return ids, tuple(best[i] for i in ids)


def build_hindi_classes(*, ans2label: str | Path, translations: str | Path, out: str | Path,
                        allow_missing: bool = False) -> dict:
    """Write the merged Hindi label maps, the English -> Hindi map and the report into `out`; returns the report."""
    answers = read_ans2label(ans2label)
    table, duplicates = read_answer_translations(translations)
    missing = [a for a in answers if a not in table]
    if missing and not allow_missing:
        raise DataFormatError(translations, "rows", f"a translation of every answer in {Path(ans2label).name}",
                              f"{len(missing)} missing, e.g. {missing[0]!r} (or pass --allow-missing)")
    en_to_hi = {a: table.get(a, a) for a in answers}
    labels, mapping = merge_classes(answers, en_to_hi)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / layout.HINDI_CLASSES, {"labels": labels, "en_to_hi": en_to_hi, "en_label_to_hi_label": mapping})
    _dump(out / HINDI_ANS2LABEL, {a: i for i, a in enumerate(labels)})
    _dump(out / HINDI_LABEL2ANS, list(labels))
    members: dict[int, list[str]] = {}
    for answer, merged in zip(answers, mapping):
        members.setdefault(merged, []).append(answer)
    merges = {labels[m]: group for m, group in members.items() if len(group) > 1}
    report = {"english_classes": len(answers), "hindi_classes": len(labels),
              "merged_english_answers": sum(len(g) for g in merges.values()), "merges": merges,
              "untranslated": missing, "duplicate_rows": duplicates,
              "unused_rows": len(set(table) - set(answers))}
    write_json(out / REPORT, report, indent=2)
    return report


def load_merged_label_set(folder: str | Path) -> tuple[list[str], list[int]]:
    """The Hindi labels of `folder/hi_ans2label.json` and, per English label id of the folder's
    `trainval_ans2label.pkl`, its Hindi label id (taken from `en_label_to_hi_label`, else through `en_to_hi`)."""
    from cvil.data.label_maps import load_label_maps
    from cvil.data.json_file import load_json

    folder = Path(folder)
    path = folder / layout.HINDI_CLASSES
    data = load_json(path, "the merged Hindi classes (make them with `cvil data hindi-classes`)")
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list) or not isinstance(data.get("en_to_hi"), dict):
        raise DataFormatError(path, "top level", '{"labels": [...], "en_to_hi": {...}}', type(data).__name__)
    labels, english = data["labels"], load_label_maps(folder).label2ans
    index = {hi: i for i, hi in enumerate(labels)}
    mapping = data.get("en_label_to_hi_label")
    if mapping is None:
        missing = [a for a in english if data["en_to_hi"].get(a) not in index]
        if missing:
            raise DataFormatError(path, "en_to_hi", f"a Hindi class in 'labels' for every answer of {layout.ANS2LABEL}",
                                  f"{len(missing)} without, e.g. {missing[0]!r}")
        mapping = [index[data["en_to_hi"][a]] for a in english]
    if len(mapping) != len(english) or not all(type(m) is int and 0 <= m < len(labels) for m in mapping):
        raise DataFormatError(path, "en_label_to_hi_label", f"{len(english)} ids in [0, {len(labels)})",
                              f"{len(mapping)} entries")
    return list(labels), list(mapping)
