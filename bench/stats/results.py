"""The result types every significance test returns (`TestResult`, `SeedSpread`), apart from the tests.

`bench.stats.significance` (accuracy-like scores) and `bench.stats.bleu_significance` (BLEU) both build them, and
`bench.stats.by_metric` picks the test by metric; keeping the types here lets the arrows go one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TestResult:
    """One paired comparison, self-describing enough to be quoted in a table footnote."""

    test: str
    delta: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int
    n_resamples: int
    seed: int | None
    method: str
    confidence: float = 0.95
    correction: str | None = None
    p_adjusted: float | None = None
    notes: tuple[str, ...] = ()
    signature: str | None = None
    question_level: "TestResult | None" = None  # the question-level test of the same comparison, when seed-aware
    aso: float | None = None  # ASO ε_min of B over A over the seed scores, when seed-aware and deepsig is there

    __test__ = False  # not a pytest class, despite the name

    @property
    def p(self) -> float | None:
        """The p-value to act on: the corrected one when a correction was applied."""
        return self.p_adjusted if self.p_adjusted is not None else self.p_value

    def ci_contains(self, value: float) -> bool:
        return self.ci_low is not None and self.ci_high is not None and self.ci_low <= value <= self.ci_high

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        out["question_level"] = self.question_level.to_dict() if self.question_level else None
        return out


@dataclass(frozen=True)
class SeedSpread:
    """A system's overall score across seeds: mean ± std, and a t-interval for the mean over seeds."""

    mean: float
    std: float
    n_seeds: int
    ci_low: float
    ci_high: float
    per_seed: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["per_seed"] = dict(self.per_seed)
        return out
