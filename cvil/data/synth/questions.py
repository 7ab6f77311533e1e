"""English VQA v2-like questions, noisy annotators and the VQA soft scores.

Each question is built from a template of `lexicon.VQA_TEMPLATES` about one scene; its canonical answer is read off
the scene (colour and position of the single region of a class, existence, counts, ...). Ten annotators answer
each question: with a per-question agreement `p ~ U(agree_range)` an annotator gives the canonical answer
(sometimes in a raw surface form that the official normalisation maps back: "Red.", "two", "a cat", "Yes"),
otherwise a synonym ("up" for "top"), a plausible mistake (a neighbouring cell, another colour, count ± 1) or a
"don't know" answer. Scores follow the official VQA accuracy: the average over the 10 leave-one-out subsets of
min(#matches / 3, 1), which is exactly BUTD's 0 / 0.3 / 0.6 / 0.9 / 1.0 for 0 / 1 / 2 / 3 / ≥4 matches.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from cvil.data.synth.lexicon import (CLASSES, COLOURS, JUNK_ANSWERS, NUMBER_WORDS, POSITION_BY_CELL, POSITIONS,
                                     SYNONYMS, Position, Template, templates_of)
from cvil.data.synth.scenes import SIZES, Scene

N_ANNOTATORS = 10


@dataclass(frozen=True)
class Question:
    qtype: str
    template: Template
    cls: int | None
    colour: int | None          # the colour asked about ("is the cat red?")
    pos: Position | None        # the position asked about ("what is in the top left ...?")
    answer: str                 # canonical, normalised English answer

    @property
    def en(self) -> str:
        o = CLASSES[self.cls] if self.cls is not None else None
        return self.template.en.format(
            a="an" if o and o.en[0] in "aeiou" else "a", c=o.en if o else "", cs=o.en_plural if o else "",
            col=COLOURS[self.colour].en if self.colour is not None else "",
            pos=self.pos.en if self.pos else "")


# --------------------------------------------------------------------------------------------- normalisation
_PUNCT = re.compile(r"[.,!?;:\"']")
_ARTICLES = {"a", "an", "the"}
_NUM = {w: str(i) for i, w in enumerate(NUMBER_WORDS)}


def normalize_answer(raw: str) -> str:
    """The part of the official VQA answer normalisation that the generator's raw strings need: lower case,
    punctuation removed, number words to digits, articles dropped, whitespace collapsed."""
    words = _PUNCT.sub("", raw.lower()).split()
    return " ".join(_NUM.get(w, w) for w in words if w not in _ARTICLES)


def vqa_score(n_match: int) -> float:
    """Official VQA accuracy of an answer given by `n_match` of 10 annotators (10-choose-9 average)."""
    total = Fraction(0)
    for left_out_matches in (True, False):
        k = n_match if left_out_matches else N_ANNOTATORS - n_match
        m = n_match - 1 if left_out_matches else n_match
        total += k * min(Fraction(max(m, 0), 3), Fraction(1))
    return float(total / N_ANNOTATORS)


def soft_scores(normalised: list[str]) -> dict[str, float]:
    """answer -> VQA score for every distinct normalised annotator answer."""
    return {a: vqa_score(n) for a, n in sorted(Counter(normalised).items())}


def majority(normalised: list[str]) -> str:
    counts = Counter(normalised)
    return min(counts, key=lambda a: (-counts[a], a))


# --------------------------------------------------------------------------------------------- question making
def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(0, len(items)))]


def make_question(rng: np.random.Generator, scene: Scene, qtype: str, n_classes: int, n_colours: int):
    """One question of `qtype` about `scene`, or None when the scene cannot support it."""
    template = _choice(rng, templates_of(qtype))
    if qtype in ("color", "position", "is_color", "size"):
        uniq = scene.unique_classes()
        if not uniq:
            return None
        cls = int(_choice(rng, uniq))
        region = scene.region_of(cls)
        if qtype == "color":
            return Question(qtype, template, cls, None, None, COLOURS[region.colour].en)
        if qtype == "position":
            return Question(qtype, template, cls, None, None, region.position)
        if qtype == "size":
            return Question(qtype, template, cls, None, None, SIZES[region.size])
        if rng.random() < 0.5:
            return Question(qtype, template, cls, region.colour, None, "yes")
        other = [c for c in range(n_colours) if c != region.colour]
        return Question(qtype, template, cls, int(_choice(rng, other)), None, "no")
    present = sorted({r.cls for r in scene.regions})
    absent = [c for c in range(n_classes) if c not in present]
    if qtype == "exist":
        if rng.random() < 0.5 or not absent:
            return Question(qtype, template, int(_choice(rng, present)), None, None, "yes")
        return Question(qtype, template, int(_choice(rng, absent)), None, None, "no")
    if qtype == "count":
        cls = int(_choice(rng, absent)) if absent and rng.random() < 0.15 else int(_choice(rng, present))
        return Question(qtype, template, cls, None, None, str(scene.count(cls)))
    if qtype == "what_at":
        lone = scene.lone_regions_by_cell()
        if not lone:
            return None
        cell = _choice(rng, list(lone))
        return Question(qtype, template, None, None, POSITION_BY_CELL[cell], CLASSES[lone[cell].cls].en)
    raise KeyError(f"unknown question type {qtype!r}")


def make_questions(rng: np.random.Generator, scene: Scene, preset, n: int, mix: dict | None = None) -> list[Question]:
    """`n` distinct questions about `scene`, their types drawn from `mix` (the preset's `vqa_mix` by default)."""
    mix = preset.vqa_mix if mix is None else mix
    types = list(mix)
    w = np.array([mix[t] for t in types], dtype=float)
    w /= w.sum()
    out: list[Question] = []
    seen: set[str] = set()
    for _ in range(n):
        for _attempt in range(20):
            q = make_question(rng, scene, types[int(rng.choice(len(types), p=w))], preset.n_classes,
                              preset.n_colours)
            if q is not None and q.en not in seen:
                seen.add(q.en)
                out.append(q)
                break
    return out


# --------------------------------------------------------------------------------------------- annotators
def _surface(rng: np.random.Generator, q: Question, answer: str) -> str:
    """A raw string that normalises back to `answer` (what real annotators type)."""
    r = rng.random()
    if answer.isdigit() and r < 0.5:
        return NUMBER_WORDS[int(answer)] if int(answer) < len(NUMBER_WORDS) else answer
    if q.qtype == "what_at" and r < 0.5:
        return ("a " if r < 0.3 else "the ") + answer
    if r < 0.4:
        return answer.capitalize()
    if r < 0.7:
        return answer + "."
    return answer.capitalize() + "."


def _mistake(rng: np.random.Generator, q: Question, n_classes: int, n_colours: int) -> str:
    a = q.answer
    if q.qtype == "color":
        return _choice(rng, [c.en for i, c in enumerate(COLOURS[:n_colours]) if c.en != a])
    if q.qtype == "position":
        p = next(p for p in POSITIONS if p.en == a)
        near = [x.en for x in POSITIONS if abs(x.row - p.row) + abs(x.col - p.col) == 1]
        return _choice(rng, near)
    if q.qtype == "size":
        return _choice(rng, [s for s in SIZES if s != a])
    if a in ("yes", "no"):
        return "no" if a == "yes" else "yes"
    if a.isdigit():
        n = int(a)
        return str(n + 1) if n == 0 or rng.random() < 0.5 else str(n - 1)
    return _choice(rng, [c.en for c in CLASSES[:n_classes] if c.en != a])


def annotate(rng: np.random.Generator, q: Question, preset) -> list[str]:
    """Ten raw annotator answers to `q`."""
    p = rng.uniform(*preset.agree_range)
    out = []
    for _ in range(N_ANNOTATORS):
        r = rng.random()
        if r < p:
            out.append(_surface(rng, q, q.answer) if rng.random() < 0.15 else q.answer)
            continue
        r = rng.random()
        if r < 0.35 and q.answer in SYNONYMS:
            out.append(_choice(rng, SYNONYMS[q.answer]))
        elif r < 0.4 and q.answer in ("left", "right"):
            out.append("on the " + q.answer)
        elif r < 0.88:
            out.append(_mistake(rng, q, preset.n_classes, preset.n_colours))
        else:
            out.append(_choice(rng, JUNK_ANSWERS))
    return out
