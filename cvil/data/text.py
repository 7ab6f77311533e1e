"""Word-level tokenisation shared by the synthetic world, the code-mixer and the aligner: English words (what
`en_idx` indexes), Japanese words, and the words of any language as its language file declares (`cvil.languages`;
the segmenters themselves live in `cvil.languages.segmenters`)."""

from __future__ import annotations

from cvil.languages import get_language
from cvil.languages.segmenters import english_words, japanese_words  # noqa: F401 (this module's public words)


def target_words(text: str, lang: str) -> tuple[str, ...]:
    """The words of a question in `lang` as its `{lang}-en` entries list them: the segmentation its language file
    declares (`cvil.languages`: nltk for en, fugashi for ja, whitespace for hi, char for zh, ...). An unknown
    language is an error naming the closest known ones."""
    return get_language(lang).words(text)
