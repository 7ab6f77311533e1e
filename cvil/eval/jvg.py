"""JVG (Japanese Visual Genome) string-level evaluation: exact-match accuracy, coverage, BLEU, per question word.

Why string level over *all* test questions: the released scores divide covered-row accuracy by the coverage factor
(``score.sh``: × 224185/301392). Exact match over every row of the ``.unknown`` file gives the same number whenever
no uncovered row is answered correctly (a classifier cannot output an out-of-vocabulary answer), and it stays right
for systems that can. Both are reported: ``accuracy`` (all rows), ``accuracy_covered`` (rows with a label) and
``coverage``; ``accuracy == accuracy_covered × coverage`` holds exactly when ``correct_uncovered == 0``, which is
also reported.

Choices where the paper is silent: strings match after ``str.strip()`` only (no NFKC, no kana folding, so 2 and ２ are
different answers); a row is covered when its ``an`` list is non-empty (the file's own marking); all summary values are
percent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json
from cvil.eval import bleu as bleu_mod
from cvil.eval import question_types as qt
from cvil.languages import JVG_LANGUAGE  # the default `lang` (another one: `lang=`, cvil.languages)

UPSTREAM_QUESTION_FIELD = "q"  # what upstream JVG files call the question
FROM_LANGUAGE = "language"  # `bleu_tokenizer` default: the one the language file declares


def question_fields(lang: str | None = None) -> tuple[str, ...]:
    """Where a row's question is looked for: the language's question field (`lang`), else every registered
    non-English language's, then upstream's `q`."""
    from cvil.languages import get_language, languages

    if lang is not None:
        return tuple(dict.fromkeys((get_language(lang).question_field, lang, UPSTREAM_QUESTION_FIELD)))
    first = get_language(JVG_LANGUAGE).question_field
    others = [name for other in languages().values() if other.alignment_field  # not English: it aligns to English
              for name in (other.question_field, other.code)]
    return tuple(dict.fromkeys((first, *others, UPSTREAM_QUESTION_FIELD)))


def unknown_frame(rows: Iterable[Mapping[str, Any]], source: str | Path = "the .unknown rows") -> pd.DataFrame:
    """Rows of a ``.unknown`` file (named `source` in errors) as a table: question_id, question, ground_truth,
    covered."""
    records = []
    fields = question_fields()
    for i, row in enumerate(rows):
        if "q_id" not in row or "answer" not in row:
            raise DataFormatError(source, f"row {i}", "fields 'q_id' and 'answer'", f"keys {sorted(row)}")
        question = next((row[f] for f in fields if f in row), "")
        records.append(
            {
                "question_id": int(row["q_id"]),
                "question": str(question),
                "ground_truth": str(row["answer"]),
                "covered": bool(row.get("an")),
            }
        )
    frame = pd.DataFrame.from_records(
        records, columns=["question_id", "question", "ground_truth", "covered"]
    )
    dups = frame["question_id"][frame["question_id"].duplicated()]
    if len(dups):
        raise DataFormatError(source, "field 'q_id'", "a q_id used by one row only", f"{int(dups.iloc[0])} twice")
    return frame


def load_unknown(path: str | Path) -> pd.DataFrame:
    """Read ``test-dev2015_qla_mrcnn.json.unknown`` (a JSON list of QLA rows with ``answer``)."""
    rows = load_json(path, "the JVG .unknown test file")
    if not isinstance(rows, list):
        raise DataFormatError(path, "top level", "a JSON list of rows", type(rows).__name__)
    return unknown_frame(rows, path)


@dataclass
class JVGResult:
    """Summary numbers (percent), the per-question table and the BLEU details."""

    summary: dict[str, float]
    per_question: pd.DataFrame = field(repr=False)
    bleu: bleu_mod.BleuResult | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _match(prediction: str, truth: str) -> bool:
    return prediction.strip() == truth.strip()


def evaluate_jvg(
    gt: pd.DataFrame,
    predictions: Mapping[int, str],
    *,
    bleu_tokenizer: str | None = FROM_LANGUAGE,
    question_types: Mapping[str, qt.QuestionWord] | None = None,
    lang: str | None = None,
    **bleu_options: Any,
) -> JVGResult:
    """Score predictions (question id -> answer string) against every row of ``gt`` (from :func:`unknown_frame`).

    ``lang`` (default :data:`JVG_LANGUAGE`) is the questions' language: its file (cvil.languages) gives the BLEU
    tokenizer (``bleu_tokenizer`` default; ``fugashi`` for ja) and the question types (``question_types`` default).
    ``bleu_tokenizer=None`` skips BLEU; ``bleu_options`` go to :func:`cvil.eval.bleu.corpus_bleu` (with fugashi the
    preset defaults to :data:`cvil.eval.bleu.JVG_PRESET`). Per-type accuracies are exact match over all rows of that
    type.
    """
    lang = JVG_LANGUAGE if lang is None else lang
    if bleu_tokenizer == FROM_LANGUAGE:
        bleu_tokenizer = bleu_mod.language_tokenizer(lang)
    if question_types is None:
        question_types = qt.question_words(lang)
    missing = [q for q in gt["question_id"] if q not in predictions]
    if missing:
        raise KeyError(f"no prediction for question_id {missing[0]} ({len(missing)} missing)")
    if gt.empty:
        raise ValueError("no ground-truth rows to evaluate")
    table = gt.copy()
    table["prediction"] = [str(predictions[q]) for q in table["question_id"]]
    table["score"] = [
        1.0 if _match(p, t) else 0.0 for p, t in zip(table["prediction"], table["ground_truth"], strict=True)
    ]
    types = [qt.classify(q, question_types) for q in table["question"]]
    table["question_type"] = [qt.encode(t) for t in types]

    n = len(table)
    covered = table["covered"]
    n_cov = int(covered.sum())
    correct = int(table["score"].sum())
    correct_cov = int(table.loc[covered, "score"].sum())
    summary: dict[str, float] = {
        "accuracy": 100.0 * correct / n,
        "accuracy_covered": 100.0 * correct_cov / n_cov if n_cov else 0.0,
        "coverage": 100.0 * n_cov / n,
    }
    result_bleu = None
    if bleu_tokenizer == "fugashi" and bleu_options.get("preset") is None:
        bleu_options = bleu_options | {"preset": bleu_mod.JVG_PRESET}
    if bleu_tokenizer is not None:
        result_bleu = bleu_mod.corpus_bleu(
            list(table["prediction"]), list(table["ground_truth"]), tokenizer=bleu_tokenizer, **bleu_options
        )
        summary["bleu"] = result_bleu.score
    exploded = pd.DataFrame({"type": types, "score": table["score"]}).explode("type")
    for name, group in exploded.groupby("type", sort=False):
        summary[f"accuracy.{name}"] = 100.0 * float(group["score"].mean())
    counts = {"n": n, "n_covered": n_cov, "correct": correct, "correct_uncovered": correct - correct_cov}
    counts |= {f"n.{name}": int(c) for name, c in exploded["type"].value_counts(sort=False).items()}
    columns = ["question_id", "prediction", "ground_truth", "score", "question_type", "covered", "question"]
    return JVGResult(summary, table[columns].reset_index(drop=True), result_bleu, counts)
