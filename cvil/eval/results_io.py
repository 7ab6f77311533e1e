"""EvalAI results files (``[{"question_id": int, "answer": str}, ...]``) and the per-question CSV.

Why strict: the official ``loadRes`` only asserts "Results do not correspond to current VQA set" and silently keeps the
last of duplicated ids; a malformed file should instead say which question is wrong. Every error is a
:class:`ResultsFormatError` naming the question id (or the list position when there is no usable id).

The per-question CSV (columns ``question_id, prediction, ground_truth, score, question_type``, then any extra
columns) is what the significance tests read. ``score`` is a fraction in [0, 1] (unrounded), not percent. Strings are
read back verbatim: ``keep_default_na=False`` so that answers such as ``"NA"``, ``"none"`` or ``""`` are not turned
into NaN.
"""

from __future__ import annotations

from cvil.errors import CvilError
from cvil.fileio import atomic_write

import json
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

PER_QUESTION_COLUMNS = ("question_id", "prediction", "ground_truth", "score", "question_type")


class ResultsFormatError(CvilError, ValueError):
    """A results file that does not follow the EvalAI format or does not match the question set."""


def _qid(entry: Any, pos: int) -> int:
    if not isinstance(entry, dict):
        raise ResultsFormatError(f"entry {pos} is a {type(entry).__name__}, expected an object")
    if "question_id" not in entry:
        raise ResultsFormatError(f"entry {pos} has no 'question_id'")
    qid = entry["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, int):
        raise ResultsFormatError(f"entry {pos}: question_id {qid!r} is not an integer")
    return qid


def validate_results(data: Any, expected_ids: Collection[int] | None = None) -> dict[int, str]:
    """Check a parsed results list and return ``{question_id: answer}``.

    Errors: not a list; an entry that is not an object or lacks ``question_id``/``answer``; a non-integer id; a
    non-string answer; a duplicated id; and, when ``expected_ids`` is given, ids not in it (unknown) or ids of it
    without a prediction (missing).
    """
    if not isinstance(data, list):
        raise ResultsFormatError(f"results must be a JSON list of objects, got {type(data).__name__}")
    out: dict[int, str] = {}
    for pos, entry in enumerate(data):
        qid = _qid(entry, pos)
        if "answer" not in entry:
            raise ResultsFormatError(f"question_id {qid}: no 'answer'")
        answer = entry["answer"]
        if not isinstance(answer, str):
            raise ResultsFormatError(f"question_id {qid}: answer {answer!r} is a {type(answer).__name__}, not a string")
        if qid in out:
            raise ResultsFormatError(f"question_id {qid}: duplicated (entries {list(out).index(qid)} and {pos})")
        out[qid] = answer
    if expected_ids is not None:
        expected = set(expected_ids)
        unknown = sorted(set(out) - expected)
        if unknown:
            raise ResultsFormatError(
                f"question_id {unknown[0]}: not in the question set ({len(unknown)} unknown id(s))"
            )
        missing = sorted(expected - set(out))
        if missing:
            raise ResultsFormatError(f"question_id {missing[0]}: no prediction ({len(missing)} missing id(s))")
    return out


def read_results(path: str | Path, expected_ids: Collection[int] | None = None) -> dict[int, str]:
    """Read and validate an EvalAI results file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ResultsFormatError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return validate_results(data, expected_ids)
    except ResultsFormatError as exc:
        raise ResultsFormatError(f"{path}: {exc}") from None


def write_results(path: str | Path, predictions: Mapping[int, str] | Iterable[tuple[int, str]]) -> Path:
    """Write ``[{"question_id", "answer"}]`` sorted by id (validated first, so a bad input never lands on disk)."""
    items = predictions.items() if isinstance(predictions, Mapping) else predictions
    data = [{"question_id": q, "answer": a} for q, a in items]
    validate_results(data)
    data.sort(key=lambda e: e["question_id"])
    return atomic_write(path, json.dumps(data, ensure_ascii=False))


def write_per_question(path: str | Path, table: pd.DataFrame) -> Path:
    """Write the per-question CSV: the contract columns first, extra columns after, UTF-8."""
    absent = [c for c in PER_QUESTION_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"per-question table lacks columns {absent}")
    extra = [c for c in table.columns if c not in PER_QUESTION_COLUMNS]
    return atomic_write(path, table[list(PER_QUESTION_COLUMNS) + extra].to_csv(index=False))


def read_per_question(path: str | Path) -> pd.DataFrame:
    """Read a per-question CSV back with the contract dtypes (int id, float score, verbatim strings)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    absent = [c for c in PER_QUESTION_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"{path}: per-question CSV lacks columns {absent}")
    table["question_id"] = table["question_id"].astype("int64")
    table["score"] = table["score"].astype("float64")
    return table
