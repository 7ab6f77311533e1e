"""Which classes a model of a dataset folder predicts (`data.label_set`), and the rows' targets over them.

`answers`: the folder's `trainval_ans2label.pkl`; `hindi_merged`: the merged Hindi classes of `hi_ans2label.json`
(`cvil data hindi-classes`), with a question's English soft scores combined by max. Training, prediction and the
model's head size all read the classes through here.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

from cvil.data import layout
from cvil.data.errors import DataSetupError
from cvil.data.label_maps import LabelMaps, load_label_maps
from cvil.data.prepare.hindi_classes import load_merged_label_set, remap_targets


@lru_cache(maxsize=8)
def label_maps(folder: Path, label_set: str = "answers") -> LabelMaps:
    """The classes a model of this folder predicts: the answers, or the merged Hindi classes (`data.label_set`)."""
    if label_set == "hindi_merged":
        labels, _ = load_merged_label_set(folder)
        return LabelMaps(ans2label={a: i for i, a in enumerate(labels)}, label2ans=labels)
    return load_label_maps(folder)


def relabel(rows, folder: Path, label_set: str):
    """Rows with their targets over the classes of `label_set` (merged Hindi: English scores combined by max)."""
    if label_set != "hindi_merged":
        return rows
    _, mapping = load_merged_label_set(folder)
    out = []
    for row in rows:
        if any(not 0 <= a < len(mapping) for a in row.answer_ids):
            raise DataSetupError(f"{folder}: question {row.key} has label ids {list(row.answer_ids)} outside the "
                                 f"{len(mapping)} answers that {layout.HINDI_CLASSES} maps")
        ids, scores = remap_targets(row.answer_ids, row.scores, mapping)
        out.append(dataclasses.replace(row, answer_ids=ids, scores=scores))
    return out
