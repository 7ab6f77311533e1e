"""Reader for the reference's QLA JSON files (`{split}2014_qla_mrcnn.json`): one dict per question.

Fields (see docs/architecture.md §1): questions per language (the `question_field` of every language file of
`cvil.languages`: `en`, `ja`, `hi`, `zh`, ...; or upstream Oscar's `q` for English),
`o` detector tags, `an` label ids with soft scores `s`, `img_id`, `q_id`, and `{lang}-en` word alignments. The
reference silently drops train/val rows with no label (its answer-coverage filter); we drop them too, but count
them and say why, and we fail on any malformed row instead of skipping it.

Row identity (`QLARow.key`, owned here): the release reads `q_id` only for test sets (`task_utils.py`:
`q_id = int(line['q_id']) if set_type.startswith('test') else 0`), so real train/val rows carry `q_id: 0` on every
row (VQA) or no `q_id` at all (JVG). A test file (its name starts with `test`, as the release decides, and the JVG
`.unknown` file) must give every row a unique `q_id`: its predictions go to EvalAI by `question_id`. Any other file
is keyed by `q_id` only when every row carries a unique non-zero one, otherwise by the row's position in the file;
`QLAFile.key_source` says which and `QLAFile.digest` (sha256 of the file's bytes) pins positions to one file. Teacher
caches, final evaluation, predictions and per-question files key rows by `key`, never by `q_id`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json_and_digest

ENGLISH = "en"  # the teacher's language: its question field comes first, and upstream Oscar calls it `q`
ALIGNMENT_SUFFIX = "-en"
REQUIRED_FIELDS = ("o", "an", "s", "img_id")  # and `q_id` in test files (`reads_q_id`)
KEY_Q_ID = "q_id"  # rows keyed by their unique non-zero q_id
KEY_POSITION = "position"  # rows keyed by their position in the file (file digest in QLAFile.digest)
NO_LABEL = "empty `an`: no answer in the label set"
NO_LABEL_WITH_ANSWER = "empty `an`: answer string outside the label set"

# An alignment entry: (tgt_word, en_word, en_idx) when aligned, or the raw shorter entry, e.g. (tgt_word,).
AlignmentEntry = tuple


@dataclass(frozen=True)
class QLARow:
    """One question. `alignments[lang]` lists one entry per target-language word (see `is_aligned`)."""

    questions: dict[str, str]
    tags: str
    answer_ids: tuple[int, ...]
    scores: tuple[float, ...]
    img_id: int
    q_id: int  # 0 where the file has none (train/val rows of the release)
    alignments: dict[str, list[AlignmentEntry]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    key: int | None = None  # identity in its split: q_id or position in the file (module docstring); None = q_id

    def __post_init__(self) -> None:
        if self.key is None:
            object.__setattr__(self, "key", self.q_id)


@dataclass(frozen=True)
class Dropped:
    """Rows left out by the coverage filter: how many, why, and their positions in the file."""

    total: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    row_indices: tuple[int, ...] = ()


@dataclass(frozen=True)
class QLAFile:
    path: Path
    rows: list[QLARow]
    dropped: Dropped
    key_source: str = KEY_Q_ID  # KEY_Q_ID or KEY_POSITION
    digest: str = ""  # sha256 of the file's bytes

    @property
    def key_description(self) -> str:
        """How rows are keyed, for reports and run tags: `q_id` or `position@<first 12 hex of the digest>`."""
        return KEY_Q_ID if self.key_source == KEY_Q_ID else f"{KEY_POSITION}@{self.digest[:12]}"

    def file_indices(self) -> list[int]:
        """The position in the JSON file of each kept row (rows shift when empty ones are dropped)."""
        skipped = set(self.dropped.row_indices)
        return [i for i in range(len(self.rows) + self.dropped.total) if i not in skipped]

    @property
    def languages(self) -> tuple[str, ...]:
        """Question languages present in at least one row, in a stable order."""
        seen = {lang for row in self.rows for lang in row.questions}
        known = set(question_languages().values())
        return tuple(sorted(seen, key=lambda lang: (lang not in known, lang)))


def question_languages() -> dict[str, str]:
    """{question field: language code} of every registered language (`cvil.languages`), English first."""
    from cvil.languages import question_fields

    fields = question_fields()
    return dict(sorted(fields.items(), key=lambda item: item[1] != ENGLISH))


def alignment_languages() -> dict[str, str]:
    """{alignment field: language code} of every registered language that declares one (`ja-en` -> `ja`)."""
    from cvil.languages import alignment_fields

    return alignment_fields()


def reads_q_id(path: str | Path) -> bool:
    """Whether the release reads `q_id` from this file: test sets only (`set_type.startswith('test')`), by file name
    (`test-dev2015_qla_mrcnn.json`, `test2015_...`, the `.unknown` file)."""
    return Path(path).name.startswith("test")


def is_aligned(entry: AlignmentEntry) -> bool:
    """The reference treats entries shorter than `[tgt, en, en_idx]` as unaligned words."""
    return len(entry) >= 3


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_alignment(path: Path, where: str, value: object) -> list[AlignmentEntry]:
    if not isinstance(value, list):
        raise DataFormatError(path, where, "a list of [tgt_word, en_word, en_idx] entries", type(value).__name__)
    entries: list[AlignmentEntry] = []
    for k, entry in enumerate(value):
        if not isinstance(entry, list) or not entry or not all(isinstance(w, (str, int)) for w in entry):
            raise DataFormatError(path, f"{where}[{k}]", "[tgt_word, en_word, en_idx] or a shorter list", repr(entry))
        if is_aligned(entry):
            tgt, en, idx = entry[0], entry[1], entry[2]
            try:
                idx = int(idx)  # the reference stores it as an int or a str and calls int()
            except ValueError:
                raise DataFormatError(path, f"{where}[{k}]", "an integer en_idx", repr(entry[2])) from None
            if idx < 0:
                raise DataFormatError(path, f"{where}[{k}]", "en_idx >= 0", idx)
            entries.append((tgt, en, idx))
        else:
            entries.append(tuple(entry))
    return entries


def _parse_row(path: Path, index: int, raw: object, *, test: bool, keyed_by_q_id: bool,
               fields: dict[str, str] | None = None, aligned: dict[str, str] | None = None) -> QLARow:
    """`fields`: {question field: language code}; `aligned`: {alignment field: language code} (default: the
    registry's)."""
    where = f"row {index}"
    if not isinstance(raw, dict):
        raise DataFormatError(path, where, "a JSON object", type(raw).__name__)
    required = REQUIRED_FIELDS + (("q_id",) if test else ())
    missing = [name for name in required if name not in raw]
    if missing:
        raise DataFormatError(path, where, f"field(s) {', '.join(missing)}", f"keys {sorted(raw)}")
    row = dict(raw)
    fields = question_languages() if fields is None else fields
    aligned = alignment_languages() if aligned is None else aligned
    alignment_keys = [key for key in row if isinstance(key, str) and (
        key in aligned or key.endswith(ALIGNMENT_SUFFIX) and len(key) > 3)]
    languages = list(fields) + [k[: -len(ALIGNMENT_SUFFIX)] for k in alignment_keys if k not in aligned]
    questions = {fields.get(name, name): row.pop(name) for name in dict.fromkeys(languages) if name in row}
    if ENGLISH not in questions and "q" in row:  # upstream Oscar's English question field
        questions[ENGLISH] = row.pop("q")
    if not questions:
        raise DataFormatError(path, where, f"a question field ({', '.join(fields)} or q)", f"keys {sorted(raw)}")
    for lang, text in questions.items():
        if not isinstance(text, str):
            raise DataFormatError(path, f"{where} field {lang!r}", "a question string", repr(text))
    alignments = {aligned.get(key, key[: -len(ALIGNMENT_SUFFIX)]):
                  _parse_alignment(path, f"{where} field {key!r}", row.pop(key)) for key in alignment_keys}
    tags, answer_ids, scores, img_id = (row.pop(name) for name in REQUIRED_FIELDS)
    q_id = row.pop("q_id", 0)
    if not isinstance(tags, str):
        raise DataFormatError(path, f"{where} field 'o'", "a string of ';'-separated tags", repr(tags))
    if not isinstance(answer_ids, list) or not all(_is_int(a) for a in answer_ids):
        raise DataFormatError(path, f"{where} field 'an'", "a list of int label ids", repr(answer_ids))
    if not isinstance(scores, list) or not all(_is_number(s) and math.isfinite(s) for s in scores):
        raise DataFormatError(path, f"{where} field 's'", "a list of finite soft scores", repr(scores))
    if len(scores) != len(answer_ids):
        raise DataFormatError(path, f"{where} field 's'", f"{len(answer_ids)} scores (one per `an` entry)", len(scores))
    for k, label in enumerate(answer_ids):  # the upper bound is the label map's size (checked where it is known)
        if label < 0:
            raise DataFormatError(path, f"{where} field 'an'[{k}]", "a label id >= 0", label)
    for k, score in enumerate(scores):  # soft targets of a BCE loss: VQA's 0.3/0.6/0.9/1.0, JVG's 1.0
        if not 0 <= score <= 1:
            raise DataFormatError(path, f"{where} field 's'[{k}]", "a soft score in [0, 1]", repr(score))
    for name, value in (("img_id", img_id), ("q_id", q_id)):
        if not _is_int(value):
            raise DataFormatError(path, f"{where} field {name!r}", "an int", repr(value))
    if img_id < 0:
        raise DataFormatError(path, f"{where} field 'img_id'", "an image id >= 0", img_id)
    return QLARow(questions=questions, tags=tags, answer_ids=tuple(answer_ids), scores=tuple(float(s) for s in scores),
                  img_id=img_id, q_id=q_id, alignments=alignments, extra=row, key=q_id if keyed_by_q_id else index)


def _keyed_by_q_id(data: list) -> bool:
    """Whether every row carries a q_id that is a non-zero int used by no other row."""
    ids = [raw.get("q_id") if isinstance(raw, dict) else None for raw in data]
    return all(_is_int(q) and q != 0 for q in ids) and len(set(ids)) == len(ids)


def read_qla(path: str | Path, *, drop_empty: bool = True, test: bool | None = None) -> QLAFile:
    """Read a QLA file. With `drop_empty` (train/val) rows whose `an` is empty are dropped and reported in `.dropped`;
    test files keep them (`drop_empty=False`). `test` (default: from the file name, `reads_q_id`) makes `q_id`
    required and unique. Rows are keyed as the module docstring says."""
    path = Path(path)
    data, digest = load_json_and_digest(path, "a QLA JSON file")
    if not isinstance(data, list):
        raise DataFormatError(path, "top level", "a JSON list of question rows", type(data).__name__)
    test = reads_q_id(path) if test is None else test
    by_q_id = test or _keyed_by_q_id(data)
    rows: list[QLARow] = []
    reasons: Counter[str] = Counter()
    dropped_at: list[int] = []
    first_at: dict[int, int] = {}  # q_id -> row, in test files: EvalAI results are keyed by it
    fields, aligned = question_languages(), alignment_languages()
    for index, raw in enumerate(data):
        row = _parse_row(path, index, raw, test=test, keyed_by_q_id=by_q_id, fields=fields, aligned=aligned)
        if test and first_at.setdefault(row.q_id, index) != index:
            raise DataFormatError(path, f"row {index} field 'q_id'", "a q_id used by one row only (a test file)",
                                  f"{row.q_id}, already the q_id of row {first_at[row.q_id]}")
        if drop_empty and not row.answer_ids:
            reasons[NO_LABEL_WITH_ANSWER if "answer" in row.extra else NO_LABEL] += 1
            dropped_at.append(index)
            continue
        rows.append(row)
    return QLAFile(path=path, rows=rows, dropped=Dropped(len(dropped_at), dict(reasons), tuple(dropped_at)),
                   key_source=KEY_Q_ID if by_q_id else KEY_POSITION, digest=digest)


def read_unknown(path: str | Path) -> QLAFile:
    """Read the JVG `.unknown` test file: every test row (covered or not), each with its `answer` string."""
    qla = read_qla(path, drop_empty=False, test=True)
    for index, row in enumerate(qla.rows):
        if not isinstance(row.extra.get("answer"), str):
            raise DataFormatError(qla.path, f"row {index} field 'answer'", "the ground-truth answer string",
                                  repr(row.extra.get("answer", "<missing>")))
    return qla
