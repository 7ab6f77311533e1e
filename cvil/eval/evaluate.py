"""One entry point from predictions to metrics, shared by ``cvil eval`` and the training/prediction code.

The split: producing predictions from a model (``{question_id: answer string}``) lives with the model code; everything
here is pure -- ground truth + predictions in, numbers and a per-question table out -- so it can be tested without a
model and reused on any results file.

``kind`` and its ``rows``:

- ``"vqa"``: official annotation dicts (``question_id``, ``question_type``, ``answer_type``, ``answers``, optionally
  ``multiple_choice_answer``); option ``evaluator`` (``"current"`` or ``"legacy-2017"``, see
  :mod:`cvil.eval.vqa_official`), recorded as ``report["evaluator"]`` (also for ``"hindi"``).
- ``"hindi"``: the same annotations; needs ``classes=`` (:class:`cvil.eval.hindi.HindiClasses`).
- ``"jvg"``: rows of the ``.unknown`` file (dicts with ``q_id``, ``answer``, ``ja``/``q``, ``an``) or the frame from
  :func:`cvil.eval.jvg.unknown_frame`; options ``lang`` (its language file gives the defaults of the next two),
  ``bleu_tokenizer`` and ``question_types``.

``summary`` keys are the tracking-schema metric names without the split prefix (``accuracy``, ``accuracy_covered``,
``coverage``, ``bleu``, ``accuracy.<type>``); use :meth:`EvalResult.metrics` to add it. All summary values are percent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cvil.eval import hindi as hindi_mod
from cvil.eval import metrics as declared_metrics
from cvil.eval import jvg as jvg_mod
from cvil.eval.results_io import PER_QUESTION_COLUMNS, validate_results
from cvil.eval.vqa_official import DEFAULT_EVALUATOR, VQAAccuracy, evaluate_vqa, evaluator_label

KINDS = ("vqa", "jvg", "hindi")


@dataclass
class EvalResult:
    """``summary`` (flat percent metrics), ``per_question`` (contract columns first) and ``report`` (JSON-able details).

    Unpacks as ``summary, per_question = evaluate_predictions(...)``.
    """

    summary: dict[str, float]
    per_question: pd.DataFrame = field(repr=False)
    report: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.summary
        yield self.per_question

    def metrics(self, prefix: str) -> dict[str, float]:
        """Summary under tracking names, e.g. ``metrics("test")`` -> ``{"test.accuracy": ...}`` (declared names and
        units: :mod:`cvil.eval.metrics`)."""
        return declared_metrics.prefixed(prefix, self.summary)


def _vqa_table(annotations: list[Mapping[str, Any]], predictions: Mapping[int, str], acc: VQAAccuracy) -> pd.DataFrame:
    rows = []
    for ann in annotations:
        qid = int(ann["question_id"])
        gt = ann.get("multiple_choice_answer")
        if gt is None:  # fall back to the most frequent annotator answer
            gt = pd.Series([a["answer"] for a in ann["answers"]]).mode().iloc[0]
        rows.append(
            {
                "question_id": qid,
                "prediction": predictions[qid],
                "ground_truth": str(gt),
                "score": acc.per_question[qid],
                "question_type": str(ann["question_type"]),
                "answer_type": str(ann["answer_type"]),
            }
        )
    return pd.DataFrame.from_records(rows, columns=[*PER_QUESTION_COLUMNS, "answer_type"])


def _evaluate_vqa(
    rows: Iterable[Mapping[str, Any]], predictions: Mapping[int, str], *, evaluator: str = DEFAULT_EVALUATOR, **_: Any
) -> EvalResult:
    annotations = list(rows)
    validate_results(
        [{"question_id": q, "answer": a} for q, a in predictions.items()],
        [int(a["question_id"]) for a in annotations],
    )
    acc = evaluate_vqa(annotations, predictions, evaluator=evaluator)
    summary = {"accuracy": acc.overall} | {f"accuracy.{k}": v for k, v in acc.per_answer_type.items()}
    report = {"official": acc.to_official(), "evaluator": acc.evaluator_label}
    return EvalResult(summary, _vqa_table(annotations, predictions, acc), report)


def _evaluate_hindi(
    rows: Iterable[Mapping[str, Any]],
    predictions: Mapping[int, str],
    *,
    classes: hindi_mod.HindiClasses,
    evaluator: str = DEFAULT_EVALUATOR,
    **_: Any,
) -> EvalResult:
    annotations = list(rows)
    validate_results(
        [{"question_id": q, "answer": a} for q, a in predictions.items()],
        [int(a["question_id"]) for a in annotations],
    )
    res = hindi_mod.evaluate_hindi(annotations, predictions, classes, evaluator=evaluator)
    table = _vqa_table(annotations, predictions, res.hindi)
    table["score_en"] = [res.english.per_question[q] for q in table["question_id"]]
    report = {"hindi": res.hindi.to_official(), "english": res.english.to_official(),
              "evaluator": evaluator_label(evaluator)}
    return EvalResult(res.summary(), table, report)


def _evaluate_jvg(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    predictions: Mapping[int, str],
    *,
    bleu_tokenizer: str | None = jvg_mod.FROM_LANGUAGE,
    question_types: Any = None,
    lang: str | None = None,
    **bleu_options: Any,
) -> EvalResult:
    gt = rows if isinstance(rows, pd.DataFrame) else jvg_mod.unknown_frame(rows)
    validate_results([{"question_id": q, "answer": a} for q, a in predictions.items()], list(gt["question_id"]))
    res = jvg_mod.evaluate_jvg(
        gt, predictions, bleu_tokenizer=bleu_tokenizer, question_types=question_types, lang=lang, **bleu_options
    )
    report: dict[str, Any] = {"counts": res.counts}
    if res.bleu is not None:
        report["bleu"] = res.bleu.to_dict()
    return EvalResult(res.summary, res.per_question, report)


def evaluate_predictions(kind: str, rows: Any, predictions: Mapping[int, str], **options: Any) -> EvalResult:
    """Metrics of ``predictions`` (question id -> answer string) against the ground truth ``rows`` of ``kind``.

    Raises :class:`cvil.eval.results_io.ResultsFormatError` when the predictions do not cover exactly the questions.
    """
    handlers = {"vqa": _evaluate_vqa, "jvg": _evaluate_jvg, "hindi": _evaluate_hindi}
    if kind not in handlers:
        raise ValueError(f"unknown evaluation kind {kind!r}; expected one of {', '.join(KINDS)}")
    result = handlers[kind](rows, predictions, **options)
    declared_metrics.check_declared(kind, result.summary)
    return result
