"""Hindi VQA accuracy over the merged Hindi class set and over the English classes.

The paper merges English answers whose Hindi translations coincide (*up*, *above* -> ऊपर; 3,129 -> 2,912 classes) and
reports accuracy; the released code never does this (it scores English strings). So the rule is ours: predicted and
ground-truth English answers are normalised as the official evaluator does, then both are mapped into Hindi classes
with ``en_to_hi``, and the official leave-one-out ``min(#matches/3, 1)`` is applied to the mapped answers. An English
answer with no Hindi class (an annotator answer outside the 3,129) stays itself (tagged so it can never equal a Hindi
class). A prediction that is already a Hindi class string is accepted as that class. With the identity map this is
exactly the official VQA accuracy, which is what ``english`` reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json
from cvil.eval.vqa_official import DEFAULT_EVALUATOR, VQAAccuracy, evaluate_vqa


@dataclass(frozen=True)
class HindiClasses:
    """``hi_ans2label.json``: the merged Hindi labels and the English -> Hindi answer map."""

    labels: tuple[str, ...]
    en_to_hi: dict[str, str]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.en_to_hi.values()) - set(self.labels))
        if unknown:
            raise ValueError(f"en_to_hi maps to {unknown[0]!r}, which is not in labels")
        object.__setattr__(self, "_label_set", frozenset(self.labels))

    def to_class(self, answer: str) -> tuple[str, str]:
        """The class key of a normalised answer: ``("hi", label)`` or ``("en", answer)`` when unmapped."""
        if answer in self.en_to_hi:
            return ("hi", self.en_to_hi[answer])
        if answer in self._label_set:
            return ("hi", answer)
        return ("en", answer)


def load_hindi_classes(path: str | Path) -> HindiClasses:
    """Read ``vqa/hi_ans2label.json`` = ``{"labels": [...], "en_to_hi": {en: hi}}``."""
    data = load_json(path, "the merged Hindi classes (make them with `cvil data hindi-classes`)")
    if not isinstance(data, dict) or "labels" not in data or "en_to_hi" not in data:
        raise DataFormatError(path, "top level", "an object with 'labels' and 'en_to_hi'", type(data).__name__)
    try:
        return HindiClasses(tuple(data["labels"]), dict(data["en_to_hi"]))
    except ValueError as exc:
        raise DataFormatError(path, "en_to_hi", "values that are labels", str(exc)) from None


@dataclass
class HindiResult:
    hindi: VQAAccuracy
    english: VQAAccuracy

    def summary(self) -> dict[str, float]:
        """Flat percent metrics: ``accuracy`` (Hindi classes), ``accuracy_en`` and per answer type of both."""
        out = {"accuracy": self.hindi.overall, "accuracy_en": self.english.overall}
        out |= {f"accuracy.{k}": v for k, v in self.hindi.per_answer_type.items()}
        out |= {f"accuracy_en.{k}": v for k, v in self.english.per_answer_type.items()}
        return out


def evaluate_hindi(
    annotations: Iterable[Mapping[str, Any]], predictions: Mapping[int, str], classes: HindiClasses, *,
    evaluator: str = DEFAULT_EVALUATOR,
) -> HindiResult:
    """Accuracy over the merged Hindi classes and over the English classes (official rule), per answer type."""
    annotations = list(annotations)
    return HindiResult(
        hindi=evaluate_vqa(annotations, predictions, evaluator=evaluator, map_answer=classes.to_class),
        english=evaluate_vqa(annotations, predictions, evaluator=evaluator),
    )
