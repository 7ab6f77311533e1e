"""The JVG-like Japanese "real" set: a different, smaller distribution with raw Japanese answers.

Compared with the translated VQA set it has other class and colour frequencies (its own Zipf ranking), its own
phrasing (どんな色, どこですか, いくつ, 何個, ...), the question words of the paper's Table I(b) (何/なに/なん, 誰/だれ,
どこ, どんな, どれくらい, どう, いつ, いくつ, なぜ), 8 questions per image, and one raw answer string per question with
surface variants (白 / 白色 / 白い / 白です) and a long tail of rare phrasings. Most types are answerable from the
image (colour, position, count, size, what-is-where); who / when / how / why are not (their answers follow a prior
plus a long tail). The answer vocabulary is the top-K train answers with K chosen to cover `Preset.jvg_coverage`
of the train answers, so ≈ 25 % of the rows are uncovered (empty `an`), as in JVG (74.39 %).
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


def _variant(rng, canonical: str, common: tuple, tail: list) -> str:
    """canonical ≈ 62 %, common variants ≈ 25 %, composed rare variants ≈ 13 %."""
    r = rng.random()
    if r < 0.62 or (r < 0.87 and not common):
        return canonical
    if r < 0.87:
        return _choice(rng, common)
    return _choice(rng, tail)


def _colour_answer(rng, colour: int, n_colours: int) -> str:
    c = COLOURS[colour]
    other = COLOURS[(colour + 1 + int(rng.integers(0, n_colours - 1))) % n_colours]
    common = tuple(c.ja_variants) + (c.ja + "です",)
    tail = ["薄い" + c.ja, "濃い" + c.ja, c.ja + "っぽい", c.ja + "と" + other.ja, "明るい" + c.ja, c.ja + "系"]
    return _variant(rng, c.ja, common, tail)


def _position_answer(rng, position: str) -> str:
    p = next(p for p in POSITION_BY_CELL.values() if p.en == position)
    common = (p.ja + "です", "画像の" + p.ja) + ((p.ja + "側",) if len(p.ja) == 1 else ())
    if p.ja == "真ん中":
        common = ("中央", "真ん中です")
    tail = [p.ja + "の方", p.ja + "の端", "少し" + p.ja, p.ja + "の奥", "手前の" + p.ja]
    return _variant(rng, p.ja, common, tail)


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
    o = CLASSES[cls]
    common = (o.ja + "です", "一" + o.ja_counter + "の" + o.ja)
    tail = [COLOURS[colour].ja + "の" + o.ja, "大きな" + o.ja, "小さな" + o.ja, o.ja + "だと思う"]
    return _variant(rng, o.ja, common, tail)


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
        answer = (_colour_answer(rng, region.colour, n_colours) if qtype == "color"
                  else _position_answer(rng, region.position) if qtype == "position"
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
        answer = _prior_answer(rng, qtype)
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
