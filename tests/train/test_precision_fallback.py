"""fp16 is the paper configs' precision (the release's apex O1); on a CPU it falls back to fp32 with one warning."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from cvil import precision
from cvil.config import load_config
from cvil.world import CONFIG_DIR

PAPER_CONFIGS = sorted((CONFIG_DIR / "paper").rglob("*.yaml"))


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(precision, "_warned", set())


def test_fp16_on_cpu_falls_back_to_fp32_with_one_warning(fresh_warning, caplog):
    with caplog.at_level(logging.WARNING, logger="cvil.precision"):
        assert precision.resolve_precision("fp16", torch.device("cpu")) == "fp32"
        assert precision.resolve_precision("fp16", torch.device("cpu")) == "fp32"
    assert [r.getMessage() for r in caplog.records] == [
        "precision fp16 needs a CUDA device; running in fp32 on cpu instead"]
    assert not precision.grad_scaler("fp32", torch.device("cpu")).is_enabled()


def test_fp16_stays_fp16_on_cuda_and_the_other_settings_are_unchanged(fresh_warning, caplog):
    with caplog.at_level(logging.WARNING, logger="cvil.precision"):
        assert precision.resolve_precision("fp16", torch.device("cuda", 0)) == "fp16"
        assert precision.resolve_precision("bf16", torch.device("cpu")) == "bf16"
        assert precision.resolve_precision("fp32", torch.device("cpu")) == "fp32"
        assert precision.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert caplog.records == []


def test_the_paper_configs_ask_for_fp16_and_bf16_is_one_override_away():
    assert len(PAPER_CONFIGS) > 5
    for path in PAPER_CONFIGS:
        assert load_config(path).train.precision == "fp16", path
    assert load_config(PAPER_CONFIGS[0], ["train.precision=bf16"]).train.precision == "bf16"


def test_a_cpu_run_with_fp16_trains_in_fp32(overrides_for, synthetic_config, tmp_path, fresh_warning, caplog):
    from cvil.train.api import run

    out = tmp_path / "fp16"
    with caplog.at_level(logging.WARNING, logger="cvil.precision"):
        run(load_config(synthetic_config("baseline.yaml"), overrides_for(
            out, "stages=[{name: s, dataset: vg, lang: ja, epochs: 1, lr: 5.0e-4, select: last}]", "evaluate=[val]",
            "train.precision=fp16")))
    assert [r.getMessage() for r in caplog.records if r.name == "cvil.precision"] == [
        "precision fp16 needs a CUDA device; running in fp32 on cpu instead"]
    assert json.loads((out / "final_metrics.json").read_text())
