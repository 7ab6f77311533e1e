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
