"""The metrics each evaluation produces, declared with their unit, as MTEB's `main_score` and lm-eval's
`metric_list` declare theirs: the one list that logging, tables, searches and docs read.

Every accuracy is a percent (0-100), in the loop and at the end; BLEU is sacrebleu-style 0-100; losses are plain
means. A family (`accuracy.*`) stands for one metric per answer or question type. `evaluate_predictions` refuses a
summary holding a metric its kind does not declare, so a new metric is declared here before it can be logged.
Logged names never contain `/` (MLflow turns it into a chart section): the answer type `yes/no` is `yes_no`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Unit = Literal["percent", "bleu", "loss", "count"]


@dataclass(frozen=True)
class Metric:
    name: str  # exact, or `prefix.*` for one metric per type
    unit: Unit
    description: str

    def matches(self, name: str) -> bool:
        if self.name.endswith(".*"):
            return name.startswith(self.name[:-1]) and len(name) > len(self.name) - 1
        return name == self.name


_PER_ANSWER_TYPE = Metric("accuracy.*", "percent", "accuracy per answer type (yes_no, number, other)")
DECLARED: dict[str, tuple[Metric, ...]] = {
    "vqa": (Metric("accuracy", "percent", "official VQA accuracy (vqaEval.py, 10 annotator answers)"),
            _PER_ANSWER_TYPE),
    "jvg": (Metric("accuracy", "percent", "exact match over every question, uncovered ones count 0"),
            Metric("accuracy_covered", "percent", "exact match over questions whose answer is a class"),
            Metric("coverage", "percent", "questions whose answer is a class"),
            Metric("bleu", "bleu", "BLEU of the answer strings (the run tag cvil.bleu_signature says which)"),
            Metric("accuracy.*", "percent", "exact match per Japanese question type (Table I(b))")),
    "hindi": (Metric("accuracy", "percent", "VQA accuracy over the merged Hindi classes"),
              Metric("accuracy_en", "percent", "VQA accuracy over the English classes"),
              _PER_ANSWER_TYPE,
              Metric("accuracy_en.*", "percent", "accuracy_en per answer type")),
}
MAIN_SCORE = {kind: "accuracy" for kind in DECLARED}
# the val metrics of the training loop (`val.<name>`): what selects checkpoints and feeds Optuna's pruner
IN_LOOP: tuple[Metric, ...] = (
    Metric("score", "percent", "soft VQA score of the argmax class over labelled val rows (the release's)"),
    Metric("score_unfiltered", "percent", "the same over every val row (unlabelled rows count 0)"),
    Metric("task_loss", "loss", "the task loss (train.loss) on val"),
    Metric("kd_loss", "loss", "the distillation loss on val (KD stages)"),
    Metric("n", "count", "val rows scored"),
)


def declared(kind: str) -> tuple[Metric, ...]:
    if kind not in DECLARED:
        raise ValueError(f"no metrics are declared for evaluation kind {kind!r} (declared: {', '.join(DECLARED)})")
    return DECLARED[kind]


def logged_name(name: str) -> str:
    """The name a metric is logged under: `/` (the answer type `yes/no`) becomes `_`."""
    return name.replace("/", "_")


def check_declared(kind: str, names: Iterable[str], metrics: tuple[Metric, ...] | None = None) -> None:
    """Refuse a metric that `kind` does not declare (a programming error: declare it above first)."""
    metrics = declared(kind) if metrics is None else metrics
    unknown = [n for n in names if not any(m.matches(logged_name(n)) for m in metrics)]
    if unknown:
        raise ValueError(f"{kind} evaluation produced undeclared metric(s) {unknown}; declare them in "
                         "cvil.eval.metrics.DECLARED")


def prefixed(prefix: str, summary: Mapping[str, float]) -> dict[str, float]:
    """`{"accuracy": ...}` -> `{"test.accuracy": ...}`, under logged names."""
    return {f"{prefix}.{logged_name(k)}": float(v) for k, v in summary.items()}
