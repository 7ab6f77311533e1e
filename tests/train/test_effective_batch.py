"""The effective batch (data.batch_size x processes x train.grad_accum): a warning when it is not the paper's 128,
and the `effective_batch_size` param of the MLflow run (the whole run is checked in test_runs.py)."""

from __future__ import annotations

import logging

import pytest

from cvil import tracking_schema as schema
from cvil.config import load_config
from cvil.train.api import effective_batch_size, report_effective_batch, run_params


@pytest.mark.parametrize("batch, world, accum", [(32, 4, 1), (32, 1, 4), (128, 1, 1), (16, 2, 4)])
def test_the_papers_batch_is_not_reported(caplog, batch, world, accum):
    cfg = load_config(None, [f"data.batch_size={batch}", f"train.grad_accum={accum}"])
    with caplog.at_level(logging.WARNING, logger="cvil.train.api"):
        assert report_effective_batch(cfg, world) == 128
    assert caplog.records == []


def test_another_batch_is_reported_with_its_three_factors(caplog):
    cfg = load_config(None, ["data.batch_size=32", "train.grad_accum=2"])
    with caplog.at_level(logging.WARNING, logger="cvil.train.api"):
        assert report_effective_batch(cfg, 1) == 64
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    message = caplog.records[0].getMessage()
    assert message.startswith("effective batch 64 = data.batch_size 32 x 1 process(es) x train.grad_accum 2, "
                              "not the paper's 128")


def test_the_effective_batch_is_a_run_param():
    cfg = load_config(None, ["data.batch_size=8", "train.grad_accum=3"])
    params = run_params(cfg, 2)
    assert schema.EFFECTIVE_BATCH_SIZE == "effective_batch_size"
    assert params["effective_batch_size"] == 48 == effective_batch_size(cfg, 2)
    assert params["data.batch_size"] == 8 and params["train.grad_accum"] == 3  # the flattened config is still there
