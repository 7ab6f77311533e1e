"""Embedding-based word alignment, to (re)build the `{lang}-en` fields that the reference received precomputed.

The paper aligned with awesome-align (Dou & Neubig 2021); the release ships no aligner. This module implements the
extraction step of awesome-align / SimAlign on top of any HF encoder (no fine-tuning):
1. each sentence is given as words; every word is WordPiece'd on its own, so each subword knows its word;
2. `[CLS] subwords [SEP]` go through the encoder, and the states of one layer (`hidden_states[layer]`, 0 = the
   embeddings; awesome-align's default is 8) are taken for the subwords;
3. a subword similarity matrix (target × English) is turned into links:
   - "argmax" (SimAlign's ArgMax): keep (i, j) iff j is i's best match and i is j's best match; cosine similarity;
   - "softmax" (awesome-align): keep (i, j) iff both the row-wise and the column-wise softmax exceed `threshold`
     (1e-3); dot-product similarity as awesome-align. (Cosine similarities lie in [-1, 1], where a softmax over a
     short sentence is nearly flat and almost every link would pass the threshold.)
4. a word pair is linked if any of their subwords are (awesome-align's rule).

The reference format has one entry per target word: `[tgt_word, en_word, en_idx]`, or `[tgt_word]` if unaligned.
When a target word is linked to several English words, the one with the highest word similarity (max over the
subword pairs) is written. `en_idx` indexes `cvil.data.text.english_words(en)`, as the code-mixer expects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cvil.data.tokenizers import tokenize_batch
from cvil.data.text import english_words, target_words

from cvil.data.prepare.encoder_folder import METHODS, check_encoder

DEFAULT_SIMILARITY = {"argmax": "cosine", "softmax": "dot"}

def extract_links(sim: torch.Tensor, method: str = "argmax", threshold: float = 1e-3) -> torch.Tensor:
    """Boolean `[S, T]` links from a subword similarity matrix (see the module docstring)."""
    if sim.numel() == 0:
        return torch.zeros(sim.shape, dtype=torch.bool)
    if method == "argmax":
        fwd = torch.zeros_like(sim, dtype=torch.bool)
        fwd[torch.arange(sim.shape[0]), sim.argmax(dim=1)] = True
        bwd = torch.zeros_like(sim, dtype=torch.bool)
        bwd[sim.argmax(dim=0), torch.arange(sim.shape[1])] = True
        return fwd & bwd
    if method == "softmax":
        return (sim.softmax(dim=1) > threshold) & (sim.softmax(dim=0) > threshold)
    raise ValueError(f"unknown extraction method {method!r}; expected one of {METHODS}")


def word_links(links: torch.Tensor, src_word_of: Sequence[int], tgt_word_of: Sequence[int]) -> set[tuple[int, int]]:
    """Subword links -> word links: words are linked if any of their subwords are."""
    return {(src_word_of[i], tgt_word_of[j]) for i, j in links.nonzero().tolist()}


def word_similarity(
    sim: torch.Tensor, src_word_of: Sequence[int], tgt_word_of: Sequence[int], n_src: int, n_tgt: int
) -> torch.Tensor:
    """`[n_src, n_tgt]` word similarity: the max over the words' subword pairs (-inf for words without subwords)."""
    rows = torch.full((n_src, sim.shape[1]), float("-inf"), dtype=sim.dtype)
    src = torch.tensor(list(src_word_of), dtype=torch.long)[:, None].expand_as(sim)
    rows = rows.scatter_reduce(0, src, sim, reduce="amax")
    out = torch.full((n_src, n_tgt), float("-inf"), dtype=sim.dtype)
    tgt = torch.tensor(list(tgt_word_of), dtype=torch.long)[None, :].expand_as(rows)
    return out.scatter_reduce(1, tgt, rows, reduce="amax")


def reference_entries(
    tgt_words: Sequence[str], en_words: Sequence[str], links: Iterable[tuple[int, int]], word_sim: torch.Tensor
) -> list[list]:
    """One `[tgt, en, en_idx]` / `[tgt]` entry per target word; the most similar linked English word wins."""
    best: dict[int, int] = {}
    for i, j in links:
        if i not in best or word_sim[i, j] > word_sim[i, best[i]]:
            best[i] = j
    return [[w, en_words[best[i]], best[i]] if i in best else [w] for i, w in enumerate(tgt_words)]


@dataclass(frozen=True)
class WordAlignment:
    """Word links `(tgt_idx, en_idx)` of one sentence pair and the word similarity matrix."""

    links: set[tuple[int, int]]
    word_sim: torch.Tensor

    def entries(self, tgt_words: Sequence[str], en_words: Sequence[str]) -> list[list]:
        return reference_entries(tgt_words, en_words, self.links, self.word_sim)


@dataclass(frozen=True)
class AlignmentScores:
    precision: float
    recall: float
    aer: float
    n_predicted: int
    n_gold: int


def alignment_scores(
    predicted: Iterable[Iterable[tuple[int, int]]], gold: Iterable[Iterable[tuple[int, int]]]
) -> AlignmentScores:
    """Corpus precision, recall and AER with sure = possible = gold: AER = 1 - 2|A∩G| / (|A| + |G|)."""
    n_pred = n_gold = hits = 0
    for p, g in zip(predicted, gold, strict=True):
        p, g = {tuple(x) for x in p}, {tuple(x) for x in g}
        n_pred, n_gold, hits = n_pred + len(p), n_gold + len(g), hits + len(p & g)
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_gold if n_gold else 0.0
    aer = 1.0 - 2 * hits / (n_pred + n_gold) if n_pred + n_gold else 0.0
    return AlignmentScores(precision, recall, aer, n_pred, n_gold)


class EmbeddingAligner:
    """Aligns target-language words to English words with the contextual embeddings of an HF encoder."""

    def __init__(
        self,
        model_dir: str,
        *,
        layer: int = 8,
        method: str = "argmax",
        threshold: float = 1e-3,
        similarity: str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer  # heavy import, only when an aligner is built

        check_encoder(model_dir, layer=layer, method=method, similarity=similarity)  # before the ~20 s load
        self.similarity = similarity or DEFAULT_SIMILARITY[method]
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(device).eval()
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= layer <= n_layers:
            raise ValueError(f"layer {layer} outside 0..{n_layers} (0 = embeddings) for the model in {model_dir}")
        self.layer, self.method, self.threshold = layer, method, threshold
        self.batch_size, self.device = batch_size, device
        self.max_subwords = getattr(self.model.config, "max_position_embeddings", 512) - 2

    def _subwords(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        """Ids and owning word of each subword; each word is tokenised on its own (as awesome-align does)."""
        ids, word_of = [], []
        for w, (_, piece_ids) in enumerate(tokenize_batch(self.tokenizer, list(words)) if words else []):
            ids += piece_ids
            word_of += [w] * len(piece_ids)
        return ids[: self.max_subwords], word_of[: self.max_subwords]

    @torch.no_grad()
    def _embed(self, id_lists: Sequence[list[int]]) -> list[torch.Tensor]:
        """The chosen layer's states of the subwords (without `[CLS]`/`[SEP]`) of each sentence."""
        out = []
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        for start in range(0, len(id_lists), self.batch_size):
            chunk = [[cls, *ids, sep] for ids in id_lists[start : start + self.batch_size]]
            width = max(len(c) for c in chunk)
            input_ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for b, c in enumerate(chunk):
                input_ids[b, : len(c)], mask[b, : len(c)] = torch.tensor(c), 1
            states = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                output_hidden_states=True).hidden_states[self.layer].float().cpu()
            out += [states[b, 1 : len(c) - 1] for b, c in enumerate(chunk)]
        return out

    def _similarity(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        if self.similarity == "cosine":
            src, tgt = torch.nn.functional.normalize(src, dim=-1), torch.nn.functional.normalize(tgt, dim=-1)
        return src @ tgt.T

    def align_many(self, pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[WordAlignment]:
        """Align `(target words, English words)` pairs; the encoder runs in batches over all sentences."""
        subwords = [self._subwords(words) for pair in pairs for words in pair]
        states = self._embed([ids for ids, _ in subwords])
        out = []
        for k, (tgt_words, en_words) in enumerate(pairs):
            (_, src_of), (_, tgt_of) = subwords[2 * k], subwords[2 * k + 1]
            sim = self._similarity(states[2 * k], states[2 * k + 1])
            links = word_links(extract_links(sim, self.method, self.threshold), src_of, tgt_of)
            out.append(WordAlignment(links, word_similarity(sim, src_of, tgt_of, len(tgt_words), len(en_words))))
        return out

    def align(self, tgt_words: Sequence[str], en_words: Sequence[str]) -> WordAlignment:
        return self.align_many([(tgt_words, en_words)])[0]


def _row_words(row: dict, lang: str, where: str) -> tuple[list[str], list[str]]:
    """(target words, English words) of a QLA row: an existing alignment field's words (so its indices, and gold
    pairs made against it, stay valid), else `target_words` (the language file's segmentation: fugashi for
    Japanese, as `cvil data add-language` writes them); English words are `english_words(en)`. The fields are the
    language file's (`question_field`, `alignment_field`: `{lang}`, `{lang}-en`)."""
    from cvil.data.errors import DataFormatError
    from cvil.languages import get_language

    if not isinstance(row, dict):
        raise DataFormatError(where, "row", "a JSON object", type(row).__name__)
    language = get_language(lang)
    if language.question_field not in row:
        raise DataFormatError(where, "fields", f"a {language.question_field!r} question field", f"keys {sorted(row)}")
    english = row.get("en", row.get("q"))
    if english is None:
        raise DataFormatError(where, "fields", "an English question ('en' or 'q')", f"keys {sorted(row)}")
    existing = row.get(language.alignment_field or f"{lang}-en")
    tgt = [str(e[0]) for e in existing] if existing else list(target_words(row[language.question_field], lang))
    return tgt, list(english_words(english))


def align_qla(*, qla: str | Path, lang: str, model: str, out: str | Path | None = None, method: str = "argmax",
              layer: int = 8, threshold: float = 1e-3, similarity: str | None = None, batch_size: int = 32,
              device: str = "cpu", gold: str | None = None) -> dict:
    """Write the `{lang}-en` field of every row of the QLA file `qla` with an `EmbeddingAligner` (to `out` when
    given; rows stay plain JSON, so every other field survives) and, with `gold` (a field of gold `[tgt_idx, en_idx]`
    pairs), score the links. Returns `{"rows": n, "gold": AlignmentScores | None, "gold_rows": n}`."""
    from cvil.errors import UsageError

    qla = Path(qla)
    from cvil.data.errors import DataFormatError
    from cvil.data.json_file import load_json

    from cvil.languages import get_language

    field = get_language(lang).alignment_field or f"{lang}-en"  # an unknown language: a did-you-mean error
    check_encoder(model, layer=layer, method=method, similarity=similarity)  # before reading anything big
    rows = load_json(qla, "a QLA JSON file")
    if not isinstance(rows, list):
        raise DataFormatError(qla, "top level", "a JSON list of question rows", type(rows).__name__)
    words = [_row_words(row, lang, f"{qla} row {i} (q_id {row.get('q_id')})") for i, row in enumerate(rows)]
    try:
        aligner = EmbeddingAligner(model, layer=layer, method=method, threshold=threshold, similarity=similarity,
                                   batch_size=batch_size, device=device)
    except ValueError as exc:  # a wrong --layer/--similarity
        raise UsageError(str(exc)) from None
    alignments = aligner.align_many(words)
    for row, (tgt, en), al in zip(rows, words, alignments):
        row[field] = al.entries(tgt, en)
    scores, scored = None, []
    if gold:
        scored = [(al.links, row[gold]) for row, al in zip(rows, alignments) if gold in row]
        scores = alignment_scores([p for p, _ in scored], [g for _, g in scored])
    if out:
        Path(out).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return {"rows": len(rows), "gold": scores, "gold_rows": len(scored)}
