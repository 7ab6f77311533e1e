"""Corpus BLEU between predicted and ground-truth Japanese answer strings, with a signature that says how.

The paper: "we use fugashi tokenizer and NLTK library similar to [UC2]"; the scoring script is not released. Default
(our choice, documented in the reference notes §5.4): fugashi with unidic-lite, surface forms, then
``nltk.translate.bleu_score.corpus_bleu`` with uniform 4-gram weights and no smoothing. Alternatives go through
sacrebleu (``ja-mecab`` = MeCab + IPAdic, or ``char``), whose own defaults (``smooth:exp``) apply.

Why a signature: the tokenisers segment differently and NLTK and sacrebleu smooth differently, so a BLEU number is
meaningless without them (reference anchors §2(f)). Every :class:`BleuResult` carries tokeniser, backend, weights,
smoothing and library versions.

Pitfall kept visible: answers are mostly one or two tokens, so a corpus can have few or no 4-grams; without smoothing
NLTK then returns ~0 even for a perfect system (and warns). That is BLEU's definition, not a bug here; use
``smoothing`` or other ``weights`` deliberately and the signature records it. Never BLEU single answers.

Scale: ``score`` is 0-100 for every backend (NLTK's 0-1 value is multiplied by 100; ``raw`` keeps the library value).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

TOKENIZERS = ("fugashi", "ja-mecab", "char")
DEFAULT_WEIGHTS = (0.25, 0.25, 0.25, 0.25)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


@lru_cache(maxsize=1)
def _fugashi_tagger() -> Any:
    """A fugashi tagger pinned to unidic-lite (not whatever UniDic happens to be installed)."""
    import fugashi
    import unidic_lite

    return fugashi.Tagger(f'-d "{unidic_lite.DICDIR}"')


def fugashi_tokens(text: str) -> list[str]:
    """Surface forms of ``text`` from fugashi + unidic-lite."""
    return [w.surface for w in _fugashi_tagger()(text)]


@dataclass(frozen=True)
class BleuSignature:
    """How a BLEU number was made."""

    tokenizer: str
    backend: str
    weights: tuple[float, ...]
    smoothing: str
    versions: dict[str, str] = field(default_factory=dict)
    library_signature: str = ""

    def format(self) -> str:
        """One line, e.g. ``tok:fugashi+unidic-lite|backend:nltk.corpus_bleu|w:0.25,0.25,0.25,0.25|smooth:none|...``."""
        versions = ",".join(f"{k}={v}" for k, v in sorted(self.versions.items()))
        parts = [
            f"tok:{self.tokenizer}",
            f"backend:{self.backend}",
            "w:" + ",".join(f"{w:g}" for w in self.weights),
            f"smooth:{self.smoothing}",
            f"versions:{versions}",
        ]
        if self.library_signature:
            parts.append(f"lib:{self.library_signature}")
        return "|".join(parts)


@dataclass(frozen=True)
class BleuResult:
    """``score`` in 0-100; ``raw`` in the backend's own scale."""

    score: float
    raw: float
    n_segments: int
    signature: BleuSignature

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signature"]["weights"] = list(self.signature.weights)
        d["signature_str"] = self.signature.format()
        return d


def nltk_corpus_bleu_tokens(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    *,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    smoothing: Callable[..., Any] | None = None,
) -> float:
    """NLTK corpus BLEU (0-1) of pre-tokenised hypotheses against one reference each."""
    from nltk.translate.bleu_score import corpus_bleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU of an empty corpus is undefined")
    with warnings.catch_warnings():
        # NLTK warns on zero n-gram counts; the pitfall is documented in the module docstring.
        warnings.simplefilter("ignore", UserWarning)
        return float(
            corpus_bleu(
                [[list(r)] for r in references],
                [list(h) for h in hypotheses],
                weights=tuple(weights),
                smoothing_function=smoothing,
            )
        )


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    tokenizer: str = "fugashi",
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    smoothing: Callable[..., Any] | None = None,
    smoothing_name: str | None = None,
) -> BleuResult:
    """Corpus BLEU of predicted vs ground-truth answer strings (one reference per segment).

    ``tokenizer="fugashi"`` uses NLTK (``weights`` and ``smoothing`` apply; pass ``smoothing_name`` to label a custom
    smoothing function in the signature). ``"ja-mecab"`` and ``"char"`` use sacrebleu with its defaults; ``weights``
    must then stay uniform 4-gram.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown BLEU tokenizer {tokenizer!r}; expected one of {', '.join(TOKENIZERS)}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU of an empty corpus is undefined")
    if tokenizer == "fugashi":
        raw = nltk_corpus_bleu_tokens(
            [fugashi_tokens(h) for h in hypotheses],
            [fugashi_tokens(r) for r in references],
            weights=weights,
            smoothing=smoothing,
        )
        smooth = "none" if smoothing is None else (smoothing_name or getattr(smoothing, "__name__", "custom"))
        sig = BleuSignature(
            tokenizer="fugashi+unidic-lite",
            backend="nltk.corpus_bleu",
            weights=tuple(float(w) for w in weights),
            smoothing=smooth,
            versions={k: _version(k) for k in ("nltk", "fugashi", "unidic-lite")},
        )
        return BleuResult(100.0 * raw, raw, len(hypotheses), sig)
    if tuple(weights) != DEFAULT_WEIGHTS or smoothing is not None:
        raise ValueError("weights/smoothing are NLTK options; sacrebleu tokenizers use sacrebleu's defaults")
    import sacrebleu

    metric = sacrebleu.BLEU(tokenize=tokenizer)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    versions = {"sacrebleu": _version("sacrebleu")}
    if tokenizer == "ja-mecab":
        versions |= {"mecab-python3": _version("mecab-python3"), "ipadic": _version("ipadic")}
    sig = BleuSignature(
        tokenizer=tokenizer,
        backend="sacrebleu.BLEU",
        weights=DEFAULT_WEIGHTS,
        smoothing=metric.smooth_method,
        versions=versions,
        library_signature=str(metric.get_signature()),
    )
    return BleuResult(float(result.score), float(result.score), len(hypotheses), sig)
