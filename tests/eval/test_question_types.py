"""Japanese question words: the documented overlap rules."""

from __future__ import annotations

import pytest

from cvil.eval.question_types import QuestionWord, classify, decode, encode


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("これは何ですか", ("nani",)),
        ("なにがありますか", ("nani",)),
        ("なんですか", ("nani",)),
        ("何人いますか", ("nani",)),  # compounds of 何 stay nani
        ("何色ですか", ("nani",)),
        ("何時ですか", ("nani",)),  # not itsu
        ("誰がいますか", ("dare",)),
        ("だれですか", ("dare",)),
        ("どこにありますか", ("doko",)),
        ("どんな天気ですか", ("donna",)),
        ("どのくらいの大きさですか", ("dorekurai",)),
        ("どれぐらい", ("dorekurai",)),
        ("天気はどうですか", ("dou",)),
        ("どうして傘をさしていますか", ("naze",)),  # どうして is naze only
        ("なぜ", ("naze",)),
        ("なんで傘をさしていますか", ("naze",)),  # colloquial "why": not nani, though it contains なん
        ("何で来ましたか", ("nani",)),  # kanji 何で reads なにで too ("with what"): stays nani
        ("なんでも食べますか", ("other",)),  # なんでも ("anything") is no question word
        ("どのように座っていますか", ("dou",)),
        ("どのような服ですか", ("other",)),  # "what kind of": not dou
        ("いつ撮影されましたか", ("itsu",)),
        ("いくつありますか", ("ikutsu",)),  # いくつ does not contain いつ
        ("何がいくつありますか", ("nani", "ikutsu")),  # multi-label
        ("どうしてどうなりましたか", ("dou", "naze")),  # a bare どう besides どうして
        ("ぶどうはどこにありますか", ("doko",)),  # ぶどう (grape) is masked for dou
        ("どうぶつは誰のですか", ("dare",)),
        ("いつもどこにいますか", ("doko",)),  # いつも (always) is masked for itsu
        ("これは車です", ("other",)),
    ],
)
def test_classify(question: str, expected: tuple[str, ...]) -> None:
    assert classify(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("何故傘をさしていますか", ("naze",)),  # 何故 = なぜ, not nani
        ("何処にありますか", ("doko",)),  # 何処 = どこ, not nani
        ("何故何処にいますか", ("doko", "naze")),
        ("何時ですか", ("nani",)),  # 何 compounds other than 何故/何処 are unchanged
    ],
)
def test_kanji_spellings_of_naze_and_doko(question: str, expected: tuple[str, ...]) -> None:
    assert classify(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("りんごはいつつありますか", ("other",)),  # いつつ = five
        ("これはいつつくられましたか", ("itsu",)),  # いつ + つくられ: kept
        ("あいつは誰ですか", ("dare",)),  # あいつ = that guy
        ("あいつはいつ来ましたか", ("itsu",)),
        ("そいつはどこにいますか", ("doko",)),
        ("写真がいつ撮られたか", ("itsu",)),
    ],
)
def test_itsu_only_as_a_whole_word(question: str, expected: tuple[str, ...]) -> None:
    assert classify(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("ここはしょくどうですか", ("other",)),  # しょくどう = dining hall
        ("すいどうはありますか", ("other",)),  # すいどう = water supply
        ("しょくどうはどうですか", ("dou",)),
        ("晴れているかどうか分かりますか", ("other",)),  # かどうか = whether
        ("これはいったいどうなっていますか", ("dou",)),
        ("行ったらどうですか", ("dou",)),
        ("「どう」ですか", ("dou",)),
    ],
)
def test_dou_only_as_a_whole_word(question: str, expected: tuple[str, ...]) -> None:
    assert classify(question) == expected


def test_custom_map() -> None:
    types = {"why": QuestionWord(("なぜ", "どうして")), "how": QuestionWord(("どう",))}
    assert classify("どうして", types) == ("why", "how")  # no exclusion configured: both


def test_encode_decode() -> None:
    assert encode(("nani", "ikutsu")) == "nani|ikutsu"
    assert decode("nani|ikutsu") == ("nani", "ikutsu")
    assert decode("other") == ("other",)


@pytest.mark.parametrize(
    ("question", "expected"),
    [("なんですか", ("nani",)), ("これはなんでしょう", ("nani",)), ("なんで泣いていますか", ("naze",))],
)
def test_nande_why_vs_nan_desu(question, expected):
    assert classify(question) == expected
