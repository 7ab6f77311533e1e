"""`model.train_pooler: false` keeps the tanh pooler at its initial weights (the synthetic teacher's setting)."""

from __future__ import annotations

import pytest
import torch

from cvil.config import KDConfig, StageConfig, TrainConfig, load_config
from cvil.models.config import oscar_config
from cvil.models.oscar import OscarVQA
from cvil.train.model_setup import set_trainable
from cvil.train.optim import build_optimizer
from cvil.world import TEACHER_CONFIG


def _model() -> OscarVQA:
    torch.manual_seed(0)
    return OscarVQA(oscar_config(img_feature_dim=8, num_labels=5, vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                                 initializer_range=0.1))


def _one_step(model: OscarVQA) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, 1e-2, TrainConfig(), torch.device("cpu"))
    ids = torch.randint(1, 30, (4, 6))
    out = model(ids, torch.zeros_like(ids), torch.ones(4, 9, dtype=torch.long), torch.randn(4, 3, 8),
                labels=torch.rand(4, 5))
    out.loss.backward()
    opt.step()
    return {n: (p.detach() - before[n]).abs().max() for n, p in model.named_parameters()}


@pytest.mark.parametrize("train_pooler", [True, False])
def test_pooler_moves_only_when_it_trains(train_pooler):
    model = _model()
    set_trainable(model, StageConfig(trainable="all", objective="task"), KDConfig(), train_pooler=train_pooler)
    moved = _one_step(model)
    pooler = [d for n, d in moved.items() if n.startswith("bert.pooler.")]
    assert len(pooler) == 2
    assert all(d > 0 for d in pooler) == train_pooler and all(d == 0 for d in pooler) != train_pooler
    assert moved["classifier.weight"] > 0 and moved["bert.img_embedding.weight"] > 0


def test_head_stage_is_unchanged_by_the_flag():
    model = _model()
    set_trainable(model, StageConfig(trainable="head"), KDConfig(), train_pooler=False)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


def test_the_synthetic_teacher_keeps_its_pooler_fixed():
    assert load_config(TEACHER_CONFIG, []).model.train_pooler is False
    assert load_config(None, []).model.train_pooler is True            # real runs train it, as OSCAR+ / mBERT do
