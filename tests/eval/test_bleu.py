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
