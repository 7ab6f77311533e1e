"""JVG ground-truth answer strings for any split, and where they came from.

Records are keyed by the row's key (`QLARow.key`: its q_id in test files, its position in real train/val files,
which carry no q_id), under the `q_id` name the `.unknown` frame reads.

Real JVG train/val/test-dev rows carry label ids only (`an`, `s`); only the test `.unknown` file has answer strings
(reference §4.6). Scoring val rows by an `answer` field therefore scores every question 0 on real data. The truth of
a labelled row is `label2ans[an[0]]` (JVG rows have one label); a row with neither a label nor a string has no known
answer and cannot be scored (it is left out and counted). Which source was used is returned, so runs can record it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cvil.data.errors import DataFormatError
from cvil.data.qla import QLARow
from cvil.languages import JVG_LANGUAGE

ANSWER_FIELD = "answer_field"  # the rows' own `answer` strings (the `.unknown` file)
LABEL_MAP = "label_map"  # label2ans[an[0]] (trainval_label2ans.pkl)


@dataclass(frozen=True)
class JVGTruth:
    """Rows in the shape `cvil.eval.jvg.unknown_frame` reads, the answer source, and the rows that had no answer."""

    records: list[dict]
    source: str
    unscored: int

    @property
    def question_ids(self) -> set[int]:
        return {r["q_id"] for r in self.records}


def jvg_truth(rows: Sequence[QLARow], label2ans: Sequence[str], *, file: str | Path = "<rows>",
              lang: str = JVG_LANGUAGE) -> JVGTruth:
    """Answer strings from the rows' `answer` field when every row has one, else from `label2ans` for labelled rows."""
    if rows and all(isinstance(r.extra.get("answer"), str) for r in rows):
        records = [_record(r, r.extra["answer"], lang) for r in rows]
        return JVGTruth(records, ANSWER_FIELD, 0)
    records = []
    for i, r in enumerate(rows):
        if not r.answer_ids:
            continue
        label = r.answer_ids[0]
        if not 0 <= label < len(label2ans):
            raise DataFormatError(file, f"row {i} (question {r.key}) field 'an'",
                                  f"a label id below {len(label2ans)} (the label map's size)", label)
        records.append(_record(r, label2ans[label], lang))
    return JVGTruth(records, LABEL_MAP, len(rows) - len(records))


def _record(row: QLARow, answer: str, lang: str) -> dict:
    return {"q_id": row.key, "answer": answer, lang: row.questions.get(lang, ""), "an": list(row.answer_ids)}


def qla_ground_truth(path: str | Path) -> tuple[pd.DataFrame, JVGTruth]:
    """`cvil eval jvg --qla FILE`: a labelled QLA file scored through the label map beside it."""
    from cvil.data.label_maps import load_label_maps
    from cvil.data.qla import read_qla
    from cvil.eval.jvg import unknown_frame

    path = Path(path)
    qla = read_qla(path, drop_empty=False)
    truth = jvg_truth(qla.rows, load_label_maps(path.parent).label2ans, file=path)
    if not truth.records:
        raise DataFormatError(path, "rows", "at least one row with a label id in `an`", "none")
    return unknown_frame(truth.records), truth
