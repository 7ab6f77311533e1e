"""The training-time VQA score: ``Σ target[argmax(logits)] / n`` (the reference's ``compute_score_with_logits``).

Why two denominators: the reference divides by the *filtered* dataset (rows with at least one in-vocabulary answer),
which overstates the score; dividing by all questions (filtered + dropped, a dropped row scoring 0) gives the number
comparable with the official evaluator. Both are reported; which one selects checkpoints is the caller's choice.

For VQA the targets are BUTD soft scores (0, .3, .6, .9, 1), so this equals the official leave-one-out accuracy up to
answer-string normalisation; for one-hot JVG targets it is plain accuracy on covered rows.

Works on torch tensors (any device; nothing is copied to the host except the final sum) and on numpy arrays. Ties in
``argmax`` go to the lowest index in both libraries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def batch_score_sum(logits: Any, targets: Any) -> float:
    """``Σ_i targets[i, argmax(logits[i])]`` for one batch ``[B, C]``; a float."""
    if tuple(logits.shape) != tuple(targets.shape) or len(logits.shape) != 2:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be [B, C]")
    if hasattr(logits, "detach"):  # torch, without importing it here
        idx = logits.detach().argmax(dim=1, keepdim=True)
        return float(targets.detach().gather(1, idx).sum().item())
    logits, targets = np.asarray(logits), np.asarray(targets)
    idx = logits.argmax(axis=1)
    return float(targets[np.arange(len(idx)), idx].sum())


@dataclass(frozen=True)
class SoftScore:
    """Score sums and both denominators; the scores are fractions in [0, 1]."""

    total: float
    n_scored: int
    n_dropped: int = 0

    @property
    def filtered(self) -> float:
        """Over rows that had an in-vocabulary answer (the reference's number)."""
        return self.total / self.n_scored if self.n_scored else 0.0

    @property
    def unfiltered(self) -> float:
        """Over all questions; dropped rows count as 0."""
        n = self.n_scored + self.n_dropped
        return self.total / n if n else 0.0


def soft_score(logits: Any, targets: Any, n_dropped: int = 0) -> SoftScore:
    """The soft score of one set of logits ``[N, C]`` against soft targets ``[N, C]``."""
    if n_dropped < 0:
        raise ValueError("n_dropped must be >= 0")
    return SoftScore(batch_score_sum(logits, targets), int(logits.shape[0]), n_dropped)


class SoftScoreAccumulator:
    """Accumulates batch sums during an evaluation loop, so no logits need to be kept."""

    def __init__(self) -> None:
        self.total = 0.0
        self.n_scored = 0

    def update(self, logits: Any, targets: Any) -> None:
        self.total += batch_score_sum(logits, targets)
        self.n_scored += int(logits.shape[0])

    def result(self, n_dropped: int = 0) -> SoftScore:
        return SoftScore(self.total, self.n_scored, n_dropped)
