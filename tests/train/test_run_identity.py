"""Runs say which world they read (names, `cvil.world`, the demo's cells), scores print with their unit, and a
student tokenizer that cannot read the target language is reported before training."""

from __future__ import annotations

import json
import logging

import pytest

from cvil import tracking_schema as schema
from cvil.config import load_config


def test_demo_runs_on_two_worlds_never_share_a_name_or_a_group():
    from cvil.demo import demo_runs

    def tags(preset):
        out = {}
        for name, seed, overrides in demo_runs(preset, 0, False, 1, "runs/demo/x"):
            out[name] = dict(o.split("=", 1) for o in overrides)
        return out

    tiny, small = tags("tiny"), tags("small")
    assert tiny["aug"]["tracking.run_name"] == "demo-tiny-aug-s1" and small["aug"]["tracking.run_name"] == "demo-small-aug-s1"
    assert tiny["aug"][f"tracking.tags.{schema.WORLD}"] == "tiny"
    assert tiny["aug"][f"tracking.tags.{schema.CELL}"] == "tiny/aug" != small["aug"][f"tracking.tags.{schema.CELL}"]
    assert [n for n, _, _ in demo_runs("small", 2, True, 2, "o")] == ["baseline", "baseline", "aug", "aug", "kd", "kd"]
    assert dict(o.split("=", 1) for o in demo_runs("small", 2, False, 1, "o")[0][2])[
        f"tracking.tags.{schema.WORLD}"] == "small-w2"  # another world seed is another world


def test_a_run_on_a_synthetic_world_is_tagged_with_it(tmp_path):
    from cvil.train.run_metadata import world_tags
    from cvil.world import CONFIG_DIR

    cfg = load_config(CONFIG_DIR / "synthetic" / "baseline.yaml", [f"data.root={tmp_path}"])
    assert world_tags(cfg) == {}  # real data: no world
    (tmp_path / "world.json").write_text(json.dumps({"preset": "tiny", "seed": 0}))
    assert world_tags(cfg) == {schema.WORLD: "tiny"}


def test_scores_print_as_percent():
    from cvil.world import percent

    assert percent(1.0) == "1.00 %" and percent(98.4321) == "98.43 %" and percent(None) == "n/a"
    assert percent(float("nan")) == "n/a"


def _tokenizer(folder, tokens):
    from cvil.data.tokenizers import load_tokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *tokens]) + "\n",
                                      encoding="utf-8")
    return load_tokenizer(folder)


def test_a_student_tokenizer_that_cannot_read_the_language_is_reported_before_training(tmp_path, caplog):
    from cvil.train.preflight import sample_questions, warn_unknown_words
    from cvil.world import CONFIG_DIR

    vg = tmp_path / "data" / "vg"
    vg.mkdir(parents=True)
    rows = [{"ja": "猫は何色か", "o": "", "an": [0], "s": [1.0], "img_id": i} for i in range(50)]
    (vg / "train2014_qla_mrcnn.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert sample_questions(vg / "train2014_qla_mrcnn.json", "ja", rows=7) == ["猫は何色か"] * 7
    cfg = load_config(CONFIG_DIR / "synthetic" / "baseline.yaml", [f"data.root={tmp_path / 'data'}",
                                                                      f"model.tokenizer={tmp_path / 'bad'}"])
    bad = _tokenizer(tmp_path / "bad", ["は", "何", "か"])  # no 猫, no 色: 猫 and 何色 (fugashi: 猫|は|何色|か) are [UNK]
    with caplog.at_level(logging.WARNING, logger="cvil.train.preflight"):
        assert warn_unknown_words(cfg, bad) == pytest.approx(0.5)
    assert "maps 50.0 % of the 'ja' words of 50 " in caplog.text and "to [UNK] (e.g. '猫')" in caplog.text
    caplog.clear()
    good = _tokenizer(tmp_path / "good", ["猫", "は", "何", "色", "か"])
    with caplog.at_level(logging.WARNING, logger="cvil.train.preflight"):
        assert warn_unknown_words(cfg, good) == 0.0
    assert caplog.text == ""
