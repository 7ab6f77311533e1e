"""JVG-like answers: the fugashi length distribution, and the generator's variants and scene-dependent phrases."""

from __future__ import annotations

import numpy as np

from cvil.data.answer_stats import answer_lengths, answer_tokens
from cvil.data.synth.jvg import _colour_answer, _position_answer, _who_answer, top_k_vocabulary
from cvil.data.synth.lexicon import CLASSES, COLOURS
from cvil.data.synth.scenes import Region, Scene

CAT, CAR, TABLE = 0, 2, 22
RED, GREEN = 0, 2


def test_answer_lengths_counts_fugashi_tokens_and_coverage():
    assert answer_tokens("テーブルの上にある") == ["テーブル", "の", "上", "に", "ある"]
    stats = answer_lengths(["白", "白", "赤い車", "テーブルの上にある"], labels={"白", "赤い車"})
    assert stats.answers == 4 and stats.distinct == 3
    assert stats.mean_tokens == (1 + 1 + 2 + 5) / 4
    assert stats.share_3plus == 0.25 and stats.coverage == 0.75
    assert stats.histogram == {1: 2, 2: 1, 5: 1}
    assert "mean 2.25, 25.0% with >= 3 tokens, top-K coverage 75.0% [1: 2, 2: 1, 5+: 1]" in stats.format()


def _scene(*regions: Region) -> Scene:
    return Scene(img_id=1, width=640, height=480, regions=regions, detections=())


def _many(fn, n=400):
    rng = np.random.default_rng(0)
    return [fn(rng) for _ in range(n)]


def test_colour_answers_are_variants_and_phrases_about_the_asked_object():
    answers = set(_many(lambda rng: _colour_answer(rng, RED, 8, CAR)))
    assert {"赤", "赤色", "赤い", "赤です", "赤い車", "赤色の車", "車は赤です"} <= answers    # separate classes
    answers = set(_many(lambda rng: _colour_answer(rng, GREEN, 8, CAT)))
    assert "緑の猫" in answers and "緑い猫" not in answers             # no い-adjective for 緑


def test_position_phrases_name_a_neighbouring_object_and_the_true_relation():
    cat = Region(cls=CAT, colour=RED, size=0, box=(0.40, 0.05, 0.55, 0.25))     # top middle
    table = Region(cls=TABLE, colour=GREEN, size=2, box=(0.35, 0.70, 0.65, 0.95))  # bottom middle
    scene = _scene(cat, table)
    answers = set(_many(lambda rng: _position_answer(rng, cat.position, scene, cat)))
    assert {"上", "テーブルの上", "テーブルの上にいる"} <= answers      # a cat is animate: いる
    answers = set(_many(lambda rng: _position_answer(rng, table.position, scene, table)))
    assert {"下", "猫の下", "猫の下にある"} <= answers
    alone = _scene(cat)
    assert not any(a.endswith("にいる") for a in _many(lambda rng: _position_answer(rng, cat.position, alone, cat)))


def test_who_answers_use_an_object_of_the_scene():
    car = Region(cls=CAR, colour=RED, size=1, box=(0.1, 0.1, 0.3, 0.3))
    answers = _many(lambda rng: _who_answer(rng, _scene(car)))
    phrases = [a for a in answers if "が" in a]
    assert phrases and all(a.endswith("が車に乗っている") for a in phrases)
    assert 0.2 < len(phrases) / len(answers) < 0.5


def test_top_k_vocabulary_keeps_the_frequent_head():
    answers = ["白"] * 5 + ["白色"] * 3 + ["赤い車", "テーブルの上"]
    assert top_k_vocabulary(answers, 0.75) == ["白", "白色"]
    assert CLASSES[CAR].ja == "車" and COLOURS[RED].ja == "赤"
