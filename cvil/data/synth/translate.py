"""Japanese and Hindi (and any `lexicon.EXTRA_LEXICONS` language) renderings of the English questions, with word
alignments.

The renderings come from the segmented templates of `lexicon.py`, so the word segmentation and the gold alignment
are known exactly. Two alignment fields are written per language:

- `gold-ja-en` / `gold-hi-en`: the true alignment, a list of `[tgt_word_idx, en_word_idx]` pairs (indices into the
  target words of `ja-en` and into `cvil.data.text.english_words(en)`), for scoring an aligner;
- `ja-en` / `hi-en`: the reference format (one entry per target word, `[tgt_word, en_word, en_idx]` or
  `[tgt_word]` when unaligned), standing in for awesome-align output. It equals the gold alignment except for
  deliberate aligner-like noise: each aligned word is dropped (left unaligned) with probability `align_drop` and
  moved to a neighbouring English word with probability `align_shift`. In a share `string_idx_frac` of rows every
  `en_idx` is stored as a string (the reference reads it with `int()`), so readers must accept both.

A language added after Japanese and Hindi (`translate_extra`) is rendered the same way from its `ExtraLexicon`, its
segments split by its language file's segmentation, with its own random generator, so the Japanese and Hindi fields
and their draws are those of a world without it.
"""

from __future__ import annotations

import numpy as np

from cvil.data.synth.lexicon import CLASSES, COLOURS, EXTRA_LEXICONS, HI, JA, ExtraLexicon
from cvil.data.synth.questions import Question
from cvil.data.text import english_words


def _slots(q: Question, lang: str) -> dict[str, list[str]]:
    """Slot -> list of target words; "{...}" English alignment targets are filled separately."""
    o = CLASSES[q.cls] if q.cls is not None else None
    col = COLOURS[q.colour] if q.colour is not None else None
    if lang == JA:
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
    """(sentence, target words, gold [tgt_idx, en_idx] pairs) of `q` in `lang` (JA or HI)."""
    template = q.template.ja if lang == JA else q.template.hi
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
    sentence = "".join(words) if lang == JA else " ".join(words).replace(" ?", "?")
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
    for lang in (JA, HI):
        sentence, words, gold = render(q, lang)
        fields[lang] = sentence
        fields[f"{lang}-en"] = noisy_alignment(rng, words, gold, en_words, preset, as_string)
        gold_fields[f"gold-{lang}-en"] = gold
    return {JA: fields[JA], HI: fields[HI], f"{JA}-en": fields[f"{JA}-en"], f"{HI}-en": fields[f"{HI}-en"],
            **gold_fields}


def render_extra(q: Question, lex: ExtraLexicon) -> tuple[str, list[str], list[list[int]]]:
    """`render` for a language of `EXTRA_LEXICONS`: its template's segments, each split by the language file's
    segmentation and every piece aligned to the segment's English word; the sentence is the pieces joined by the
    file's code-mix joiner (which gives the pieces back under the same segmentation)."""
    from cvil.languages import get_language

    language = get_language(lex.code)
    o = CLASSES[q.cls] if q.cls is not None else None
    col = COLOURS[q.colour] if q.colour is not None else None
    targets = {"{c}": o.en if o else None, "{cs}": o.en_plural if o else None, "{col}": col.en if col else None}
    slots = {"{C}": lex.classes[o.en] if o else None, "{CTR}": lex.counters[o.en] if o else None,
             "{COL}": lex.colours[col.en] if col else None}
    en_words = english_words(q.en)
    try:
        template = lex.templates[q.template.en]
    except KeyError:
        raise KeyError(f"the {lex.code} lexicon has no template for {q.template.en!r}") from None
    words: list[str] = []
    gold: list[list[int]] = []
    for segment, target in template:
        pieces = lex.positions[q.pos.en] if segment == "{POS}" else ((slots.get(segment, segment), target),)
        for word, en_target in pieces:
            en_word = targets.get(en_target, en_target)
            if en_word is not None and en_word not in en_words:
                raise ValueError(f"{lex.code} template bug: {en_word!r} not in {en_words} ({q.en!r})")
            for piece in language.words(word):
                if en_word is not None:
                    gold.append([len(words), en_words.index(en_word)])
                words.append(piece)
    sentence = language.codemix_joiner.join(words)
    if list(language.words(sentence)) != words:
        raise ValueError(f"{lex.code}: {sentence!r} does not segment back into {words} ({language.segmentation})")
    return sentence, words, gold


def translate_extra(rng: np.random.Generator, q: Question, preset, code: str) -> dict:
    """The `{code}`, `{code}-en` and `gold-{code}-en` fields of one VQA row in an `EXTRA_LEXICONS` language, drawn
    from `rng` (the language's own stream)."""
    from cvil.languages import get_language

    language = get_language(code)
    en_words = english_words(q.en)
    as_string = bool(rng.random() < preset.string_idx_frac)
    sentence, words, gold = render_extra(q, EXTRA_LEXICONS[code])
    return {language.question_field: sentence,
            language.alignment_field or f"{code}-en": noisy_alignment(rng, words, gold, en_words, preset, as_string),
            f"gold-{code}-en": gold}
