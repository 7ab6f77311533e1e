"""Compare two systems on one metric from their per-question frames: the test is chosen by the metric.

Accuracy-like metrics: the seed-aware test of :func:`bench.stats.significance.compare_seeds`; BLEU: the column's own
BLEU (:mod:`bench.stats.bleu_significance`). The one entry point of `cvil-bench compare` and the leaderboards' stars.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pandas as pd

from bench.stats.bleu_significance import bleu_compare_seeds, bleu_pooled
from bench.stats.results import TestResult
from bench.stats.significance import compare_seeds


def check_same_keys(frames: Mapping[str, pd.DataFrame]) -> None:
    """Per-question ids are the question's q_id, or its position in a file that has none (the `row_keys` column,
    `position@<file digest>`); positions of two different files must never be paired."""
    keys = {name: frozenset(f["row_keys"].unique()) for name, f in frames.items() if "row_keys" in f.columns}
    distinct = set(keys.values())
    if len(distinct) > 1 or any(len(k) > 1 for k in distinct):
        shown = "; ".join(f"{name}: {', '.join(sorted(k))}" for name, k in keys.items())
        raise ValueError(f"per-question scores keyed differently, so their questions cannot be paired ({shown})")


def compare_frames(a_frames: dict[str, pd.DataFrame], b_frames: dict[str, pd.DataFrame], *,
                   metric: str = "accuracy", n_resamples: int = 9999, seed: int = 0, bleu_test: str = "bs",
                   bleu_tokenize: str = "ja-mecab", bleu_seed: int = 12345, aso: bool = True,
                   bleu_preset: str | None = None) -> TestResult:
    """B vs A on per-question frames by seed (Δ = B − A, in the units of the scores).

    Accuracy: the seed-aware result of :func:`compare_seeds`, with the question-level test as ``.question_level``.
    BLEU: the column's own BLEU (``bleu_preset``, default the JVG preset) by :mod:`bench.stats.bleu_significance`;
    ``bleu_preset="sacrebleu"`` keeps sacrebleu's paired test with ``bleu_tokenize`` (seeds pooled).
    Frames are paired by ``question_id``; runs that keyed their questions differently are refused (`check_same_keys`).
    """
    check_same_keys({**{f"A seed {k}": f for k, f in a_frames.items()}, **{f"B seed {k}": f for k, f in b_frames.items()}})
    if metric == "bleu":
        if bleu_preset == "sacrebleu":
            return bleu_pooled(a_frames, b_frames, test=bleu_test, tokenize=bleu_tokenize, seed=bleu_seed)
        from cvil.eval.bleu import JVG_PRESET, resolve_options

        return bleu_compare_seeds(a_frames, b_frames, options=resolve_options(bleu_preset or JVG_PRESET),
                                  n_resamples=1000, seed=bleu_seed)
    cmp = compare_seeds({k: f["score"] for k, f in a_frames.items()},
                        {k: f["score"] for k, f in b_frames.items()}, n_resamples=n_resamples, seed=seed, aso=aso)
    return dataclasses.replace(cmp.result, question_level=cmp.question_level)
