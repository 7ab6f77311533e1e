"""Declared evaluation: each dataset name maps to one metric and one ground truth; unknown names are refused."""

from __future__ import annotations

import pytest

from cvil.config import RunConfig, StageConfig
from cvil.data import layout
from cvil.errors import UsageError
from cvil.eval.datasets import eval_dataset
from cvil.train.final_eval import check_declared_evaluation


def test_declared_metrics(tmp_path):
    assert eval_dataset("vg").metric_for("ja", tmp_path) == "jvg"
    assert eval_dataset("vqa").metric_for("ja", tmp_path) == "vqa"
    assert eval_dataset("vqa").metric_for("hi", tmp_path) == "vqa"  # no merged Hindi classes in the folder
    (tmp_path / layout.HINDI_CLASSES).write_text("{}")
    assert eval_dataset("vqa").metric_for("hi", tmp_path) == "hindi"
    assert eval_dataset("vg").metric_for("hi", tmp_path) == "jvg"


def test_an_undeclared_dataset_is_refused_with_the_closest_names():
    with pytest.raises(UsageError, match=r"no evaluation is declared for dataset 'vgg'; did you mean 'vg'\?"):
        eval_dataset("vgg")
    with pytest.raises(UsageError, match=r"'gqa'.*declared: vg, vqa"):
        eval_dataset("gqa")


def test_the_run_checks_its_evaluation_before_training():
    cfg = RunConfig(stages=(StageConfig(dataset="vqa2"),), evaluate=("val",))
    with pytest.raises(UsageError, match="did you mean 'vqa'"):
        check_declared_evaluation(cfg)
    check_declared_evaluation(RunConfig(stages=(StageConfig(dataset="vqa2"),), evaluate=()))  # nothing to score
    check_declared_evaluation(RunConfig(stages=(StageConfig(dataset="vg"),), evaluate=("val", "test")))
