"""Golden losses (torchtune's recipe-test style): a BASELINE and a KD run on the tiny world, fp32, one thread,
fixed seed, must log the pinned `train.loss` / `train.loss.kd` at every logged step.

A refactor must leave these numbers unchanged. The runs, the pinned keys and the tolerance are in
tests/train/conftest.py (GOLDEN_RUNS); the numbers are in tests/train/golden_losses.json. To regenerate them after a
change that is meant to change training:
    CVIL_REGEN_GOLDEN=1 python -m pytest -q -p no:cacheprovider tests/train/test_golden_losses.py
"""

from __future__ import annotations

import os

import pytest


@pytest.mark.parametrize("name", ["baseline", "kd"])
def test_logged_losses_match_the_pinned_values(name, golden_run, assert_golden_losses, regenerate_golden_losses):
    out = golden_run(name)
    if os.environ.get("CVIL_REGEN_GOLDEN") == "1":
        regenerate_golden_losses(name, out)
        pytest.skip("CVIL_REGEN_GOLDEN=1: golden_losses.json rewritten, nothing compared")
    assert_golden_losses(name, out)
