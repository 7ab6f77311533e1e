"""`train.loss`: bce (the release's BCE-with-logits x num_labels, the default) or ce (softmax cross-entropy against the
soft scores normalised per example, the paper's text)."""

from __future__ import annotations

import math

import pytest
import torch

from cvil.config import ConfigError, KDConfig, StageConfig, load_config
from cvil.models.oscar import instance_bce_with_logits, soft_cross_entropy
from cvil.train.objective import build_objective


def _plain_ce(logits, labels):
    """Row by row with plain loops: -Σ (s_c / Σ s) log softmax_c, 0 for an all-zero row; mean over rows."""
    total = 0.0
    for row, scores in zip(logits.tolist(), labels.tolist()):
        mass = sum(scores)
        if mass == 0:
            continue
        log_z = math.log(sum(math.exp(v) for v in row))
        total += -sum(s / mass * (v - log_z) for v, s in zip(row, scores))
    return total / len(logits)


def test_ce_is_cross_entropy_against_the_normalised_soft_scores():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.3, 0.3, -2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    labels = torch.tensor([[1.0, 0.0, 0.3, 0.0], [0.0, 1.0, 1.0, 0.6], [0.0, 0.0, 0.0, 0.0]])  # last row: no answer
    got = soft_cross_entropy(logits, labels)
    assert got.item() == pytest.approx(_plain_ce(logits, labels), rel=1e-6)
    # the all-zero row adds 0 but counts in the mean: the mean over the 2 others is 3/2 of it
    assert soft_cross_entropy(logits[:2], labels[:2]).item() == pytest.approx(got.item() * 3 / 2, rel=1e-6)
    # only the direction of the scores matters (normalised), not their scale
    assert soft_cross_entropy(logits, labels * 0.5).item() == pytest.approx(got.item(), rel=1e-6)


def test_ce_gradient_is_finite_for_an_all_zero_row():
    logits = torch.zeros(2, 3, requires_grad=True)
    soft_cross_entropy(logits, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() == 0


@pytest.mark.parametrize("loss, fn", [("bce", instance_bce_with_logits), ("ce", soft_cross_entropy)])
def test_the_objective_uses_the_configured_task_loss(loss, fn):
    objective = build_objective(StageConfig(objective="task"), KDConfig(), None, task_loss=loss)
    logits, labels = torch.randn(4, 6), torch.rand(4, 6)
    assert objective.task(logits, labels).item() == pytest.approx(fn(logits, labels).item(), rel=1e-6)
    out = type("Out", (), {"logits": logits})()
    total, parts = objective.loss(out, {"labels": labels, "input_ids": torch.zeros(4, 2)}, detail=True)
    assert total.item() == pytest.approx(fn(logits, labels).item(), rel=1e-6) == parts["loss.task"]


def test_bce_is_the_default_and_ce_is_one_override_away():
    assert load_config(None, []).train.loss == "bce"
    assert load_config(None, ["train.loss=ce"]).train.loss == "ce"
    with pytest.raises(ConfigError, match="train.loss"):
        load_config(None, ["train.loss=kl"])
