"""Two-level (seeds x questions) bootstrap of the difference between two systems trained with several seeds.

Why two levels: a system's score varies with the training seed *and* with the sample of test questions. Averaging the
seeds per question and then resampling questions (the question-level test) treats the trained models as fixed, so
with seed spreads of several points it calls almost any difference significant. Here each resample draws the seeds of
A and of B with replacement (independently: seed i of A and seed i of B are not a matched pair) and the questions
with replacement (the same draw for A and B: the systems answered the same questions), so the interval and the
p-value carry both sources of uncertainty.

Statistic: Δ = mean over seeds and questions of B minus that of A. The test is a studentised (bootstrap-t) test,
``T = Δ / se`` with ``se² = s²_A / k_A + s²_B / k_B + s²_d / n`` (s²: variance of the per-seed means of each system
and of the seed-averaged per-question differences; conservative by a term of order 1/(k n)). A plain percentile
bootstrap over 3 seeds cannot move further than the seeds' own range, so it would call a 3-vs-3 difference with
disjoint seeds "p = 0" however few seeds there are; studentising keeps the small-k behaviour close to Welch's t.
p = (1 + #{|T*| ≥ |T|}) / (R + 1) with ``T* = (Δ* − Δ) / se*``; the CI inverts the same distribution:
``[Δ − q_hi(T*) se, Δ − q_lo(T*) se]``. With one seed per system the seed terms vanish and the test is a question
bootstrap-t.

:func:`aso_score` adds the Almost Stochastic Order ε_min of Dror et al. (2019) / Ulmer et al. (2022) over the seed
scores, computed by the ``deepsig`` package.

Scale: each resample reads every score of every seed (O(R·(k_A + k_B)·n)), minutes at the JVG test's 301k questions.
Above ``LINEAR_TIME_MIN_N`` questions, when the questions' score tuples (a_1..a_kA, b_1..b_kB) take few distinct
values (VQA/JVG accuracies do), a question resample is drawn as multinomial counts over the distinct tuples, which
determine Δ* and se* exactly: O(n log n + R·K·(k_A + k_B)) for K distinct tuples, the same bootstrap with other
Monte Carlo draws. ``TwoLevelResult.drawn`` says which path ran.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Cap on floats materialised per resampling batch.
_MAX_BATCH_FLOATS = 20_000_000
#: Above this many questions, draw through counts per distinct score tuple (module docstring).
LINEAR_TIME_MIN_N = 20_000
#: ... when there are at most this many distinct tuples.
GROUPED_MAX_TUPLES = 4096


@dataclass(frozen=True)
class TwoLevelResult:
    delta: float
    se: float
    p_value: float
    ci_low: float
    ci_high: float
    n_resamples: int
    n_seeds_a: int
    n_seeds_b: int
    n_questions: int
    drawn: str = "index draws"


def _se2(means_a: np.ndarray, means_b: np.ndarray, diffs: np.ndarray) -> np.ndarray:
    """Squared standard error along the last axis (seed terms vanish with one seed)."""
    out = diffs.var(axis=-1, ddof=1) / diffs.shape[-1]
    for m in (means_a, means_b):
        if m.shape[-1] > 1:
            out = out + m.var(axis=-1, ddof=1) / m.shape[-1]
    return out


def statistics(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Δ, se) of seed x question score matrices ``a`` (k_A, n) and ``b`` (k_B, n)."""
    diffs = b.mean(axis=0) - a.mean(axis=0)
    return float(diffs.mean()), float(np.sqrt(_se2(a.mean(axis=1), b.mean(axis=1), diffs)))


def _weights(draws: np.ndarray, k: int) -> np.ndarray:
    """Seed draws (batch, k) -> seed weights (batch, k) summing to 1."""
    counts = np.zeros((draws.shape[0], k))
    np.add.at(counts, (np.arange(draws.shape[0])[:, None], draws), 1.0)
    return counts / k


def _resampled(a: np.ndarray, b: np.ndarray, qa: np.ndarray, sa: np.ndarray, sb: np.ndarray):
    """(Δ*, se*) for a batch of question draws ``qa`` (batch, n) and seed draws ``sa`` (batch, k_A), ``sb``."""
    xa, xb = a[:, qa], b[:, qa]  # (k, batch, n)
    per_seed_a = np.take_along_axis(xa.mean(axis=2).T, sa, axis=1)  # (batch, k_A): means of the drawn seeds
    per_seed_b = np.take_along_axis(xb.mean(axis=2).T, sb, axis=1)
    diffs = (np.einsum("bk,kbn->bn", _weights(sb, b.shape[0]), xb)
             - np.einsum("bk,kbn->bn", _weights(sa, a.shape[0]), xa))
    return diffs.mean(axis=1), np.sqrt(_se2(per_seed_a, per_seed_b, diffs))


def two_level_bootstrap(a, b, *, n_resamples: int = 9999, seed: int | None = 0,
                        confidence: float = 0.95) -> TwoLevelResult:
    """Two-level bootstrap-t of Δ = mean(B) − mean(A); ``a`` (k_A, n) and ``b`` (k_B, n) share the question axis."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need seed x question matrices on the same questions, got {a.shape} and {b.shape}")
    n = a.shape[1]
    if n < 2:
        raise ValueError(f"the two-level bootstrap needs at least 2 questions, got {n}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-question scores contain NaN or inf")
    delta, se = statistics(a, b)
    rng = np.random.default_rng(seed)
    grouped = _distinct_tuples(a, b) if n > LINEAR_TIME_MIN_N else None
    if grouped is not None:
        t = _grouped_t_star(*grouped, n, delta, n_resamples, rng)
        drawn = f"multinomial counts over {grouped[2].size} distinct score tuples"
    else:
        t = _indexed_t_star(a, b, delta, n_resamples, rng)
        drawn = "index draws"
    p, low, high = summarise(t, delta, se, confidence)
    return TwoLevelResult(delta, se, p, low, high, n_resamples, a.shape[0], b.shape[0], n, drawn)


def _indexed_t_star(a: np.ndarray, b: np.ndarray, delta: float, n_resamples: int, rng) -> np.ndarray:
    n = a.shape[1]
    batch = max(1, _MAX_BATCH_FLOATS // ((a.shape[0] + b.shape[0] + 1) * n))
    t_star, done = [], 0
    while done < n_resamples:
        m = min(batch, n_resamples - done)
        qa = rng.integers(0, n, size=(m, n))
        sa = rng.integers(0, a.shape[0], size=(m, a.shape[0]))
        sb = rng.integers(0, b.shape[0], size=(m, b.shape[0]))
        d_star, se_star = _resampled(a, b, qa, sa, sb)
        t_star.append(studentise(d_star, se_star, delta))
        done += m
    return np.concatenate(t_star)


def _distinct_tuples(a: np.ndarray, b: np.ndarray):
    """(A scores [K, k_A], B scores [K, k_B], counts [K]) of the distinct per-question score tuples, or None when
    there are more than GROUPED_MAX_TUPLES of them."""
    tuples, counts = np.unique(np.concatenate([a, b]).T, axis=0, return_counts=True)
    if tuples.shape[0] > GROUPED_MAX_TUPLES:
        return None
    return tuples[:, :a.shape[0]], tuples[:, a.shape[0]:], counts


def _grouped_t_star(ua: np.ndarray, ub: np.ndarray, counts: np.ndarray, n: int, delta: float, n_resamples: int,
                    rng) -> np.ndarray:
    """T* as `_resampled` defines it, from question draws given as counts per distinct tuple (c ~ Multinomial)."""
    k_a, k_b, n_tuples = ua.shape[1], ub.shape[1], counts.size
    batch = max(1, _MAX_BATCH_FLOATS // (n_tuples * (k_a + k_b + 2)))
    t_star, done = [], 0
    while done < n_resamples:
        m = min(batch, n_resamples - done)
        c = rng.multinomial(n, counts / n, size=m).astype(float)  # (m, K): how often each tuple was drawn
        sa = rng.integers(0, k_a, size=(m, k_a))
        sb = rng.integers(0, k_b, size=(m, k_b))
        seed_means_a, seed_means_b = c @ ua / n, c @ ub / n  # (m, k): every seed's mean over the drawn questions
        per_seed_a = np.take_along_axis(seed_means_a, sa, axis=1)
        per_seed_b = np.take_along_axis(seed_means_b, sb, axis=1)
        diffs = _weights(sb, k_b) @ ub.T - _weights(sa, k_a) @ ua.T  # (m, K): seed-weighted B − A per tuple
        d_star = np.sum(c * diffs, axis=1) / n
        var_d = np.sum(c * (diffs - d_star[:, None]) ** 2, axis=1) / (n - 1)
        se2 = var_d / n
        for per_seed, k in ((per_seed_a, k_a), (per_seed_b, k_b)):
            if k > 1:
                se2 = se2 + per_seed.var(axis=-1, ddof=1) / k
        t_star.append(studentise(d_star, np.sqrt(se2), delta))
        done += m
    return np.concatenate(t_star)


def studentise(d_star: np.ndarray, se_star: np.ndarray, delta: float) -> np.ndarray:
    """T* = (Δ* − Δ) / se*; a resample with se* = 0 is as extreme as it gets unless Δ* = Δ."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (d_star - delta) / se_star
        edge = np.where(d_star == delta, 0.0, np.sign(d_star - delta) * np.inf)
    return np.where(se_star > 0, t, edge)


def summarise(t_star: np.ndarray, delta: float, se: float, confidence: float, *, plus_one: bool = True):
    """(p, ci_low, ci_high) from the bootstrap-t distribution (``plus_one=False``: the exact enumeration's p)."""
    if se > 0:
        t_obs = abs(delta) / se
    else:
        t_obs = 0.0 if delta == 0 else np.inf
    extreme = int(np.count_nonzero(np.abs(t_star) >= t_obs))
    p = (1 + extreme) / (t_star.size + 1) if plus_one else extreme / t_star.size
    tail = (1 - confidence) / 2
    finite = t_star[np.isfinite(t_star)] if np.isfinite(t_star).any() else np.zeros(1)
    q_low, q_high = np.quantile(np.clip(t_star, finite.min(), finite.max()), [tail, 1 - tail])
    return float(min(1.0, p)), float(delta - q_high * se), float(delta - q_low * se)


def aso_score(scores_a, scores_b, *, seed: int = 0, confidence: float = 0.95) -> tuple[float | None, str]:
    """ε_min that B almost stochastically dominates A over the seed scores (deepsig): < 0.5 leans to B better, 0 is
    strict dominance, 1 is A better; Ulmer et al. suggest calling ε_min ≤ 0.2 a win. (None, why) when unavailable."""
    try:
        from deepsig import aso
    except ImportError:
        return None, "ASO not computed: the deepsig package is not installed"
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.size < 2 or b.size < 2:
        return None, "ASO not computed: needs at least 2 seeds per system"
    with warnings.catch_warnings():  # deepsig warns when the two seed distributions do not overlap at all
        warnings.simplefilter("ignore", UserWarning)
        eps = aso(b, a, confidence_level=confidence, seed=seed, show_progress=False, num_jobs=1)
    return float(eps), f"ASO ε_min (B over A, deepsig, confidence {confidence}) = {float(eps):.3f}"
