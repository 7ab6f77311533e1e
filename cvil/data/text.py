"""Word-level English tokenisation shared by the synthetic world, the code-mixer and the aligner.

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


def target_words(text: str, lang: str) -> tuple[str, ...]:
    """The words of a question in `lang` as its `{lang}-en` entries list them: NLTK for en, fugashi for ja,
    whitespace for the others (hi)."""
    if lang == "en":
        return english_words(text)
    if lang == "ja":
        return japanese_words(text)
    return tuple(text.split())
