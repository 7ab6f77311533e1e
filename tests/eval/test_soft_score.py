"""Training-time soft score: Σ target[argmax] / n with both denominators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvil.eval.soft_score import SoftScoreAccumulator, soft_score

LOGITS = [[0.1, 0.9, 0.0], [2.0, 1.0, 0.0]]
TARGETS = [[0.0, 0.6, 1.0], [0.3, 0.0, 0.0]]


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_soft_score_both_denominators(lib: str) -> None:
    conv = np.array if lib == "numpy" else torch.tensor
    s = soft_score(conv(LOGITS), conv(TARGETS), n_dropped=2)
    assert s.total == pytest.approx(0.9)  # 0.6 + 0.3
    assert s.filtered == pytest.approx(0.45)  # / 2 scored rows
    assert s.unfiltered == pytest.approx(0.225)  # / (2 + 2 dropped)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_ties_take_first_index(lib: str) -> None:
    conv = np.array if lib == "numpy" else torch.tensor
    assert soft_score(conv([[1.0, 1.0]]), conv([[0.3, 0.9]])).total == pytest.approx(0.3)


def test_accumulator_matches_one_shot() -> None:
    acc = SoftScoreAccumulator()
    acc.update(torch.tensor(LOGITS[:1]), torch.tensor(TARGETS[:1]))
    acc.update(torch.tensor(LOGITS[1:]), torch.tensor(TARGETS[1:]))
    got, want = acc.result(n_dropped=2), soft_score(np.array(LOGITS), np.array(TARGETS), n_dropped=2)
    assert (got.n_scored, got.n_dropped) == (want.n_scored, want.n_dropped) == (2, 2)
    assert got.total == pytest.approx(want.total)  # float32 tensors vs float64 arrays


def test_shape_mismatch_and_empty() -> None:
    with pytest.raises(ValueError, match="must both be"):
        soft_score(np.zeros((2, 3)), np.zeros((2, 4)))
    empty = SoftScoreAccumulator().result()
    assert empty.filtered == 0.0 and empty.unfiltered == 0.0
