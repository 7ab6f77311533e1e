"""Japanese and Hindi renderings of the English questions, with word alignments.

The renderings come from the segmented templates of `lexicon.py`, so the word segmentation and the gold alignment
are known exactly. Two alignment fields are written per language:

- `gold-ja-en` / `gold-hi-en`: the true alignment, a list of `[tgt_word_idx, en_word_idx]` pairs (indices into the
  target words of `ja-en` and into `cvil.data.text.english_words(en)`), for scoring an aligner;
- `ja-en` / `hi-en`: the reference format (one entry per target word, `[tgt_word, en_word, en_idx]` or
  `[tgt_word]` when unaligned), standing in for awesome-align output. It equals the gold alignment except for
  deliberate aligner-like noise: each aligned word is dropped (left unaligned) with probability `align_drop` and
  moved to a neighbouring English word with probability `align_shift`. In a share `string_idx_frac` of rows every
  `en_idx` is stored as a string (the reference reads it with `int()`), so readers must accept both.
"""

from __future__ import annotations

import numpy as np

from cvil.data.synth.lexicon import CLASSES, COLOURS
from cvil.data.synth.questions import Question
from cvil.data.text import english_words


def _slots(q: Question, lang: str) -> dict[str, list[str]]:
    """Slot -> list of target words; "{...}" English alignment targets are filled separately."""
    o = CLASSES[q.cls] if q.cls is not None else None
    col = COLOURS[q.colour] if q.colour is not None else None
    if lang == "ja":
        return {
            "{C}": [o.ja] if o else [], "{CTR}": [o.ja_counter] if o else [],
            "{ARU}": [("い" if o.animate else "あり")] if o else [],
            "{COLJ}": [col.ja] if col else [], "{POSJ}": [q.pos.ja] if q.pos else [],
        }
    fem = bool(o and o.hi_gender == "f")
    return {
        "{C}": [o.hi] if o else [], "{CS}": [o.hi_plural] if o else [],
        "{KA}": ["की" if fem else "का"], "{KITNE}": ["कितनी" if fem else "कितने"],
        "{COLH}": [(col.hi_f if fem else col.hi_m)] if col else [], "{POSH}": list(q.pos.hi) if q.pos else [],
    }


def _en_targets(q: Question, target: str | None, n_words: int) -> list[str | None]:
    """The English word each of the `n_words` target words of one template segment aligns to."""
    if target is None:
        return [None] * n_words
    o = CLASSES[q.cls] if q.cls is not None else None
    if target == "{c}":
        return [o.en] * n_words
    if target == "{cs}":
        return [o.en_plural] * n_words
    if target == "{col}":
        return [COLOURS[q.colour].en] * n_words
    if target == "{pos}":
        en = q.pos.en.split()
        if n_words == 1:                        # Japanese 左上 -> "left" (the head of "top left")
            return [en[-1]]
        return [en[i] if i < len(en) else None for i in range(n_words)]   # ऊपर बाएँ -> top left; बीच में -> middle
    return [target] * n_words


def render(q: Question, lang: str) -> tuple[str, list[str], list[list[int]]]:
    """(sentence, target words, gold [tgt_idx, en_idx] pairs) of `q` in `lang` ("ja" or "hi")."""
    template = q.template.ja if lang == "ja" else q.template.hi
    slots = _slots(q, lang)
    en_words = english_words(q.en)
    words: list[str] = []
    gold: list[list[int]] = []
    for segment, target in template:
        seg_words = slots[segment] if segment in slots else [segment]
        for word, en_word in zip(seg_words, _en_targets(q, target, len(seg_words))):
            if en_word is not None:
                if en_word not in en_words:
                    raise ValueError(f"template bug: {en_word!r} not in {en_words} ({q.en!r})")
                gold.append([len(words), en_words.index(en_word)])
            words.append(word)
    sentence = "".join(words) if lang == "ja" else " ".join(words).replace(" ?", "?")
    return sentence, words, gold


def noisy_alignment(rng: np.random.Generator, words: list[str], gold: list[list[int]], en_words: tuple,
                    preset, as_string: bool) -> list[list]:
    """The reference-format alignment: gold with aligner-like drops and shifts (see the module docstring)."""
    by_tgt = {t: e for t, e in gold}
    out: list[list] = []
    for i, w in enumerate(words):
        r = rng.random()
        if i not in by_tgt or r < preset.align_drop:
            out.append([w])
            continue
        e = by_tgt[i]
        if r < preset.align_drop + preset.align_shift:
            e = e + 1 if e + 1 < len(en_words) and (e == 0 or rng.random() < 0.5) else e - 1
        out.append([w, en_words[e], str(e) if as_string else e])
    return out


def translate_row(rng: np.random.Generator, q: Question, preset) -> dict:
    """The `ja`, `hi`, alignment and gold-alignment fields of one VQA row."""
    en_words = english_words(q.en)
    as_string = bool(rng.random() < preset.string_idx_frac)
    fields: dict = {}
    gold_fields: dict = {}
    for lang in ("ja", "hi"):
        sentence, words, gold = render(q, lang)
        fields[lang] = sentence
        fields[f"{lang}-en"] = noisy_alignment(rng, words, gold, en_words, preset, as_string)
        gold_fields[f"gold-{lang}-en"] = gold
    return {"ja": fields["ja"], "hi": fields["hi"], "ja-en": fields["ja-en"], "hi-en": fields["hi-en"],
            **gold_fields}
