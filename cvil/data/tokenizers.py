"""Loading the tokenizer of a model folder: below the models and the training code, which both need it."""

from __future__ import annotations

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
