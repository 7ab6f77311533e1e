"""Declared evaluation: which metric and which ground truth each dataset's splits get, looked up by dataset name.

One descriptor per dataset folder name (the `stages[].dataset` of a config, the folder `cvil predict --data`
points at), as lm-eval's task YAML and MTEB's task metadata declare theirs, instead of guessing from the folder name,
a field's presence or the language:

- `vqa` (VQA v2 / mVQA): the official VQA accuracy from the raw annotator answers of the official annotation file
  (`v2_mscoco_<stem>_annotations.json`); questions in a language whose file says `merge_answers: true` (Hindi,
  `cvil/languages/hi.yaml`) are scored over the merged classes (`hi_ans2label.json`); without that file, over the
  English classes, with a warning naming it (declared fallback).
- `vg` (JVG-like): exact match, coverage and BLEU against answer strings: the `.unknown` file's for test, else
  `label2ans[an[0]]` over the labelled rows (`cvil.eval.jvg_truth`).

Each declares the metrics its splits produce, with their units (`metrics`, `main_score`; `cvil.eval.metrics`).
A name that is not declared is refused with the closest declared names; `register` declares another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import logging

from cvil.data import layout
from cvil.errors import UsageError
from cvil.eval.metrics import MAIN_SCORE, Metric, declared
from cvil.suggest import did_you_mean

MetricKind = Literal["vqa", "jvg", "hindi"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalDataset:
    name: str  # the dataset folder name under data.root
    metric: MetricKind  # what every split is scored with (unless `by_language` says otherwise)
    splits: tuple[str, ...] = layout.SPLITS  # the splits it can be scored on
    by_language: Mapping[str, MetricKind] = field(default_factory=dict)  # explicit per-language metrics, if any
    # the metric of questions in a language whose answers are merged across translations (`merge_answers` in its
    # language file, cvil.languages); None = the dataset has no merged scoring
    merged_metric: MetricKind | None = None

    def kind(self, lang: str) -> MetricKind:
        """The metric kind of `lang`: `by_language`, else `merged_metric` for a `merge_answers` language, else
        `metric`."""
        if lang in self.by_language:
            return self.by_language[lang]
        if self.merged_metric is not None:
            from cvil.languages import get_language

            if get_language(lang).merge_answers:
                return self.merged_metric
        return self.metric

    def metrics(self, lang: str) -> tuple[Metric, ...]:
        """The metrics a split asked in `lang` produces (`<split>.<name>` in the tracking store), with units."""
        return declared(self.kind(lang))

    def main_score(self, lang: str) -> str:
        return MAIN_SCORE[self.kind(lang)]

    def metric_for(self, lang: str, folder: str | Path) -> MetricKind:
        """The metric of a split asked in `lang`. `hindi` needs the merged classes file; without it the split is
        scored with the default metric, and the fallback is said (never silent)."""
        kind = self.kind(lang)
        classes = Path(folder) / layout.HINDI_CLASSES
        if kind == "hindi" and not classes.is_file():
            log.warning("%s is missing: %s questions of %s are scored with the %s metric over the English classes, "
                        "not over the merged Hindi classes (build them with `cvil data hindi-classes`)",
                        classes, lang, self.name, self.metric)
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


register(EvalDataset("vqa", metric="vqa", merged_metric="hindi"))
register(EvalDataset("vg", metric="jvg"))


def eval_dataset(name: str) -> EvalDataset:
    """The declared evaluation of dataset `name`; an unknown name is refused with the closest declared ones."""
    if name in DATASETS:
        return DATASETS[name]
    hint = did_you_mean(name, DATASETS, n=3, cutoff=0.4)
    raise UsageError(f"no evaluation is declared for dataset {name!r}{hint} (declared: {', '.join(sorted(DATASETS))}; "
                     "cvil.eval.datasets.register declares another)")
