"""Word segmenters by name, the ones a language file can declare (`cvil.languages`): NLTK's Treebank words for
English, fugashi + unidic-lite for Japanese. Ground level, so the language registry and the data layer share them.

The reference indexes its `{lang}-en` alignments into `nltk.word_tokenize(english_question)`. For one sentence that
is NLTK's improved Treebank word tokenizer after sentence splitting; the splitter needs the punkt data, which cannot
be downloaded here and is irrelevant for single-sentence questions. So we call the word tokenizer directly.
"""

from __future__ import annotations

from functools import lru_cache

from nltk.tokenize import NLTKWordTokenizer

_TOKENIZER = NLTKWordTokenizer()


@lru_cache(maxsize=65536)
def english_words(text: str) -> tuple[str, ...]:
    """The NLTK word tokens of one English question (what `en_idx` in an alignment entry indexes)."""
    return tuple(_TOKENIZER.tokenize(text))


@lru_cache(maxsize=1)
def _fugashi_tagger():
    import fugashi
    import unidic_lite

    return fugashi.Tagger(f'-d "{unidic_lite.DICDIR}"')


def japanese_words(text: str) -> tuple[str, ...]:
    """Japanese words: fugashi + unidic-lite surface forms (the tokenizer the paper names; the release's own
    segmentation of its `ja-en` fields is unknown). Whitespace is dropped, so `''.join(words)` is the sentence
    without spaces, which is how the code-mixer rebuilds a Japanese question from its alignment entries."""
    return tuple(w.surface for w in _fugashi_tagger()(text))
