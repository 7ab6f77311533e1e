"""The JVG-like Japanese "real" set: a different, smaller distribution with raw Japanese answers.

Compared with the translated VQA set it has other class and colour frequencies (its own Zipf ranking), its own
phrasing (どんな色, どこですか, いくつ, 何個, ...), the question words of the paper's Table I(b) (何/なに/なん, 誰/だれ,
どこ, どんな, どれくらい, どう, いつ, いくつ, なぜ), 8 questions per image, and one raw answer string per question: the
canonical word, surface variants that are separate classes (白 / 白色 / 白い / 白です), phrases read off the scene
(赤い車, テーブルの上にある, 男性が馬に乗っている) and a long tail of rare phrasings, so that answers average about two
fugashi tokens and a fifth have three or more (`cvil data validate` prints the distribution). Most types are
answerable from the image (colour, position, count, size, what-is-where); who / when / how / why are not (their
answers follow a prior, a scene-dependent phrase for who, and a long tail). The answer vocabulary is the top-K train
answers with K chosen to cover `Preset.jvg_coverage` of the train answers (0.8 on `small`), so ≈ 26 % of the test
rows are uncovered (empty `an`), as in JVG (74.39 % covered).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from cvil.data.synth.lexicon import (CLASSES, COLOURS, JA_NUMBERS, JVG_PRIOR, JVG_SIZE, JVG_SIZE_VARIANTS, JVG_TAIL,
                                     JVG_TEMPLATES, POSITION_BY_CELL)
from cvil.data.synth.scenes import SIZES, Scene


@dataclass(frozen=True)
class JvgQuestion:
    qtype: str
    ja: str
    answer: str             # the raw Japanese answer string


def _choice(rng, items):
    return items[int(rng.integers(0, len(items)))]


def _tail(rng, qtype: str) -> str:
    first, second = JVG_TAIL[qtype]
    return _choice(rng, first) + _choice(rng, second)


def _variant(rng, canonical: str, common: tuple, tail: list, phrases: tuple = ()) -> str:
    """canonical ≈ 45 %, common variants ≈ 22 %, scene phrases ≈ 20 %, composed rare variants ≈ 13 % (a share that
    has no candidates goes to the canonical answer)."""
    r = rng.random()
    if r < 0.67 and common and r >= 0.45:
        return _choice(rng, common)
    if 0.67 <= r < 0.87 and phrases:
        return _choice(rng, phrases)
    if r >= 0.87 and tail:
        return _choice(rng, tail)
    return canonical


def _colour_adjective(c) -> str:
    """The attributive form: 赤い / 黄色い where Japanese has an い-adjective, else 緑の / オレンジの."""
    return c.ja + "い" if c.ja + "い" in c.ja_variants else c.ja + "の"


def _colour_answer(rng, colour: int, n_colours: int, cls: int) -> str:
    c, o = COLOURS[colour], CLASSES[cls]
    other = COLOURS[(colour + 1 + int(rng.integers(0, n_colours - 1))) % n_colours]
    common = tuple(c.ja_variants) + (c.ja + "です",)
    phrases = (_colour_adjective(c) + o.ja, c.ja + "色の" + o.ja if not c.ja.endswith("色") else c.ja + "の" + o.ja,
               o.ja + "は" + c.ja + "です")
    tail = ["薄い" + c.ja, "濃い" + c.ja, c.ja + "っぽい", c.ja + "と" + other.ja, "明るい" + c.ja, c.ja + "系"]
    return _variant(rng, c.ja, common, tail, phrases)


def _relation(region, other) -> str:
    """Where `region` is relative to `other` (in 3 x 3 cells): 上 / 下 / 左 / 右 / 隣."""
    (r1, c1), (r2, c2) = region.cell, other.cell
    if abs(r1 - r2) >= abs(c1 - c2) and r1 != r2:
        return "上" if r1 < r2 else "下"
    if c1 != c2:
        return "左" if c1 < c2 else "右"
    return "隣"


def _position_answer(rng, position: str, scene: Scene | None = None, region=None) -> str:
    p = next(p for p in POSITION_BY_CELL.values() if p.en == position)
    common = (p.ja + "です", "画像の" + p.ja) + ((p.ja + "側",) if len(p.ja) == 1 else ())
    if p.ja == "真ん中":
        common = ("中央", "真ん中です")
    phrases: tuple = ()
    others = [r for r in scene.regions if r.cls != region.cls] if scene is not None else []
    if others:   # relative to another object of the scene: テーブルの上, 車の左にある, 犬の隣にいる
        other = min(others, key=lambda r: (abs(r.cell[0] - region.cell[0]) + abs(r.cell[1] - region.cell[1]),
                                           r.cls))
        anchor = CLASSES[other.cls].ja + "の" + _relation(region, other)
        verb = "いる" if CLASSES[region.cls].animate else "ある"
        phrases = (anchor, anchor + "に" + verb, anchor + "の方")
    tail = [p.ja + "の方", p.ja + "の端", "少し" + p.ja, p.ja + "の奥", "手前の" + p.ja]
    return _variant(rng, p.ja, common, tail, phrases)


def _count_answer(rng, n: int, counter: str) -> str:
    digits = str(n)
    kan = JA_NUMBERS[n] if n < len(JA_NUMBERS) else digits
    common = (digits, kan + "つ", digits + counter) if n < 10 else (digits, digits + counter)
    tail = [digits + counter + "です", kan + counter, "約" + digits + counter, "たくさん" if n >= 4 else "少し"]
    return _variant(rng, digits + "つ" if n < 10 else digits, common, tail)


def _size_answer(rng, size: int) -> str:
    s = SIZES[size]
    tail = ["かなり" + JVG_SIZE[s], "少し" + JVG_SIZE[s], "手のひらサイズ", "人くらい", "普通より" + JVG_SIZE[s]]
    return _variant(rng, JVG_SIZE[s], JVG_SIZE_VARIANTS[s], tail)


def _what_answer(rng, cls: int, colour: int) -> str:
    o, c = CLASSES[cls], COLOURS[colour]
    common = (o.ja + "です", "一" + o.ja_counter + "の" + o.ja)
    phrases = (_colour_adjective(c) + o.ja, c.ja + "の" + o.ja)
    tail = ["大きな" + o.ja, "小さな" + o.ja, o.ja + "だと思う", o.ja + "があります"]
    return _variant(rng, o.ja, common, tail, phrases)


# who-answers that describe what a person does with an object of the scene (男性が馬に乗っている)
RIDE = {"horse", "elephant", "bicycle", "bus", "boat", "train", "car", "truck"}
HOLD = {"umbrella", "cup", "bottle", "apple", "banana", "phone", "book", "kite", "clock"}


def _who_answer(rng, scene: Scene) -> str:
    """The prior (男性 / 女性 ...) for about two thirds; otherwise a person doing something with a scene object."""
    if rng.random() < 0.66:
        return _prior_answer(rng, "who")
    person = _choice(rng, ("男性", "女性", "子供", "男の子"))
    o = CLASSES[int(_choice(rng, sorted({r.cls for r in scene.regions})))]
    if o.en in RIDE:
        return person + "が" + o.ja + "に乗っている"
    if o.en in HOLD:
        return person + "が" + o.ja + "を持っている"
    if o.animate:
        return person + "が" + o.ja + "と遊んでいる"
    return _choice(rng, (person + "が" + o.ja + "を見ている", person + "がサーフィンをしている",
                         person + "が歩いている"))


def _prior_answer(rng, qtype: str) -> str:
    r = rng.random()
    acc = 0.0
    for answer, p in JVG_PRIOR[qtype]:
        acc += p
        if r < acc:
            return answer
    return _tail(rng, qtype)


def make_jvg_question(rng, scene: Scene, qtype: str, n_colours: int) -> JvgQuestion | None:
    template = _choice(rng, JVG_TEMPLATES[qtype])
    present = sorted({r.cls for r in scene.regions})
    uniq = scene.unique_classes()
    slots = {}
    if qtype in ("color", "position", "size"):
        if not uniq:
            return None
        region = scene.region_of(int(_choice(rng, uniq)))
        cls = region.cls
        answer = (_colour_answer(rng, region.colour, n_colours, cls) if qtype == "color"
                  else _position_answer(rng, region.position, scene, region) if qtype == "position"
                  else _size_answer(rng, region.size))
    elif qtype == "count":
        cls = int(_choice(rng, present))
        answer = _count_answer(rng, scene.count(cls), CLASSES[cls].ja_counter)
    elif qtype == "what":
        lone = scene.lone_regions_by_cell()
        if not lone:
            return None
        cell = _choice(rng, list(lone))
        region = lone[cell]
        cls = None
        slots["POSJ"] = POSITION_BY_CELL[cell].ja
        answer = _what_answer(rng, region.cls, region.colour)
    else:                                       # who / when / how / why: not answerable from the image
        cls = int(_choice(rng, present))
        answer = _who_answer(rng, scene) if qtype == "who" else _prior_answer(rng, qtype)
    if cls is not None:
        o = CLASSES[cls]
        slots.update(C=o.ja, CTR=o.ja_counter, ARU="い" if o.animate else "あり")
    if "{POSJ}" in template and "POSJ" not in slots:
        slots["POSJ"] = POSITION_BY_CELL[scene.region_of(cls).cell if cls in uniq else (1, 1)].ja
    return JvgQuestion(qtype, template.format(**{k: slots.get(k, "") for k in ("C", "CTR", "ARU", "POSJ")}),
                       answer)


def make_jvg_questions(rng, scene: Scene, preset) -> list[JvgQuestion]:
    types = list(preset.jvg_mix)
    w = np.array([preset.jvg_mix[t] for t in types], dtype=float)
    w /= w.sum()
    out: list[JvgQuestion] = []
    for _ in range(preset.jvg_q_per_image):
        for _attempt in range(20):
            q = make_jvg_question(rng, scene, types[int(rng.choice(len(types), p=w))], preset.n_colours)
            if q is not None:
                out.append(q)
                break
    return out


def top_k_vocabulary(train_answers: list[str], coverage: float) -> list[str]:
    """The most frequent train answers (ties: lexicographic) up to the first K covering `coverage` of them."""
    counts = Counter(train_answers)
    ranked = sorted(counts, key=lambda a: (-counts[a], a))
    need = coverage * len(train_answers)
    total = 0
    for k, answer in enumerate(ranked, start=1):
        total += counts[answer]
        if total >= need:
            return ranked[:k]
    return ranked
