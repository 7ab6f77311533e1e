"""Declared evaluation: which metric and which ground truth each dataset's splits get, looked up by dataset name.

One descriptor per dataset folder name (the `stages[].dataset` of a config, the folder `cvil predict --data`
points at), as lm-eval's task YAML and MTEB's task metadata declare theirs, instead of guessing from the folder name,
a field's presence or the language:

- `vqa` (VQA v2 / mVQA): the official VQA accuracy from the raw annotator answers of the official annotation file
  (`v2_mscoco_<stem>_annotations.json`); Hindi questions (`lang: hi`) with the merged Hindi classes present
  (`hi_ans2label.json`) are scored over those classes.
- `vg` (JVG-like): exact match, coverage and BLEU against answer strings: the `.unknown` file's for test, else
  `label2ans[an[0]]` over the labelled rows (`cvil.eval.jvg_truth`).

A name that is not declared is refused with the closest declared names; `register` declares another.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cvil.data import layout
from cvil.errors import UsageError

MetricKind = Literal["vqa", "jvg", "hindi"]


@dataclass(frozen=True)
class EvalDataset:
    name: str  # the dataset folder name under data.root
    metric: MetricKind  # what every split is scored with (unless `by_language` says otherwise)
    answers: Literal["annotations", "answer_strings"]  # official annotation file, or `.unknown` strings / label map
    splits: tuple[str, ...] = layout.SPLITS  # the splits it can be scored on
    by_language: Mapping[str, MetricKind] = field(default_factory=dict)  # e.g. {"hi": "hindi"}

    def metric_for(self, lang: str, folder: str | Path) -> MetricKind:
        """The metric of a split asked in `lang`; `hindi` needs the merged classes file, else the default metric."""
        kind = self.by_language.get(lang, self.metric)
        if kind == "hindi" and not (Path(folder) / layout.HINDI_CLASSES).is_file():
            return self.metric
        return kind

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise UsageError(f"dataset {self.name!r} declares no evaluation of split {split!r} "
                             f"(declared: {', '.join(self.splits)})")


DATASETS: dict[str, EvalDataset] = {}


def register(dataset: EvalDataset) -> EvalDataset:
    DATASETS[dataset.name] = dataset
    return dataset


register(EvalDataset("vqa", metric="vqa", answers="annotations", by_language={"hi": "hindi"}))
register(EvalDataset("vg", metric="jvg", answers="answer_strings"))


def eval_dataset(name: str) -> EvalDataset:
    """The declared evaluation of dataset `name`; an unknown name is refused with the closest declared ones."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, DATASETS, n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"no evaluation is declared for dataset {name!r}{hint} (declared: {', '.join(sorted(DATASETS))}; "
                     "cvil.eval.datasets.register declares another)")
