"""Significance tests against textbook cases: identical systems, a large known difference, CI coverage of the true
Δ on simulated data, the BCa → percentile fallback, Holm against a hand computation, seeds, BLEU, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.stats import significance as sig
from bench.stats.bleu_significance import bleu_paired_test

R = 999  # resamples: enough for the assertions below, fast on a shared CPU


def test_identical_systems_p_one_and_ci_contains_zero_via_percentile_fallback():
    a = np.random.default_rng(0).binomial(1, 0.5, 300).astype(float)
    res = sig.paired_test(a, a.copy(), n_resamples=R, seed=1)
    assert res.delta == 0 and res.p_value == pytest.approx(1.0)
    assert res.ci_contains(0.0)
    # every bootstrap Δ is 0: BCa is degenerate, the percentile fallback is used and recorded
    assert "CI: percentile" in res.method and any("fell back to percentile" in n for n in res.notes)


def test_bca_degenerate_falls_back_to_percentile_and_says_so():
    a = np.zeros(50)
    res = sig.paired_bootstrap_ci(a, a + 0.25, n_resamples=R, seed=0)  # constant difference
    assert res.method == "percentile" and res.notes and "BCa degenerate" in res.notes[0]
    assert res.ci_low == pytest.approx(0.25) and res.ci_high == pytest.approx(0.25)


def test_bca_used_when_well_defined():
    rng = np.random.default_rng(3)
    a = rng.normal(size=200)
    res = sig.paired_bootstrap_ci(a, a + rng.normal(0.1, 1, 200), n_resamples=R, seed=0)
    assert res.method == "BCa" and res.notes == ()


def test_large_known_difference_is_significant():
    rng = np.random.default_rng(1)
    a = rng.binomial(1, 0.3, 400).astype(float)
    b = np.maximum(a, rng.binomial(1, 0.5, 400))  # B fixes half of A's errors: Δ ≈ +0.35
    res = sig.paired_test(a, b, n_resamples=R, seed=0)
    assert res.delta == pytest.approx(b.mean() - a.mean())
    assert res.p_value <= 2 / (R + 1) and res.ci_low > 0.2
    assert res.n == 400 and res.seed == 0 and res.n_resamples == R


def test_ci_contains_true_delta_on_simulated_data():
    rng = np.random.default_rng(7)
    true_delta, hits = 0.1, 0
    for _ in range(20):
        a = rng.normal(0.5, 0.3, 150)
        b = a + true_delta + rng.normal(0, 0.3, 150)
        hits += sig.paired_bootstrap_ci(a, b, n_resamples=R, seed=0).ci_contains(true_delta)
    assert hits >= 16  # nominal 95 %: 19/20 expected; ≥ 16 fails with probability < 2 %


def test_small_n_permutation_is_exact():
    res = sig.paired_permutation_test([0, 0, 0, 0, 0], [1, 1, 1, 1, 1], n_resamples=R)
    assert res.method == "exact" and res.n_resamples == 2**5
    assert res.p_value == pytest.approx(2 / 32)  # two-sided: only all-swapped and none-swapped are as extreme


def test_holm_matches_hand_computation():
    # sorted p: 0.005, 0.01, 0.03, 0.04 -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert sig.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert sig.holm([0.01, 0.02, 0.2]) == pytest.approx([0.03, 0.04, 0.2])
    assert sig.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5×2 capped at 1; monotone: 0.9 -> 1
    results = [sig.TestResult("t", 0.0, None, None, p, 10, 0, 0, "m") for p in (0.01, 0.04)]
    corrected = sig.apply_holm(results)
    assert [r.p_adjusted for r in corrected] == pytest.approx([0.02, 0.04])
    assert all(r.correction == "Holm (m=2)" for r in corrected) and corrected[0].p == pytest.approx(0.02)


def test_seed_aware_comparison_averages_per_question_and_reports_spread():
    rng = np.random.default_rng(5)
    idx = pd.Index(range(200), name="question_id")
    a = {str(s): pd.Series(rng.binomial(1, 0.4, 200).astype(float), index=idx) for s in range(3)}
    b = {str(s): pd.Series(rng.binomial(1, 0.7, 200).astype(float), index=idx) for s in range(3)}
    b["2"] = b["2"].iloc[:-5]  # one seed lost 5 questions: they leave the paired test
    cmp = sig.compare_seeds(a, b, n_resamples=R, seed=0, aso=False)
    assert cmp.n_dropped == 5 and cmp.result.n == 195
    expected = pd.concat(b, axis=1, join="inner").mean(axis=1) - pd.concat(a, axis=1).mean(axis=1).loc[:194]
    assert cmp.result.delta == pytest.approx(expected.mean())
    assert cmp.result.p_value < 0.01 and cmp.question_level.p_value < 0.01
    assert any("seed-averaged" in n for n in cmp.question_level.notes)
    assert cmp.question_level.delta == pytest.approx(cmp.delta) and cmp.question_level.n == 195
    assert cmp.spread_a.n_seeds == 3 and cmp.spread_a.mean == pytest.approx(np.mean([s.mean() for s in a.values()]))
    assert cmp.spread_a.ci_low < cmp.spread_a.mean < cmp.spread_a.ci_high


def test_seed_spread_single_seed_has_no_interval():
    spread = sig.seed_spread({"0": 0.5})
    assert spread.n_seeds == 1 and np.isnan(spread.std) and np.isnan(spread.ci_low)


def test_bleu_paired_bootstrap_pretokenised_japanese():
    refs = ["猫 は 白い です か", "犬 が 二 匹 い ます", "赤い 車 が 止まっ て いる"] * 20
    good = list(refs)
    bad = ["猫 は 黒い です か", "犬 が 三 匹 い ます", "青い 車 が 走っ て いる"] * 20
    res = bleu_paired_test(bad, good, refs, tokenize="none", test="bs", n_resamples=200)
    assert res.delta > 0 and res.p_value < 0.05 and res.ci_low > 0
    assert "tok:none" in res.signature and "bs:200" in res.signature and res.seed == 12345
    same = bleu_paired_test(good, good, refs, tokenize="none", test="ar", n_resamples=200)
    assert same.delta == 0 and same.p_value == 1.0 and same.ci_contains(0.0)
    assert "tok:none" in same.signature and "ar:200" in same.signature


def test_bleu_with_ja_mecab_tokenizer_and_seed_zero_rejected():
    refs = ["猫は白いです", "犬が二匹います"] * 10
    res = bleu_paired_test(["猫は黒いです", "犬が三匹います"] * 10, refs, refs, tokenize="ja-mecab",
                               n_resamples=100)
    assert "tok:ja-mecab" in res.signature and res.delta > 0
    with pytest.raises(ValueError, match="seed 0"):
        bleu_paired_test(refs, refs, refs, seed=0)


def _csv(path, scores, preds=None):
    n = len(scores)
    pd.DataFrame({"question_id": range(n), "prediction": preds or ["a"] * n, "ground_truth": ["a"] * n,
                  "score": scores, "question_type": ["other"] * n}).to_csv(path, index=False)
    return str(path)


def test_compare_cli_on_csv_files(tmp_path, capsys):
    from bench.cli import main

    rng = np.random.default_rng(0)
    a = _csv(tmp_path / "base.csv", rng.binomial(1, 0.3, 120).astype(float))
    b = _csv(tmp_path / "kd.csv", rng.binomial(1, 0.8, 120).astype(float))
    assert main(["compare", a, b, "--n-resamples", "199", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["comparison"]["delta"] > 0.3 and report["comparison"]["p_value"] < 0.05
    assert [s["name"] for s in report["systems"]] == ["base", "kd"]
    assert main(["compare", a, b, "--n-resamples", "199"]) == 0
    text = capsys.readouterr().out
    assert "Δ (B − A)" in text and "paired permutation test" in text


def test_compare_cell_selectors_from_mlflow(mlflow_store, tmp_path, capsys):
    from mlflow import MlflowClient

    from bench.cli import main

    c = MlflowClient(mlflow_store)
    exp = c.create_experiment("cvil", artifact_location=str(tmp_path / "art"))
    rng = np.random.default_rng(1)
    for cell, p in (("BASELINE", 0.3), ("KD", 0.8)):
        for seed in (0, 1):
            rid = c.create_run(exp, tags={"cvil.grid": "g", "cvil.cell": cell, "cvil.seed": str(seed)}).info.run_id
            folder = tmp_path / rid
            folder.mkdir()
            c.log_artifact(rid, _csv(folder / "test_per_question.csv", rng.binomial(1, p, 80).astype(float)),
                           "predictions")
            c.set_terminated(rid, "FINISHED")
    assert main(["compare", "cell=BASELINE", "cell=KD", "--grid", "g", "--tracking-uri", mlflow_store,
                 "--n-resamples", "199", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["n_seeds"] for s in report["systems"]] == [2, 2]
    assert report["comparison"]["n"] == 80 and report["comparison"]["p_value"] < 0.05
    # one grid per side: the same cell name in two grids is told apart by --grid-a / --grid-b
    rid_other = c.create_run(exp, tags={"cvil.grid": "h", "cvil.cell": "KD", "cvil.seed": "0"}).info.run_id
    (tmp_path / rid_other).mkdir()
    c.log_artifact(rid_other, _csv(tmp_path / rid_other / "test_per_question.csv", np.ones(80)), "predictions")
    c.set_terminated(rid_other, "FINISHED")
    assert main(["compare", "cell=KD", "cell=KD", "--grid-a", "g", "--grid-b", "h", "--tracking-uri", mlflow_store,
                 "--n-resamples", "199", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["n_seeds"] for s in report["systems"]] == [2, 1] and report["systems"][1]["mean"] == 100
    # without them the name is ambiguous, and said so in one line (exit 2)
    assert main(["compare", "cell=BASELINE", "cell=KD", "--tracking-uri", mlflow_store, "--n-resamples", "99"]) == 2
    assert "cell 'KD' exists in several grids ['g', 'h']: pass --grid" in capsys.readouterr().err
    # a run id works too (one seed)
    assert main(["compare", rid, rid, "--tracking-uri", mlflow_store, "--n-resamples", "99", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["comparison"]["delta"] == 0


def test_cli_placeholders_for_modules_not_built(capsys):
    from bench.cli import COMMANDS, build_parser

    assert {"grid", "search", "ui", "throughput", "compare", "leaderboard"} <= set(COMMANDS)
    build_parser([]).format_help()  # every module either registers or shows "(not available in this build)"


# ------------------------------------------------------------------------------------- seed-aware (issue 13)

def _by_seed(rng, ps, n):
    idx = pd.Index(range(n), name="question_id")
    return {str(i): pd.Series(rng.binomial(1, p, n).astype(float), index=idx) for i, p in enumerate(ps)}


def test_seed_aware_not_significant_when_seeds_disagree():
    rng = np.random.default_rng(1)
    # B is ahead on average, but the training seeds move each system by ±20 points
    a, b = _by_seed(rng, [0.30, 0.50, 0.70], 2000), _by_seed(rng, [0.40, 0.50, 0.75], 2000)
    cmp = sig.compare_seeds(a, b, n_resamples=2000, seed=0, aso=False)
    assert cmp.question_level.p_value < 0.01  # treating the trained models as fixed
    assert cmp.p_value > 0.05 and cmp.ci_low < 0 < cmp.ci_high
    assert cmp.result.test == sig.SEED_AWARE_TEST and cmp.result.question_level is None
    assert cmp.delta == pytest.approx(np.mean([s.mean() for s in b.values()]) - np.mean([s.mean() for s in a.values()]))


def test_seed_aware_and_question_level_agree_when_seeds_agree():
    rng = np.random.default_rng(2)
    a, b = _by_seed(rng, [0.40, 0.41, 0.42], 2000), _by_seed(rng, [0.50, 0.51, 0.52], 2000)
    cmp = sig.compare_seeds(a, b, n_resamples=2000, seed=0, aso=False)
    assert cmp.question_level.p_value < 0.01 and cmp.p_value < 0.01
    assert 0 < cmp.ci_low < cmp.delta < cmp.ci_high
    # no difference at all: neither test rejects
    same = sig.compare_seeds(a, a, n_resamples=500, seed=0, aso=False)
    assert same.p_value == 1.0 and same.question_level.p_value == 1.0


def _brute_force_two_level(a, b, confidence=0.95):
    """Every seed draw of A and B and every question draw, enumerated (plain loops, same definitions)."""
    import itertools

    def stats(xa, xb):
        d = xb.mean(axis=0) - xa.mean(axis=0)
        se2 = d.var(ddof=1) / d.size + xa.mean(axis=1).var(ddof=1) / len(xa) + xb.mean(axis=1).var(ddof=1) / len(xb)
        return d.mean(), math.sqrt(se2)

    delta, se = stats(a, b)
    ts = []
    for sa in itertools.product(range(len(a)), repeat=len(a)):
        for sb in itertools.product(range(len(b)), repeat=len(b)):
            for q in itertools.product(range(a.shape[1]), repeat=a.shape[1]):
                d_star, se_star = stats(a[list(sa)][:, list(q)], b[list(sb)][:, list(q)])
                if se_star > 0:
                    ts.append((d_star - delta) / se_star)
                else:  # all draws identical: as extreme as it gets unless nothing moved
                    ts.append(0.0 if d_star == delta else math.copysign(math.inf, d_star - delta))
    ts = np.array(ts)
    p = float(np.mean(np.abs(ts) >= abs(delta) / se))
    finite = ts[np.isfinite(ts)]
    lo, hi = np.quantile(np.clip(ts, finite.min(), finite.max()), [(1 - confidence) / 2, (1 + confidence) / 2])
    return delta, se, p, delta - hi * se, delta - lo * se


def test_two_level_bootstrap_matches_brute_force_on_a_tiny_case():
    from bench.stats import two_level

    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1.0, (2, 4))
    b = rng.uniform(0.3, 1.0, (2, 4))  # 2 seeds x 4 questions each: 4 x 4 x 256 equally likely resamples
    delta, se, p, low, high = _brute_force_two_level(a, b)
    got = two_level.two_level_bootstrap(a, b, n_resamples=100_000, seed=0)
    assert (got.delta, got.se) == pytest.approx((delta, se))
    assert got.p_value == pytest.approx(p, abs=0.01)
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=0.05 * (high - low))


@pytest.mark.slow
def test_aso_over_seed_scores():
    pytest.importorskip("deepsig")
    from bench.stats import two_level

    better, why = two_level.aso_score([0.40, 0.41, 0.42, 0.43], [0.50, 0.51, 0.52, 0.53], seed=0)
    worse, _ = two_level.aso_score([0.50, 0.51, 0.52, 0.53], [0.40, 0.41, 0.42, 0.43], seed=0)
    assert better == pytest.approx(0.0, abs=0.05) and worse == pytest.approx(1.0, abs=0.05)
    assert "deepsig" in why


# ------------------------------------------------------------------------------------ the large-n (linear) path

def test_closed_form_bca_equals_scipys_bca_on_the_same_draws(monkeypatch):
    """The O(n) acceleration (leave-one-out means in closed form) gives scipy's BCa interval, draw for draw."""
    from scipy import stats

    rng = np.random.default_rng(3)
    a = rng.normal(size=500)
    b = a + rng.normal(0.1, 1, 500)
    scipy_ci = sig.paired_bootstrap_ci(a, b, n_resamples=R, seed=4)  # n <= LINEAR_TIME_MIN_N: scipy's BCa
    assert scipy_ci.method == "BCa"
    monkeypatch.setattr(sig, "GROUPED_MAX_VALUES", 0)  # index draws: scipy's own resamples for the same seed
    theta_b, drawn = sig.bootstrap_means(b - a, R, 4)
    reference = stats.bootstrap((a, b), sig._mean_difference, paired=True, vectorized=True, n_resamples=R,
                                batch=sig._batch(a.size), rng=np.random.default_rng(4))
    assert drawn == "index draws" and np.array_equal(theta_b, reference.bootstrap_distribution)
    low, high = sig._quantiles(theta_b, sig._bca_levels(b - a, theta_b, 0.95))
    assert low == pytest.approx(scipy_ci.ci_low, abs=1e-9) and high == pytest.approx(scipy_ci.ci_high, abs=1e-9)
    monkeypatch.setattr(sig, "LINEAR_TIME_MIN_N", 100)  # the whole large-n path on these 500 questions
    linear = sig.paired_bootstrap_ci(a, b, n_resamples=R, seed=4)
    assert linear.method == "BCa (closed-form jackknife)" and "linear-time bootstrap (index draws)" in linear.notes[0]
    assert (linear.ci_low, linear.ci_high) == pytest.approx((scipy_ci.ci_low, scipy_ci.ci_high), abs=1e-9)


def test_large_n_path_records_its_method_and_agrees_with_the_small_n_path(monkeypatch):
    rng = np.random.default_rng(8)
    n = 3000
    a = rng.choice([0.0, 1 / 3, 2 / 3, 1.0], n)
    b = np.clip(a + rng.choice([-1 / 3, 0.0, 1 / 3, 1 / 3], n), 0, 1)  # B ahead by about 0.07
    small = sig.paired_test(a, b, n_resamples=R, seed=0)
    monkeypatch.setattr(sig, "LINEAR_TIME_MIN_N", 1000)
    large = sig.paired_test(a, b, n_resamples=R, seed=0)
    assert large.method == "permutation: randomised; CI: BCa (closed-form jackknife)"
    assert any("linear-time sign-flip permutation (binomial counts over" in note for note in large.notes)
    assert any("linear-time bootstrap (multinomial counts over" in note for note in large.notes)
    # the same tests with other Monte Carlo draws: the same Δ, the interval within Monte Carlo error
    assert large.delta == small.delta and large.p_value <= 2 / (R + 1) and small.p_value <= 2 / (R + 1)
    width = small.ci_high - small.ci_low
    assert abs(large.ci_low - small.ci_low) < 0.1 * width and abs(large.ci_high - small.ci_high) < 0.1 * width
    # no difference at all: p = 1 and the degenerate BCa falls back to the percentile interval, as below the size
    same = sig.paired_test(a, a.copy(), n_resamples=R, seed=0)
    assert same.p_value == 1.0 and same.ci_low == same.ci_high == 0.0 and "CI: percentile" in same.method
    # many distinct values: random sign bits and index draws instead of counts
    monkeypatch.setattr(sig, "GROUPED_MAX_VALUES", 100)
    c = rng.normal(size=n)
    many = sig.paired_test(c, c + rng.normal(0.5, 1, n), n_resamples=99, seed=0)
    assert any("random sign bits" in note for note in many.notes) and any("index draws" in n for n in many.notes)
    assert many.p_value == pytest.approx(2 / 100) and many.ci_low > 0.4  # two-sided: 2 x (0 + 1) / (99 + 1)


def test_sign_flip_null_has_the_permutation_distribution():
    """The binomial-count draws have the sign-flip distribution: mean 0, variance Σd² / n²."""
    d = np.repeat([-1.0, 0.0, 0.5, 1.0], [400, 300, 200, 100])
    null, drawn = sig.sign_flip_null(d, 20_000, 0)
    assert drawn == "binomial counts over 4 distinct differences"
    assert abs(null.mean()) < 0.05 * null.std()
    assert null.var() == pytest.approx(np.sum(d ** 2) / d.size ** 2, rel=0.05)


def test_grouped_two_level_bootstrap_matches_brute_force(monkeypatch):
    from bench.stats import two_level

    monkeypatch.setattr(two_level, "LINEAR_TIME_MIN_N", 0)
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1.0, (2, 4))
    b = rng.uniform(0.3, 1.0, (2, 4))
    delta, se, p, low, high = _brute_force_two_level(a, b)
    got = two_level.two_level_bootstrap(a, b, n_resamples=100_000, seed=0)
    assert got.drawn == "multinomial counts over 4 distinct score tuples"
    assert (got.delta, got.se) == pytest.approx((delta, se))
    assert got.p_value == pytest.approx(p, abs=0.01)
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=0.05 * (high - low))


def test_seed_aware_comparison_at_scale_says_how_it_drew(monkeypatch):
    from bench.stats import two_level

    rng = np.random.default_rng(1)
    a, b = _by_seed(rng, [0.30, 0.50, 0.70], 2000), _by_seed(rng, [0.40, 0.50, 0.75], 2000)
    indexed = sig.compare_seeds(a, b, n_resamples=2000, seed=0, aso=False)
    monkeypatch.setattr(two_level, "LINEAR_TIME_MIN_N", 1000)
    grouped = sig.compare_seeds(a, b, n_resamples=2000, seed=0, aso=False)
    assert any("multinomial counts over 64 distinct score tuples" in note for note in grouped.result.notes)
    assert not any("linear-time" in note for note in indexed.result.notes)
    assert grouped.delta == indexed.delta and grouped.p_value > 0.05
    assert grouped.p_value == pytest.approx(indexed.p_value, abs=0.05)
