"""Japanese question types by question word (Table I(b) of the paper), as a configurable substring map.

The paper says only "we identify the question type by checking the presence of each question word". The rules chosen
here (the paper is silent on all of them):

1. **Substring presence, not tokens.** fugashi/UniDic keeps 何色, 何人, 何時 as single tokens, so token matching would
   miss 何 in them; the paper speaks of the *presence* of the word. Questions are NFKC-normalised first.
2. **Multi-label.** A question belongs to every type whose word is present (何 and いくつ in one question count for
   both nani and ikutsu). Per-type accuracies are therefore not a partition of the test set and do not average to the
   overall accuracy. Questions with no question word get the type ``other`` (reported, not in Table I(b)).
3. **Masking of longer words.** Before a type's words are searched, that type's ``exclude`` strings are removed from
   the question. Defaults: どう (dou) excludes どうして (which is naze, "why"), and the common nouns ぶどう (grape),
   どうぶつ (animal), どうろ (road), which contain どう but are not the question word. いつ (itsu) excludes いつも
   ("always"). The reverse overlap does not need a rule: どうして is only naze.
4. **Compounds of 何 stay nani.** 何人 (how many people), 何色 (what colour), 何時 (what time), 何歳 (how old) count as
   nani because 何 is present; they are not moved to ikutsu or itsu. A question like 何時ですか is therefore nani only.
5. Colloquial forms: なんで ("why", hiragana) is naze, not nani (nani masks it), except in なんです/なんでしょう
   ("what is it", nani) and なんでも ("anything", no question word); ``exclude`` entries are regular expressions; the kanji 何で stays nani, as it also reads なにで, "with what". どのように ("in what way") is dou; the
   adjectival どのような ("what kind of") is not matched by it.
6. どれくらい/どのくらい/どれぐらい/どのぐらい are dorekurai; they contain no other type's word, and neither do
   どこ, どんな, いくつ (いくつ does not contain いつ).
7. **Kanji spellings of other types.** 何故 (なぜ, "why") is naze and 何処 (どこ, "where") is doko; nani masks both,
   so they are not nani as well. Rule 4 is unchanged: 何時, 何人, 何色 stay nani.
8. **いつ and どう only as whole words.** These two kana words occur inside many other words (しょくどう "dining
   hall", すいどう, ほどう, てつどう; あいつ/こいつ/そいつ/どいつ "that guy"), so they are masked when the
   character before them is a hiragana other than a particle that can precede a question word (``_PARTICLES``:
   は が を に で も と て へ や の ら ば; e.g. 天気はどう, 写真がいつ, したらどう), or than the い of いったい ("on
   earth"). A question word at the start, or after kanji, katakana or punctuation, counts. This also masks
   かどうか ("whether"). いつ further excludes いつつ ("five") unless つ starts a verb (いつつくられ "when was it
   made": いつ + つく, kept). The rule is a character heuristic, not a tokenisation: kanji + okurigana + つく
   (追いつく, 思いつく) still contains いつ and counts as itsu.

Everything is data: the words and masks above live in the Japanese language file (`cvil/languages/ja.yaml`,
`question_types`), the rules in this module; another language declares its own (`question_words(lang)`), and
:func:`classify` takes any map.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cvil.languages import JVG_LANGUAGE

OTHER = "other"
JOIN = "|"  # separator when several types are stored in one CSV cell


@dataclass(frozen=True)
class QuestionWord:
    """A question type: the words that mark it and the longer strings masked before searching for them."""

    words: tuple[str, ...]
    exclude: tuple[str, ...] = field(default=())


#: the language whose question types `classify` uses when given none: Table I(b) is the breakdown of the JVG set
TABLE_1B_LANGUAGE = JVG_LANGUAGE


def question_words(lang: str) -> dict[str, QuestionWord]:
    """The question types a language file declares (`question_types`), in its order; {} when it declares none."""
    from cvil.languages import get_language

    return dict(_question_words(get_language(lang).question_types))


@lru_cache(maxsize=32)
def _question_words(types: tuple) -> tuple[tuple[str, QuestionWord], ...]:
    return tuple((t.name, QuestionWord(t.words, t.exclude)) for t in types)


def _mask(text: str, exclude: Sequence[str]) -> str:
    # Longest first, so that a shorter exclusion cannot break a longer one apart. Entries are regular expressions
    # (plain words match themselves).
    for ex in sorted(exclude, key=len, reverse=True):
        text = re.sub(ex, lambda m: "\u3000" * len(m.group(0)), text)
    return text


def classify(question: str, types: Mapping[str, QuestionWord] | None = None) -> tuple[str, ...]:
    """All types whose word is present in ``question`` (in map order), or ``("other",)``."""
    types = question_words(TABLE_1B_LANGUAGE) if types is None else types
    text = unicodedata.normalize("NFKC", question)
    found = tuple(
        name for name, qw in types.items() if any(w in _mask(text, qw.exclude) for w in qw.words)
    )
    return found or (OTHER,)


def encode(types: Sequence[str]) -> str:
    """Types of one question as one CSV cell (``"nani|ikutsu"``)."""
    return JOIN.join(types)


def decode(cell: str) -> tuple[str, ...]:
    """Inverse of :func:`encode`."""
    return tuple(t for t in cell.split(JOIN) if t)
