"""Tiny OSCAR models and batches for the model tests (hidden 32, 2 layers: fast on a shared 2-core CPU)."""

from __future__ import annotations

import pytest
import torch

from cvil.models import OscarVQA, oscar_config

VOCAB, HIDDEN, IMG_DIM, LABELS, REGIONS = 60, 32, 10, 5, 4


def tiny_config(**overrides):
    fields = dict(
        img_feature_dim=IMG_DIM,
        num_labels=LABELS,
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    fields.update(overrides)
    return oscar_config(**fields)


def tiny_model(seed: int = 0, **overrides) -> OscarVQA:
    torch.manual_seed(seed)
    return OscarVQA(tiny_config(**overrides))


def make_batch(text_lens=(5, 9, 3), n_regions=(4, 2, 3), pad_to=None, seed=0):
    """Batch in the collate layout: text `[CLS] ... [SEP]` padded to the longest (or `pad_to`), regions always full.

    Token ids and region features depend only on the example, not on the padding, so two paddings can be compared.
    """
    gen = torch.Generator().manual_seed(seed)
    T = pad_to or max(text_lens)
    B = len(text_lens)
    input_ids = torch.zeros(B, T, dtype=torch.long)
    token_type_ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T + REGIONS, dtype=torch.long)
    img = torch.zeros(B, REGIONS, IMG_DIM)
    for b, (n, r) in enumerate(zip(text_lens, n_regions)):
        input_ids[b, :n] = torch.randint(2, VOCAB, (n,), generator=gen)
        token_type_ids[b, n // 2 : n] = 1  # the tags segment
        mask[b, :n] = 1
        mask[b, T : T + r] = 1
        img[b, :r] = torch.randn(r, IMG_DIM, generator=gen)
    labels = torch.rand(B, LABELS, generator=gen) * (torch.rand(B, LABELS, generator=gen) > 0.5)
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask, img_feats=img, labels=labels)


@pytest.fixture
def batch():
    return make_batch()


@pytest.fixture
def make_model():
    """Factory fixture: `make_model(seed=0, **config_overrides) -> OscarVQA` (tests cannot import conftest)."""
    return tiny_model


@pytest.fixture
def batch_factory():
    """Factory fixture: `batch_factory(text_lens, n_regions, pad_to=None, seed=0) -> dict`."""
    return make_batch


@pytest.fixture
def sizes():
    return dict(vocab=VOCAB, hidden=HIDDEN, img_dim=IMG_DIM, labels=LABELS, regions=REGIONS)
