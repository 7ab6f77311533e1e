"""Loading the tokenizer of a model folder, and tokenising a batch of texts with it: below the models, the input
construction (`cvil.inputs`) and the preparation tools (the aligner), which all need them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cvil.data.errors import DataSetupError


def load_tokenizer(folder: str | Path):
    """An HF tokenizer folder, or a bare `vocab.txt` (as in Oscar checkpoints), lower-cased as the reference."""
    from transformers import AutoTokenizer, BertTokenizerFast

    folder = Path(folder)
    if not folder.exists():
        raise DataSetupError(f"tokenizer folder not found: {folder}")
    if (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(folder))
    if (folder / "vocab.txt").exists():
        # not BertTokenizerFast(vocab_file=...): transformers 5 ignores that argument and keeps only the specials
        return BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    raise DataSetupError(f"{folder} holds neither an HF tokenizer nor a vocab.txt")


def tokenize_batch(tokenizer, texts: Sequence[str]) -> list[tuple[list[str], list[int]]]:
    """(pieces, ids) of each text without special tokens, in one batched call of a fast tokenizer.

    Equal to `tokenizer.tokenize(text)` per text (checked in the tests); the batched call avoids the per-call
    overhead that dominates for short questions.
    """
    if not texts:
        return []
    enc = tokenizer(
        list(texts), add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
    )
    return [(enc.tokens(i), list(ids)) for i, ids in enumerate(enc["input_ids"])]
