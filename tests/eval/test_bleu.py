"""BLEU: known values computed by hand, tokeniser options, and the signature."""

from __future__ import annotations

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction

from cvil.eval.bleu import corpus_bleu, fugashi_tokens, nltk_corpus_bleu_tokens

SENTENCES = ["赤い車が二台あります", "猫がソファの上で寝ています"]


def test_fugashi_surface_tokens() -> None:
    assert fugashi_tokens("猫は何色ですか") == ["猫", "は", "何色", "です", "か"]


def test_hand_computed_ngram_case() -> None:
    # p1 = 4/5, p2 = 3/4, p3 = 2/3, p4 = 1/2, equal lengths (BP = 1)
    got = nltk_corpus_bleu_tokens([["a", "b", "c", "d", "e"]], [["a", "b", "c", "d", "f"]])
    assert got == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_hand_computed_brevity_penalty() -> None:
    # all precisions 1, hypothesis 4 tokens vs reference 6: BP = exp(1 - 6/4)
    got = nltk_corpus_bleu_tokens([list("abcd")], [list("abcdef")])
    assert got == pytest.approx(math.exp(1 - 6 / 4))


def test_identical_corpus_is_100() -> None:
    res = corpus_bleu(SENTENCES, SENTENCES)
    assert res.raw == pytest.approx(1.0)
    assert res.score == pytest.approx(100.0)
    assert res.n_segments == 2


def test_short_answers_without_smoothing_are_zero() -> None:
    # no 4-grams at all: unsmoothed BLEU is ~0 even for a perfect system (documented pitfall)
    assert corpus_bleu(["赤", "車"], ["赤", "車"]).score < 1e-6
    smoothed = corpus_bleu(["赤", "車"], ["赤", "車"], smoothing=SmoothingFunction().method1)
    assert smoothed.score > 0
    assert smoothed.signature.smoothing == "method1"


def test_sacrebleu_char_hand_computed() -> None:
    # 6 characters each, last one differs: p = 5/6, 4/5, 3/4, 2/3
    res = corpus_bleu(["あいうえおか"], ["あいうえおき"], tokenizer="char")
    assert res.score == pytest.approx(100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25)
    assert "tok:char" in res.signature.library_signature
    assert res.signature.smoothing == "exp"


def test_sacrebleu_ja_mecab_identical() -> None:
    res = corpus_bleu(SENTENCES, SENTENCES, tokenizer="ja-mecab")
    assert res.score == pytest.approx(100.0)
    assert "ja-mecab" in res.signature.library_signature
    assert set(res.signature.versions) == {"sacrebleu", "mecab-python3", "ipadic"}


def test_signature_records_everything() -> None:
    sig = corpus_bleu(SENTENCES, SENTENCES).signature
    assert sig.tokenizer == "fugashi+unidic-lite"
    assert sig.backend == "nltk.corpus_bleu"
    assert sig.weights == (0.25, 0.25, 0.25, 0.25)
    assert sig.smoothing == "none"
    assert set(sig.versions) == {"nltk", "fugashi", "unidic-lite"}
    line = sig.format()
    assert line.startswith("tok:fugashi+unidic-lite|backend:nltk.corpus_bleu|level:corpus|w:0.25,0.25,0.25,0.25|"
                           "smooth:none|reweigh:no|preset:corpus4|")
    d = corpus_bleu(SENTENCES, SENTENCES).to_dict()
    assert d["signature_str"] == line and d["signature"]["weights"] == [0.25] * 4


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown BLEU tokenizer"):
        corpus_bleu(["a"], ["a"], tokenizer="spaces")
    with pytest.raises(ValueError, match="hypotheses"):
        corpus_bleu(["a"], [])
    with pytest.raises(ValueError, match="empty"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="NLTK options"):
        corpus_bleu(["a"], ["a"], tokenizer="char", weights=(0.5, 0.5))


# ------------------------------------------------------------------------------ options, presets (issue 13)

def test_corpus1_preset_hand_computed() -> None:
    # 赤 | 木 の 上 vs 赤 | 木 の 下: 3 of 4 unigrams match, equal lengths -> 75
    res = corpus_bleu(["赤", "木の上"], ["赤", "木の下"], preset="corpus1")
    assert res.score == pytest.approx(75.0)
    assert res.signature.preset == "corpus1" and res.signature.weights == (1.0,)
    assert "level:corpus|w:1|smooth:none|reweigh:no|preset:corpus1" in res.signature.format()


def test_sentence_level_is_the_mean_of_sentence_bleu() -> None:
    from nltk.translate.bleu_score import sentence_bleu

    hyps, refs = ["赤", "木の上", "白い犬"], ["赤", "木の下", "白い猫"]
    for smoothing in ("method1", "method4"):
        res = corpus_bleu(hyps, refs, level="sentence", smoothing=smoothing)
        fn = getattr(SmoothingFunction(), smoothing)
        expected = [sentence_bleu([fugashi_tokens(r)], fugashi_tokens(h), smoothing_function=fn)
                    for h, r in zip(hyps, refs)]
        assert res.score == 100 * sum(expected) / 3
        assert res.signature.backend == "nltk.sentence_bleu (mean)" and res.signature.smoothing == smoothing
    # auto_reweigh: "赤" exact with weights (1,) -> 1; 木の上 vs 木の下 (weights 1/3 x 3) has no trigram match -> ~0;
    # 白い犬 vs 白い猫 (weights 1/2 x 2) has no bigram match -> ~0
    auto = corpus_bleu(hyps, refs, level="sentence", auto_reweigh=True)
    assert auto.score == pytest.approx(100 / 3, abs=1e-6)
    assert auto.signature.auto_reweigh and auto.signature.preset is None


def test_explicit_options_override_a_preset() -> None:
    res = corpus_bleu(["赤", "木の上"], ["赤", "木の下"], preset="corpus1", weights=(0.5, 0.5))
    # p1 = 3/4; p2 = (0 + 1) / (1 + 2): NLTK counts a one-token hypothesis as 1 bigram in the denominator
    assert res.score == pytest.approx(100 * (0.75 / 3) ** 0.5)
    assert res.signature.preset is None and res.signature.weights == (0.5, 0.5)


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown BLEU smoothing 'method9'"):
        corpus_bleu(["赤"], ["赤"], smoothing="method9")
    with pytest.raises(ValueError, match="unknown BLEU level 'segment'"):
        corpus_bleu(["赤"], ["赤"], level="segment")
    with pytest.raises(ValueError, match="unknown BLEU preset"):
        corpus_bleu(["赤"], ["赤"], preset="bleu9")
    with pytest.raises(ValueError, match="NLTK options"):
        corpus_bleu(["赤"], ["赤"], tokenizer="char", level="sentence")


def _random_corpus(seed: int, n: int = 60) -> tuple[list[list[str]], list[list[str]]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = list("あいうえおかきくけこ")
    hyps, refs = [], []
    for _ in range(n):
        ref = [str(t) for t in rng.choice(vocab, size=int(rng.integers(1, 7)))]
        hyp = [t if rng.random() < 0.6 else str(rng.choice(vocab)) for t in ref][: int(rng.integers(1, len(ref) + 2))]
        hyps.append(hyp)
        refs.append(ref)
    return hyps, refs


@pytest.mark.parametrize("smoothing", ["none", "method0", "method1", "method2", "method3", "method4", "method5",
                                       "method6", "method7"])
@pytest.mark.parametrize(("weights", "auto_reweigh"), [((0.25,) * 4, False), ((0.25,) * 4, True), ((1.0,), False),
                                                      ((0.5, 0.5), False), ((0.2, 0.3, 0.5), False)])
def test_bleu_from_stats_equals_nltk_corpus_bleu(smoothing, weights, auto_reweigh) -> None:
    """The resampling statistics reproduce NLTK's corpus_bleu to the last digit, on the corpus and on resamples."""
    import numpy as np

    from cvil.eval.bleu import BleuOptions, bleu_from_stats, segment_stats

    options = BleuOptions(weights=weights, smoothing=smoothing, auto_reweigh=auto_reweigh)
    if smoothing == "method6" and len(weights) < 3:
        pytest.skip("NLTK's method6 needs at least trigram precisions")
    for seed in range(3):
        hyps, refs = _random_corpus(seed)
        stats = segment_stats(hyps, refs, max_order=len(weights))
        idx = np.random.default_rng(seed).integers(0, len(hyps), len(hyps))
        for sel in (np.arange(len(hyps)), idx):
            want = nltk_corpus_bleu_tokens([hyps[i] for i in sel], [refs[i] for i in sel], weights=weights,
                                           smoothing=options.smoothing_function(), auto_reweigh=auto_reweigh)
            assert bleu_from_stats(stats, options, sel) == want


def test_jvg_default_is_the_jvg_preset() -> None:
    from cvil.eval.bleu import JVG_PRESET
    from cvil.eval.jvg import evaluate_jvg, unknown_frame

    rows = [{"q_id": 1, "ja": "何色ですか", "answer": "赤", "an": [1]}, {"q_id": 2, "ja": "どこ", "answer": "木の下", "an": [2]}]
    res = evaluate_jvg(unknown_frame(rows), {1: "赤", 2: "木の上"})
    assert JVG_PRESET == "corpus1" and res.bleu.signature.preset == "corpus1" and res.summary["bleu"] == 75.0
    other = evaluate_jvg(unknown_frame(rows), {1: "赤", 2: "木の上"}, preset="corpus4")
    assert other.bleu.signature.preset == "corpus4" and other.summary["bleu"] < 1e-6
