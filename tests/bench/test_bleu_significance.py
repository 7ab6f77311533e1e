"""BLEU stars test the column's own BLEU: the recomputed values equal corpus_bleu, and the resampling behaves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.stats.bleu_significance import SEED_AWARE_BLEU_TEST, bleu_compare_seeds, column_values
from cvil.eval.bleu import PRESETS, corpus_bleu

ANSWERS = ["赤", "白い", "木の上", "木の下", "2匹", "テーブルの上", "男性", "晴れ", "犬", "白い犬"]


def _frame(rng, p_correct: float, n: int = 120) -> pd.DataFrame:
    truth = [ANSWERS[i % len(ANSWERS)] for i in range(n)]
    pred = [t if rng.random() < p_correct else str(rng.choice(ANSWERS)) for t in truth]
    return pd.DataFrame({"prediction": pred, "ground_truth": truth}, index=pd.Index(range(n), name="question_id"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_delta_is_the_difference_of_the_column_values(preset):
    rng = np.random.default_rng(0)
    a = {"0": _frame(rng, 0.3), "1": _frame(rng, 0.35)}
    b = {"0": _frame(rng, 0.6), "1": _frame(rng, 0.65)}
    res = bleu_compare_seeds(a, b, options=PRESETS[preset], n_resamples=200, seed=1)
    col = {k: np.mean([corpus_bleu(f["prediction"].tolist(), f["ground_truth"].tolist(), preset=preset).score
                       for f in frames.values()]) for k, frames in (("a", a), ("b", b))}
    assert res.delta == pytest.approx(col["b"] - col["a"], abs=1e-12)
    assert column_values(a, PRESETS[preset]) == pytest.approx(
        {k: corpus_bleu(f["prediction"].tolist(), f["ground_truth"].tolist(), preset=preset).score
         for k, f in a.items()}, abs=1e-12)
    assert res.test == SEED_AWARE_BLEU_TEST and res.question_level is not None


def test_sentence_level_and_significance_direction():
    from cvil.eval.bleu import BleuOptions

    rng = np.random.default_rng(2)
    a, b = {"0": _frame(rng, 0.2)}, {"0": _frame(rng, 0.8)}
    opts = BleuOptions(level="sentence", smoothing="method1")
    res = bleu_compare_seeds(a, b, options=opts, n_resamples=300, seed=0)
    want = (corpus_bleu(b["0"]["prediction"].tolist(), b["0"]["ground_truth"].tolist(), level="sentence",
                        smoothing="method1").score
            - corpus_bleu(a["0"]["prediction"].tolist(), a["0"]["ground_truth"].tolist(), level="sentence",
                          smoothing="method1").score)
    assert res.delta == pytest.approx(want, abs=1e-12) and res.delta > 0
    assert res.p_value < 0.01 and res.ci_low > 0
    # one seed each: the seed level adds nothing, so both tests see the same resamples
    assert res.p_value == res.question_level.p_value and res.ci_low == res.question_level.ci_low
    same = bleu_compare_seeds(a, a, options=opts, n_resamples=100, seed=0)
    assert same.delta == 0 and same.p_value == 1.0


def test_bleu_ratio_study_reproduces_the_documented_ordering():
    """docs/metrics.md: only corpus BLEU-1 lands near the paper's 0.93-0.96; auto_reweigh sentence BLEU is >= 1."""
    from bench.stats import bleu_ratio

    preds, gts = bleu_ratio.simulate(np.random.default_rng(0), n=800, near_miss=0.25)
    acc = np.mean([p == g for p, g in zip(preds, gts)])
    assert 0.30 < acc < 0.40
    table = dict(bleu_ratio.ratio_table(seeds=(0,), near_misses=(0.25,), n=800))
    assert 0.9 < table["corpus BLEU-1 (corpus1)"][0] < 1.0
    assert table["sentence BLEU-4, auto_reweigh"][0] >= 1.0
    assert table["corpus BLEU-4, no smoothing (corpus4)"][0] < 0.01
