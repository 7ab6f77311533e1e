"""A stand-in for mBERT on the synthetic world: a small multilingual BERT folder in the ordinary HF format.

The real student starts from `bert-base-multilingual-uncased`; here nothing can be downloaded, so the embedded
default builds a randomly initialised (seeded) BERT of the teacher's shape over the synthetic student tokenizer,
saved with `save_pretrained` so that it loads through exactly the path a real mBERT folder takes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch


def make_student_init(out: str | Path, tokenizer_dir: str | Path, *, seed: int = 0, **bert_fields) -> Path:
    from transformers import BertConfig, BertModel

    from cvil.data.tokenizers import load_tokenizer

    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    vocab_size = len(load_tokenizer(tokenizer_dir))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=vocab_size, **bert_fields), add_pooling_layer=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for item in tokenizer_dir.iterdir():  # the student folder carries its tokenizer, like a hub model folder
        if item.is_file():
            shutil.copy2(item, out / item.name)
    return out
