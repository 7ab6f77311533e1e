"""Prepared data end to end: prepare-jvg -> validate -> pack -> `cvil train` BASELINE -> `cvil eval jvg`, and
training on the merged Hindi classes (`data.label_set=hindi_merged`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cvil.cli import main
from cvil.config import load_config
from cvil.data import layout
from cvil.train.api import run

sys.path.insert(0, str(Path(__file__).parents[1] / "data" / "prepare"))
from prepare_sources import write_feature_tsv, write_jvg_sources  # noqa: E402


@pytest.mark.slow
def test_prepare_validate_pack_train_eval_round_trip(tiny_world, synthetic_config, tmp_path, capsys):
    src = write_jvg_sources(tmp_path / "src")
    vg = tmp_path / "root" / "vg"
    assert main(["data", "prepare-jvg", "--qa", str(src["qa"]), "--tags", str(src["tags"]), "--out", str(vg),
                 "--splits", str(src["splits"]), "--top-k", "5"]) == 0
    tsv = write_feature_tsv(tmp_path / "vg_feats.tsv", range(1, 11), dim=32)
    for split, qla in (("train", layout.qla_path(vg, "train")), ("val", layout.qla_path(vg, "val")),
                       ("test", layout.unknown_path(vg))):
        assert main(["data", "pack", "--source", "tsv", "--input", str(tsv), "--ids-from", str(qla),
                     "--out", str(layout.packed_store_path(vg, split))]) == 0
    capsys.readouterr()
    assert main(["data", "validate", str(vg)]) == 0, capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["train", "--config", str(synthetic_config("baseline.yaml")), *tiny_world.overrides(),
                 f"data.root={vg.parent}", f"output_dir={out}", "tracking.enabled=false", "data.max_regions=50",
                 "data.batch_size=4", "stages.0.epochs=1", "stages.1.epochs=1", "evaluate=[test]"]) == 0
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert metrics["test.coverage"] == pytest.approx(50.0)  # 3 of the 6 test questions have an in-vocabulary answer
    assert main(["eval", "jvg", "--unknown", str(layout.unknown_path(vg)), "--results",
                 str(out / "predictions" / "test_results.json"), "--bleu-tokenizer", "char",
                 "--out", str(tmp_path / "jvg.json")]) == 0
    scored = json.loads((tmp_path / "jvg.json").read_text())
    assert scored["summary"]["accuracy"] == pytest.approx(metrics["test.accuracy"])
    predictions = json.loads((out / "predictions" / "test_results.json").read_text())
    assert sorted(p["question_id"] for p in predictions) == [900, 901, 902, 1000, 1001, 1002]


@pytest.mark.slow
def test_training_on_merged_hindi_classes(tiny_world, synthetic_config, tmp_path):
    vqa = tiny_world.root / "vqa"
    hindi = json.loads((vqa / layout.HINDI_CLASSES).read_text(encoding="utf-8"))
    from cvil.data.label_maps import load_label_maps

    assert len(hindi["labels"]) < len(load_label_maps(vqa))  # the world merges some answers
    out = tmp_path / "hindi"
    cfg = load_config(synthetic_config("hindi_baseline.yaml"), [
        *tiny_world.overrides(), f"output_dir={out}", "tracking.enabled=false", "data.max_regions=50",
        "data.label_set=hindi_merged", "stages.0.epochs=1", "stages.1.epochs=1", "evaluate=[val]"])
    metrics = run(cfg)
    assert json.loads((out / "final" / "config.json").read_text())["num_labels"] == len(hindi["labels"])
    predictions = json.loads((out / "predictions" / "val_results.json").read_text())
    assert predictions and {p["answer"] for p in predictions} <= set(hindi["labels"])
    assert "val.accuracy" in metrics


def test_relabel_maps_english_targets_onto_merged_classes(tmp_path):
    from cvil.config import ConfigError
    from cvil.data.label_maps import save_label_maps
    from cvil.data.prepare.hindi_classes import build_hindi_classes
    from cvil.data.qla import QLARow
    from cvil.data.errors import DataSetupError
    from cvil.data.label_sets import label_maps, relabel

    save_label_maps(tmp_path, ["up", "no", "above"])
    (tmp_path / "a.tsv").write_text("up\tऊपर\nno\tनहीं\nabove\tऊपर\n", encoding="utf-8")
    build_hindi_classes(ans2label=tmp_path / layout.ANS2LABEL, translations=tmp_path / "a.tsv", out=tmp_path)
    row = QLARow(questions={"hi": "q"}, tags="", answer_ids=(2, 1, 0), scores=(0.9, 0.3, 0.6), img_id=1, q_id=7)
    assert relabel([row], tmp_path, "answers") == [row]
    (merged,) = relabel([row], tmp_path, "hindi_merged")
    assert (merged.answer_ids, merged.scores, merged.q_id) == ((0, 1), (0.9, 0.3), 7)
    assert label_maps(tmp_path, "hindi_merged").label2ans == ["ऊपर", "नहीं"]
    with pytest.raises(DataSetupError, match="question 8 has label ids \\[5\\] outside the 3 answers"):
        relabel([QLARow({"hi": "q"}, "", (5,), (1.0,), 1, 8)], tmp_path, "hindi_merged")
    with pytest.raises(ConfigError):
        load_config(None, ["data.label_set=hindi"])
