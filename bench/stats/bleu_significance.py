"""Paired significance of the project's own BLEU: resample questions (and seeds) and recompute exactly that BLEU.

Why not sacrebleu's test: the BLEU column is fugashi + NLTK (:func:`cvil.eval.bleu.corpus_bleu`, a preset or
options), while sacrebleu tokenises and smooths its own way; a star must test the number it is printed next to. So
the statistic here is the column's value, recomputed on each resample: corpus-level BLEU from per-segment sufficient
statistics (:func:`cvil.eval.bleu.bleu_from_stats`, equal to NLTK's ``corpus_bleu`` to the last digit), sentence-level
BLEU as the mean of per-question ``sentence_bleu`` values. The column of a multi-seed cell is the mean of the seeds'
BLEU, so Δ = mean over B's seeds − mean over A's seeds.

Seed-aware (the stars): each resample draws the questions (shared by A and B) and, independently, the seeds of A and
of B (two-level paired bootstrap, Koehn 2004 at the question level). p = (1 + #{|Δ* − Δ| ≥ |Δ|}) / (R + 1), CI:
percentile of Δ*. Unlike the accuracy test this one is not studentised (BLEU has no per-question variance formula),
so with 2-3 seeds that do not overlap it cannot give a large p; the per-seed spread and the question-level test are
reported beside it. Question-level (seeds held fixed): the same resamples of the questions only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.stats.results import TestResult
from cvil.eval import bleu as bleu_mod

SEED_AWARE_BLEU_TEST = "two-level paired bootstrap of the column's BLEU (seeds and questions)"


class _Scorer:
    """One seed's BLEU on any resample of the questions, in 0-100."""

    def __init__(self, hyps: list[list[str]], refs: list[list[str]], options: bleu_mod.BleuOptions):
        self.options = options
        if options.level == "corpus":
            self.stats = bleu_mod.segment_stats(hyps, refs, max_order=len(options.weights))
        else:
            self.scores = bleu_mod.nltk_sentence_scores(hyps, refs, options)

    def __call__(self, idx: np.ndarray | None = None) -> float:
        if self.options.level == "corpus":
            return 100.0 * bleu_mod.bleu_from_stats(self.stats, self.options, idx)
        return 100.0 * float(self.scores.mean() if idx is None else self.scores[idx].mean())


def _tokens(texts: list[str], cache: dict[str, list[str]]) -> list[list[str]]:
    out = []
    for t in texts:
        if t not in cache:
            cache[t] = bleu_mod.fugashi_tokens(t)
        out.append(cache[t])
    return out


def bleu_compare_seeds(a_frames: Mapping[str, pd.DataFrame], b_frames: Mapping[str, pd.DataFrame], *,
                       options: bleu_mod.BleuOptions | None = None, n_resamples: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> TestResult:
    """B vs A on the column's BLEU from per-question frames by seed (``prediction``, ``ground_truth``, indexed by
    question_id); returns the seed-aware result with ``.question_level`` and, in ``notes``, each seed's BLEU."""
    options = options or bleu_mod.PRESETS[bleu_mod.JVG_PRESET]
    if not a_frames or not b_frames:
        raise ValueError("no seeds")
    shared = None
    for f in (*a_frames.values(), *b_frames.values()):
        shared = f.index if shared is None else shared.intersection(f.index)
    if shared is None or len(shared) < 2:
        raise ValueError("BLEU comparison needs at least 2 questions answered by every seed of both systems")
    shared = shared.sort_values()
    cache: dict[str, list[str]] = {}

    def scorers(frames):
        return [_Scorer(_tokens(frames[k].loc[shared, "prediction"].astype(str).tolist(), cache),
                        _tokens(frames[k].loc[shared, "ground_truth"].astype(str).tolist(), cache), options)
                for k in sorted(frames)]

    sa, sb = scorers(a_frames), scorers(b_frames)
    col_a, col_b = np.array([s() for s in sa]), np.array([s() for s in sb])
    delta = float(col_b.mean() - col_a.mean())
    rng = np.random.default_rng(seed)
    n = len(shared)
    two_level, question = np.empty(n_resamples), np.empty(n_resamples)
    for r in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        va, vb = np.array([s(idx) for s in sa]), np.array([s(idx) for s in sb])
        question[r] = vb.mean() - va.mean()
        two_level[r] = vb[rng.integers(0, len(sb), len(sb))].mean() - va[rng.integers(0, len(sa), len(sa))].mean()
    sig_label = bleu_mod.matching_preset(options) or "custom"
    notes = (f"BLEU ({sig_label}: level={options.level}, w={','.join(f'{w:g}' for w in options.weights)}, "
             f"smooth={options.smoothing}, reweigh={options.auto_reweigh}) per seed: A "
             + ", ".join(f"{v:.2f}" for v in col_a) + "; B " + ", ".join(f"{v:.2f}" for v in col_b),)

    def result(test: str, deltas: np.ndarray, extra: tuple[str, ...]) -> TestResult:
        p, low, high = _shift_p_and_ci(deltas, delta, confidence)
        return TestResult(test=test, delta=delta, ci_low=low, ci_high=high, p_value=p, n=n,
                              n_resamples=n_resamples, seed=seed, method="paired bootstrap; CI: percentile",
                              confidence=confidence, notes=notes + extra)

    q_level = result("paired bootstrap of the column's BLEU (questions; seeds fixed)", question, ())
    seeds = f"{len(sa)} vs {len(sb)} seeds, {n} questions"
    return dataclasses.replace(result(SEED_AWARE_BLEU_TEST, two_level, (seeds,)), question_level=q_level)


def column_values(a_frames: Mapping[str, pd.DataFrame], options: bleu_mod.BleuOptions) -> dict[str, float]:
    """Each seed's BLEU on all its questions, as the column's metric was computed (0-100)."""
    return {k: bleu_mod.corpus_bleu(f["prediction"].astype(str).tolist(), f["ground_truth"].astype(str).tolist(),
                                    level=options.level, weights=options.weights, smoothing=options.smoothing,
                                    auto_reweigh=options.auto_reweigh).score
            for k, f in a_frames.items()}


def _shift_p_and_ci(deltas: np.ndarray, delta: float, confidence: float) -> tuple[float, float, float]:
    extreme = int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta))) if delta != 0 else deltas.size
    p = min(1.0, (1 + extreme) / (deltas.size + 1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return p, float(low), float(high)


# ------------------------------------------------------------------------------- sacrebleu's paired tests

@contextlib.contextmanager
def _sacrebleu_seed(seed: int) -> Iterator[None]:
    """sacrebleu's PairedTest reads its seed from SACREBLEU_SEED at construction."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = old


def bleu_paired_test(
    baseline: Sequence[str], system: Sequence[str], references: Sequence[str], *, test: str = "bs",
    tokenize: str = "ja-mecab", n_resamples: int = 0, seed: int = 12345, confidence: float = 0.95,
) -> TestResult:
    """Paired BLEU test with sacrebleu: ``test="bs"`` (paired bootstrap, Koehn 2004; 1000 resamples by default) or
    ``"ar"`` (approximate randomisation, Riezler & Maxwell 2005; 10000 trials by default). Δ = BLEU(system) −
    BLEU(baseline).

    Tokenisation is passed straight to sacrebleu: a tokenizer name (``"ja-mecab"``, ``"char"``, ``"13a"``) or
    ``"none"`` for strings already tokenised with spaces (e.g. by fugashi + unidic-lite, whose segmentation differs
    from ja-mecab's IPA dictionary: the signature says which was used). The CI of Δ is a paired bootstrap over the
    same per-segment sufficient statistics with the indices sacrebleu's bootstrap draws (same seed).
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    if not len(baseline) == len(system) == len(references):
        raise ValueError(f"lengths differ: baseline {len(baseline)}, system {len(system)}, refs {len(references)}")
    if seed == 0:
        raise ValueError("sacrebleu treats seed 0 as 'unseeded'; pick another seed")
    refs = [list(references)]
    metric = BLEU(tokenize=tokenize)
    with _sacrebleu_seed(seed):
        paired = PairedTest([("baseline", list(baseline)), ("system", list(system))], {"BLEU": metric}, refs,
                            test_type=test, n_samples=n_resamples)
        signatures, scores = paired()
    (name,) = [k for k in scores if k != "System"]
    base_res, sys_res = scores[name]
    deltas = _bleu_bootstrap_deltas(metric, baseline, system, refs, n=1000 if test == "ar" else paired.n_samples,
                                    seed=seed)
    tail = (1 - confidence) / 2 * 100
    low, high = (float(x) for x in np.percentile(deltas, [tail, 100 - tail]))
    delta, p_value = float(sys_res.score - base_res.score), float(sys_res.p_value)
    notes = (f"BLEU baseline {base_res.score:.2f}, system {sys_res.score:.2f}",)
    if delta == 0 and not deltas.any():
        # sacrebleu counts strictly larger resampled differences, so a difference that is zero on every resample
        # (identical outputs, or BLEU 0 for both, common with 1-2 token answers) gets p = 1/(n+1). No evidence.
        p_value = 1.0
        notes += ("degenerate: Δ is 0 on every resample; p set to 1 (sacrebleu would report 1/(n+1))",)
    label = {"bs": "paired bootstrap", "ar": "paired approximate randomisation"}[test]
    return TestResult(
        test=f"sacrebleu {label} (BLEU)", delta=delta, ci_low=low, ci_high=high, p_value=p_value, n=len(system),
        n_resamples=paired.n_samples, seed=seed, method=f"{test}; CI: paired bootstrap percentile",
        confidence=confidence, notes=notes, signature=str(signatures[name]),
    )


def _bleu_bootstrap_deltas(metric, baseline, system, refs, *, n: int, seed: int) -> np.ndarray:
    """BLEU(system) − BLEU(baseline) on n paired bootstrap resamples of the segments.

    sacrebleu's significance module resamples these per-segment statistics with the same private hooks; reusing
    them keeps the CI on the same footing as its p-value (same indices as its paired bootstrap for the same seed).
    """
    bl = np.asarray(metric._extract_corpus_statistics(list(baseline), refs), dtype="float32")
    sy = np.asarray(metric._extract_corpus_statistics(list(system), refs), dtype="float32")
    idxs = np.random.default_rng(seed).choice(len(system), size=(n, len(system)), replace=True)
    return np.array([metric._compute_score_from_stats(sy[i].sum(0)).score
                     - metric._compute_score_from_stats(bl[i].sum(0)).score for i in idxs])


def bleu_pooled(a_frames: dict[str, pd.DataFrame], b_frames: dict[str, pd.DataFrame], *, test: str = "bs",
                tokenize: str = "ja-mecab", seed: int = 12345) -> TestResult:
    """sacrebleu paired test with seeds pooled into one corpus: seed i of A paired with seed i of B (sorted),
    questions joined on question_id (BLEU is a corpus statistic, it cannot be averaged per question)."""
    base, system, refs = [], [], []
    for (_, fa), (_, fb) in zip(sorted(a_frames.items()), sorted(b_frames.items())):
        joined = fa[["prediction", "ground_truth"]].join(fb[["prediction"]].add_suffix("_b"), how="inner")
        base += joined["prediction"].tolist()
        system += joined["prediction_b"].tolist()
        refs += joined["ground_truth"].tolist()
    result = bleu_paired_test(base, system, refs, test=test, tokenize=tokenize, seed=seed)
    pairs = min(len(a_frames), len(b_frames))
    return dataclasses.replace(result, notes=result.notes + (f"{pairs} seed pair(s) pooled into one corpus",))
