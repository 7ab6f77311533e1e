"""Paired significance tests between two systems evaluated on the same questions.

Why paired: both systems answer the same test questions, so the per-question differences carry all the signal and
the between-question variance cancels. VQA accuracy / VQA score are per-question additive, hence a paired
permutation test (p-value) and a paired bootstrap (CI of the mean difference) on the per-question scores apply
directly (scipy). Systems trained with several seeds are compared by :func:`compare_seeds`, whose headline test
resamples seeds *and* questions (two-level bootstrap-t, :mod:`bench.stats.two_level`) and keeps the question-level
test beside it. BLEU is a corpus statistic, not a mean of per-question values: :mod:`bench.stats.bleu_significance`
tests it, and :func:`bench.stats.by_metric.compare_frames` picks the test by metric.

Conventions: Δ = B − A (system minus reference / baseline), in the units of the scores given (no rescaling).
Every result records the test, the number of resamples, the seed, the CI method actually used (a degenerate BCa
falls back to the percentile interval and says so) and the multiple-comparison correction, if any.

Scale (the JVG test set has 301k questions): up to ``LINEAR_TIME_MIN_N`` questions the tests are scipy's, draw for
draw. Above it, scipy's BCa would spend O(n²) on its jackknife (0.4 s at 2.5k questions, 2 min at 80k, about 26 min
at 301k per call), more than the bootstrap itself, so the large-n path computes the same tests in near-linear time:

- BCa stays BCa: for the mean difference the leave-one-out means are ``(Σd − d_i)/(n−1)``, so the acceleration is
  ``Σu³ / (6 (Σu²)^1.5)`` with ``u = d − mean(d)``, O(n) (equal to scipy's to rounding; a test pins it to 1e-9);
- the resamples are drawn through sufficient statistics when the differences take few distinct values (VQA and JVG
  scores do): a bootstrap resample of the mean only needs how many draws fell on each distinct value
  (multinomial counts), a sign-flip permutation only how many of each value were flipped (binomial counts). Same
  tests, same distributions, O(n log n + R·K) for K distinct values instead of O(R·n); other Monte Carlo draws than
  scipy's (the numbers differ from the small-n path's by Monte Carlo error only). With many distinct values the
  draws are index draws / random sign bits, O(R·n).

The result's ``method`` and ``notes`` say which path ran.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import ndtr, ndtri

from bench.stats.results import SeedSpread, TestResult

#: Cap on floats materialised per resampling batch (9999 × 38k questions would otherwise need ~3 GB).
_MAX_BATCH_FLOATS = 20_000_000
#: Above this many questions the linear-time path runs (module docstring): scipy's BCa jackknife costs more than
#: the 9999 bootstrap resamples from about here on (both ~10 s at 20k questions on one core).
LINEAR_TIME_MIN_N = 20_000
#: Draw through counts per distinct value only when there are at most this many distinct values.
GROUPED_MAX_VALUES = 4096


def _paired_arrays(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two 1-D arrays of the same length, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"paired tests need at least 2 questions, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-question scores contain NaN or inf")
    return a, b


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y - x, axis=axis)


def _batch(n: int) -> int:
    return max(1, _MAX_BATCH_FLOATS // max(n, 1))


def paired_permutation_test(
    a: Sequence[float], b: Sequence[float], *, n_resamples: int = 9999, seed: int | None = 0,
    alternative: str = "two-sided",
) -> TestResult:
    """Paired permutation test of mean(b − a) = 0 (within-pair label swaps; exact when 2**n ≤ n_resamples).

    Above ``LINEAR_TIME_MIN_N`` questions: the same test as random sign flips of the differences (module docstring).
    """
    a, b = _paired_arrays(a, b)
    if a.size > LINEAR_TIME_MIN_N:
        return _sign_flip_test(b - a, n_resamples=n_resamples, seed=seed, alternative=alternative)
    res = stats.permutation_test(
        (a, b), _mean_difference, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
        batch=_batch(a.size), alternative=alternative, rng=np.random.default_rng(seed),
    )
    n_null = int(np.size(res.null_distribution))
    exact = n_null < n_resamples or n_null == 2 ** a.size
    return TestResult(
        test="paired permutation test (mean difference)", delta=float(res.statistic), ci_low=None, ci_high=None,
        p_value=float(res.pvalue), n=a.size, n_resamples=n_null, seed=seed,
        method="exact" if exact else "randomised", notes=(f"alternative={alternative}",),
    )


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, method: str = "BCa",
    n_resamples: int = 9999, seed: int | None = 0,
) -> TestResult:
    """Paired bootstrap CI of mean(b − a).

    BCa is undefined when the bootstrap distribution is degenerate (e.g. two systems that agree on every question):
    scipy then warns (DegenerateDataWarning) and returns NaN. We fall back to the percentile interval and record it
    in ``method`` and ``notes`` rather than reporting NaN. Above ``LINEAR_TIME_MIN_N`` questions the interval is
    computed in near-linear time (module docstring; ``method`` then names it).
    """
    a, b = _paired_arrays(a, b)
    delta = float(np.mean(b - a))
    if a.size > LINEAR_TIME_MIN_N:
        return _linear_time_bootstrap_ci(a, b, delta, confidence=confidence, method=method,
                                         n_resamples=n_resamples, seed=seed)

    def run(m: str):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = stats.bootstrap(
                (a, b), _mean_difference, paired=True, vectorized=True, n_resamples=n_resamples,
                batch=_batch(a.size), confidence_level=confidence, method=m, rng=np.random.default_rng(seed),
            )
        degenerate = [w for w in caught if issubclass(w.category, stats.DegenerateDataWarning)]
        return res.confidence_interval, degenerate

    ci, degenerate = run(method)
    notes: tuple[str, ...] = ()
    used = method
    if method.lower() == "bca" and (degenerate or not (np.isfinite(ci.low) and np.isfinite(ci.high))):
        reason = str(degenerate[0].message).splitlines()[0] if degenerate else "BCa interval is NaN"
        ci, _ = run("percentile")
        used = "percentile"
        notes = (f"BCa degenerate, fell back to percentile: {reason}",)
    low, high = float(ci.low), float(ci.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # all resamples equal: the interval is the point itself
        low = high = delta
    return TestResult(
        test="paired bootstrap CI (mean difference)", delta=delta, ci_low=low, ci_high=high, p_value=None,
        n=a.size, n_resamples=n_resamples, seed=seed, method=used, confidence=confidence, notes=notes,
    )


# ------------------------------------------------------------------------------------------ the large-n path

def _alpha(confidence: float) -> float:
    return (1 - confidence) / 2


def _bca_levels(d: np.ndarray, theta_hat_b: np.ndarray, confidence: float) -> tuple[float, float]:
    """scipy's BCa quantile levels (``_bca_interval``: Efron & Tibshirani 14.3, 15.4) for the mean of ``d``, with the
    jackknife acceleration in closed form: the leave-one-out means are (Σd − d_i)/(n − 1), so
    (n − 1)(θ̄_jack − θ_i) = d_i − mean(d) and â = Σu³ / (6 (Σu²)^1.5), O(n) instead of O(n²). NaN when degenerate."""
    theta_hat = np.mean(d)
    below = np.count_nonzero(theta_hat_b < theta_hat) + np.count_nonzero(theta_hat_b <= theta_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = ndtri(below / (2 * theta_hat_b.size))
        u = d - d.mean()
        a_hat = np.sum(u ** 3) / (6 * np.sum(u ** 2) ** 1.5)
        z_alpha = float(ndtri(_alpha(confidence)))
        num1, num2 = z0 + z_alpha, z0 - z_alpha
        return float(ndtr(z0 + num1 / (1 - a_hat * num1))), float(ndtr(z0 + num2 / (1 - a_hat * num2)))


def _quantiles(theta_hat_b: np.ndarray, levels: tuple[float, float]) -> tuple[float, float]:
    """The interval at ``levels`` of the bootstrap distribution, as scipy's bootstrap takes it (NaN levels: NaN)."""
    if not all(np.isfinite(levels)):
        return float("nan"), float("nan")
    low, high = stats.quantile(theta_hat_b, np.asarray(levels, dtype=float))
    return float(low), float(high)


def _value_counts(d: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values, counts) when there are few enough to draw through counts (GROUPED_MAX_VALUES), else None."""
    values, counts = np.unique(d, return_counts=True)
    return (values, counts) if values.size <= GROUPED_MAX_VALUES else None


def bootstrap_means(d: np.ndarray, n_resamples: int, seed: int | None) -> tuple[np.ndarray, str]:
    """R bootstrap means of ``d`` (resampling with replacement) and how they were drawn.

    Few distinct values: multinomial counts of the draws per value (the mean depends on nothing else), O(R·K);
    otherwise index draws, O(R·n) (scipy's own draws for the same seed)."""
    rng = np.random.default_rng(seed)
    n = d.size
    grouped = _value_counts(d)
    if grouped is not None:
        values, counts = grouped
        out = np.empty(n_resamples)
        batch = max(1, _MAX_BATCH_FLOATS // values.size)
        for k in range(0, n_resamples, batch):
            m = min(batch, n_resamples - k)
            out[k:k + m] = rng.multinomial(n, counts / n, size=m) @ values / n
        return out, f"multinomial counts over {values.size} distinct differences"
    out = np.empty(n_resamples)
    batch = _batch(n)
    for k in range(0, n_resamples, batch):
        m = min(batch, n_resamples - k)
        out[k:k + m] = np.mean(d[rng.integers(0, n, (m, n))], axis=-1)
    return out, "index draws"


def _linear_time_bootstrap_ci(a: np.ndarray, b: np.ndarray, delta: float, *, confidence: float, method: str,
                              n_resamples: int, seed: int | None) -> TestResult:
    d = b - a
    theta_hat_b, drawn = bootstrap_means(d, n_resamples, seed)
    notes: tuple[str, ...] = (f"n = {d.size} > {LINEAR_TIME_MIN_N}: linear-time bootstrap ({drawn})",)
    kind = method.lower()
    percentile = (_alpha(confidence), 1 - _alpha(confidence))
    if kind == "bca":
        used = "BCa (closed-form jackknife)"
        low, high = _quantiles(theta_hat_b, _bca_levels(d, theta_hat_b, confidence))
        if not (np.isfinite(low) and np.isfinite(high)):
            used = "percentile"
            notes += ("BCa degenerate, fell back to percentile: the BCa interval is NaN",)
            low, high = _quantiles(theta_hat_b, percentile)
    elif kind == "percentile":
        used = "percentile"
        low, high = _quantiles(theta_hat_b, percentile)
    elif kind == "basic":
        used = "basic"
        q_low, q_high = _quantiles(theta_hat_b, percentile)
        low, high = 2 * delta - q_high, 2 * delta - q_low
    else:
        raise ValueError(f"`method` must be in {{'percentile', 'basic', 'bca'}}, got {method!r}")
    if not (np.isfinite(low) and np.isfinite(high)):
        low = high = delta
    return TestResult(
        test="paired bootstrap CI (mean difference)", delta=delta, ci_low=float(low), ci_high=float(high),
        p_value=None, n=d.size, n_resamples=n_resamples, seed=seed, method=used, confidence=confidence, notes=notes,
    )


def sign_flip_null(d: np.ndarray, n_resamples: int, seed: int | None) -> tuple[np.ndarray, str]:
    """R draws of mean(s·d) with independent random signs s (the paired permutation null) and how they were drawn.

    Few distinct values: for each value, the number of flipped ones is Binomial(count, 1/2), O(R·K); otherwise
    random sign bits, O(R·n)."""
    rng = np.random.default_rng(seed)
    n = d.size
    grouped = _value_counts(d)
    out = np.empty(n_resamples)
    if grouped is not None:
        values, counts = grouped
        batch = max(1, _MAX_BATCH_FLOATS // values.size)
        for k in range(0, n_resamples, batch):
            m = min(batch, n_resamples - k)
            flipped = rng.binomial(counts, 0.5, size=(m, values.size))
            out[k:k + m] = (counts - 2 * flipped) @ values / n
        return out, f"binomial counts over {values.size} distinct differences"
    total = d.sum()
    batch = _batch(n)
    for k in range(0, n_resamples, batch):
        m = min(batch, n_resamples - k)
        bits = np.unpackbits(rng.integers(0, 256, (m, (n + 7) // 8), dtype=np.uint8), axis=1, count=n)
        out[k:k + m] = (total - 2.0 * (bits.astype(np.float64) @ d)) / n
    return out, "random sign bits"


def _sign_flip_test(d: np.ndarray, *, n_resamples: int, seed: int | None, alternative: str) -> TestResult:
    """scipy's paired ``permutation_type="samples"`` test (p with the +1 adjustment and its tie tolerance), with the
    null drawn by :func:`sign_flip_null`."""
    observed = float(np.mean(d))
    null, drawn = sign_flip_null(d, n_resamples, seed)
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = (np.count_nonzero(null <= observed + gamma) + 1) / (n_resamples + 1)
    greater = (np.count_nonzero(null >= observed - gamma) + 1) / (n_resamples + 1)
    p = {"less": less, "greater": greater, "two-sided": 2 * min(less, greater)}.get(alternative)
    if p is None:
        raise ValueError(f"`alternative` must be in {{'two-sided', 'less', 'greater'}}, got {alternative!r}")
    return TestResult(
        test="paired permutation test (mean difference)", delta=observed, ci_low=None, ci_high=None,
        p_value=float(min(1.0, max(0.0, p))), n=d.size, n_resamples=n_resamples, seed=seed, method="randomised",
        notes=(f"alternative={alternative}",
               f"n = {d.size} > {LINEAR_TIME_MIN_N}: linear-time sign-flip permutation ({drawn})"),
    )


def paired_test(
    a: Sequence[float], b: Sequence[float], *, n_resamples: int = 9999, seed: int | None = 0,
    confidence: float = 0.95, ci_method: str = "BCa",
) -> TestResult:
    """The default comparison of per-question scores: permutation p-value plus paired bootstrap CI of Δ."""
    perm = paired_permutation_test(a, b, n_resamples=n_resamples, seed=seed)
    boot = paired_bootstrap_ci(a, b, confidence=confidence, method=ci_method, n_resamples=n_resamples, seed=seed)
    return dataclasses.replace(
        perm, test="paired permutation test; paired bootstrap CI", ci_low=boot.ci_low, ci_high=boot.ci_high,
        confidence=confidence, method=f"permutation: {perm.method}; CI: {boot.method}",
        n_resamples=max(perm.n_resamples, boot.n_resamples), notes=perm.notes + boot.notes,
    )


# ---------------------------------------------------------------------------------------------------------- seeds

def seed_spread(overall_by_seed: Mapping[str, float], *, confidence: float = 0.95) -> SeedSpread:
    """Mean ± sample std over seeds and a Student-t interval for the mean (NaN width with one seed)."""
    values = np.array([float(v) for v in overall_by_seed.values()], dtype=float)
    if values.size == 0:
        raise ValueError("no seeds")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    if values.size > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * std / math.sqrt(values.size))
    else:
        half = float("nan")
    return SeedSpread(mean, std, int(values.size), mean - half, mean + half,
                      {str(k): float(v) for k, v in overall_by_seed.items()})


def seed_average(scores_by_seed: Mapping[str, pd.Series]) -> pd.Series:
    """Per-question mean over seeds, on the questions every seed answered (indexed by question_id)."""
    if not scores_by_seed:
        raise ValueError("no seeds")
    frame = pd.concat({str(k): s for k, s in scores_by_seed.items()}, axis=1, join="inner")
    return frame.mean(axis=1)


@dataclass(frozen=True)
class SeedAwareComparison:
    """B vs A over seeds *and* questions (``result``), today's question-level test on seed-averaged scores
    (``question_level``), ASO over the seed scores and each system's spread over seeds."""

    result: TestResult
    question_level: TestResult
    spread_a: SeedSpread
    spread_b: SeedSpread
    n_dropped: int
    aso: float | None = None

    @property
    def p_value(self) -> float:
        return self.result.p_value

    @property
    def ci_low(self) -> float:
        return self.result.ci_low

    @property
    def ci_high(self) -> float:
        return self.result.ci_high

    @property
    def delta(self) -> float:
        return self.result.delta

    def to_dict(self) -> dict:
        return {"result": self.result.to_dict(), "question_level": self.question_level.to_dict(),
                "aso": self.aso, "spread_a": self.spread_a.to_dict(), "spread_b": self.spread_b.to_dict(),
                "n_dropped": self.n_dropped}


SEED_AWARE_TEST = "two-level bootstrap-t (seeds and questions)"


def compare_seeds(
    a_by_seed: Mapping[str, pd.Series], b_by_seed: Mapping[str, pd.Series], *, n_resamples: int = 9999,
    seed: int | None = 0, confidence: float = 0.95, aso: bool = True,
) -> SeedAwareComparison:
    """Compare two systems trained with several seeds each (per-question Series indexed by question_id).

    ``result`` (also ``.p_value``, ``.ci_low``, ``.ci_high``): the two-level bootstrap-t of mean B − A that resamples
    both the seeds of each system and the questions (:mod:`bench.stats.two_level`). ``question_level``: the
    seed-averaged paired permutation test + paired bootstrap CI over questions, which treats the trained models as fixed.
    ``aso``: ε_min of "B almost stochastically dominates A" over the per-seed means (deepsig), None without it.
    Both tests use the questions that every seed of both systems answered.
    """
    from bench.stats import two_level

    if not a_by_seed or not b_by_seed:
        raise ValueError("no seeds")
    frame = pd.concat({("a", str(k)): s for k, s in a_by_seed.items()}
                      | {("b", str(k)): s for k, s in b_by_seed.items()}, axis=1, join="inner")
    indexes = [s.index for s in (*a_by_seed.values(), *b_by_seed.values())]
    n_all = len(functools.reduce(lambda x, y: x.union(y), indexes))
    n_dropped = n_all - len(frame)
    mat_a, mat_b = frame["a"].to_numpy().T, frame["b"].to_numpy().T
    question = paired_test(mat_a.mean(axis=0), mat_b.mean(axis=0), n_resamples=n_resamples, seed=seed,
                           confidence=confidence)
    boot = two_level.two_level_bootstrap(mat_a, mat_b, n_resamples=n_resamples, seed=seed, confidence=confidence)
    notes = (f"{len(a_by_seed)} vs {len(b_by_seed)} seeds, {boot.n_questions} questions; se = {boot.se:.4g}",)
    if boot.drawn != "index draws":
        notes += (f"n = {boot.n_questions} > {two_level.LINEAR_TIME_MIN_N}: linear-time two-level bootstrap "
                  f"({boot.drawn})",)
    if n_dropped:
        notes += (f"{n_dropped} question(s) not answered by every seed of both systems were left out",)
    aso_value, aso_note = (None, "ASO not requested")
    if aso:
        aso_value, aso_note = two_level.aso_score(mat_a.mean(axis=1), mat_b.mean(axis=1), seed=seed or 0,
                                                  confidence=confidence)
    notes += (aso_note,)
    result = TestResult(
        test=SEED_AWARE_TEST, delta=boot.delta, ci_low=boot.ci_low, ci_high=boot.ci_high, p_value=boot.p_value,
        n=boot.n_questions, n_resamples=n_resamples, seed=seed, method="bootstrap-t; CI: bootstrap-t",
        confidence=confidence, notes=notes, aso=aso_value,
    )
    question = dataclasses.replace(question, notes=question.notes + (
        f"seed-averaged per-question scores ({len(a_by_seed)} vs {len(b_by_seed)} seeds)",))
    return SeedAwareComparison(
        result=result, question_level=question,
        spread_a=seed_spread({k: float(s.mean()) for k, s in a_by_seed.items()}, confidence=confidence),
        spread_b=seed_spread({k: float(s.mean()) for k, s in b_by_seed.items()}, confidence=confidence),
        n_dropped=n_dropped, aso=aso_value,
    )


# ----------------------------------------------------------------------------------------- multiple comparisons

def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (controls the family-wise error rate).

    scipy ships only BH/BY (false_discovery_control) and statsmodels is not a dependency: the step-down is short.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def apply_holm(results: Sequence[TestResult]) -> list[TestResult]:
    """Holm-correct a family of results (those without a p-value pass through unchanged)."""
    idx = [i for i, r in enumerate(results) if r.p_value is not None]
    adjusted = holm([results[i].p_value for i in idx]) if idx else []
    out = list(results)
    for i, p_adj in zip(idx, adjusted):
        out[i] = dataclasses.replace(results[i], p_adjusted=float(p_adj), correction=f"Holm (m={len(idx)})")
    return out
