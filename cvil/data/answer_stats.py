"""How long and how varied the answers of a JVG-like folder are, in fugashi (unidic-lite) tokens.

JVG answers are free Japanese strings: what BLEU can reward depends on how many of them are phrases rather than one
word, and the top-K label vocabulary covers only part of them (74.39 % in the paper). The answer strings live in the
`.unknown` test file (the train/val/test QLA rows carry labels only), so the distribution is measured there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cvil.data import layout
from cvil.data.label_maps import load_label_maps
from cvil.data.qla import read_unknown
from cvil.data.text import japanese_words


def answer_tokens(answer: str) -> list[str]:
    """fugashi + unidic-lite surface tokens of one answer (the tokenisation BLEU's `fugashi` preset uses)."""
    return list(japanese_words(answer))


@dataclass(frozen=True)
class AnswerLengths:
    answers: int
    distinct: int
    mean_tokens: float
    share_3plus: float          # share of answers with >= 3 tokens
    coverage: float             # share of answers that are a label of the top-K vocabulary
    histogram: dict             # tokens -> answers (lengths over 5 pooled as 5)

    def format(self) -> str:
        hist = ", ".join(f"{k if k < 5 else '5+'}: {v}" for k, v in sorted(self.histogram.items()))
        return (f"answer lengths ({self.answers} test answers, {self.distinct} distinct; fugashi tokens): "
                f"mean {self.mean_tokens:.2f}, {100 * self.share_3plus:.1f}% with >= 3 tokens, "
                f"top-K coverage {100 * self.coverage:.1f}% [{hist}]")


def answer_lengths(answers: list[str], labels: set[str]) -> AnswerLengths:
    lengths = [len(answer_tokens(a)) for a in answers]
    n = max(len(answers), 1)
    return AnswerLengths(answers=len(answers), distinct=len(set(answers)), mean_tokens=sum(lengths) / n,
                         share_3plus=sum(1 for k in lengths if k >= 3) / n,
                         coverage=sum(1 for a in answers if a in labels) / n,
                         histogram=dict(sorted(Counter(min(k, 5) for k in lengths).items())))


def folder_answer_lengths(folder: str | Path) -> AnswerLengths | None:
    """The distribution of a JVG-like folder's `.unknown` answers, or None when it has no such file."""
    path = layout.unknown_path(folder)
    if not path.is_file():
        return None
    answers = [str(row.extra["answer"]) for row in read_unknown(path).rows]
    return answer_lengths(answers, set(load_label_maps(folder).label2ans))
