"""Every reader, `cvil data validate`, the dataset and final_eval on a hand-written fixture in the release's formats.

The fixture (tests/fixtures/release_format, see its README) was written independently of the synthetic generator,
with a real BERT uncased vocabulary; the expected token ids below were read off its vocab.txt by hand.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cvil.data import layout
from cvil.data.label_maps import load_label_maps
from cvil.data.qla import read_qla, read_unknown
from cvil.data.region_features import PtDirSource
from cvil.data.validate import validate_dataset

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_format"
REPO = Path(__file__).resolve().parents[2]
CLS, SEP = 101, 102  # [CLS], [SEP] in bert-base-uncased/vocab.txt (lines 102 and 103)


@pytest.fixture
def data(tmp_path) -> Path:
    """A private copy: packing features for a run writes beside the data."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "release_format"))


@pytest.fixture(scope="module")
def bert():
    from cvil.data.tokenizers import load_tokenizer

    return load_tokenizer(FIXTURE / "bert-base-uncased")


def test_every_reader_reads_the_release_files():
    vqa, vg = FIXTURE / "vqa", FIXTURE / "vg"
    train = read_qla(layout.qla_path(vqa, "train"))
    assert [(r.q_id, r.key) for r in train.rows] == [(0, 0), (0, 1)] and train.dropped.total == 1
    assert train.rows[0].alignments["ja"][2] == ("何", "What", 0)  # en_idx stored as the string "0"
    assert train.rows[1].scores == (1.0, 0.3)
    test = read_qla(layout.qla_path(vqa, "test"), drop_empty=False)
    assert {r.tags for r in test.rows} == {""} and all(not r.answer_ids for r in test.rows)
    assert read_qla(layout.qla_path(vqa, "val")).rows[0].tags == ";"
    for split in layout.SPLITS:
        rows = read_qla(layout.qla_path(vg, split), drop_empty=False).rows
        assert all(set(r.extra) == set() and set(r.questions) == {"ja"} for r in rows)  # no answer strings
    unknown = read_unknown(layout.unknown_path(vg))
    assert [r.extra["answer"] for r in unknown.rows] == ["白", "走っている", "2匹"]
    assert load_label_maps(vqa).label2ans == ["yes", "no", "2", "white", "1", "red"]  # protocol-2 list
    assert load_label_maps(vg).label2ans == ["白", "2匹", "草の上"]  # the int-keyed dict form
    feats = PtDirSource(layout.feature_dir(vqa, "test")).get(262144)
    assert feats.shape == (4, 2054) and str(feats.dtype) == "float32"
    assert (feats[:, -6:] >= 0).all() and (feats[:, -6:] <= 1).all()


@pytest.mark.parametrize("dataset", ["vqa", "vg"])
def test_validate_accepts_the_release_layout(dataset):
    report = validate_dataset(FIXTURE / dataset)
    assert report.errors == [] and report.ok
    proc = subprocess.run([sys.executable, "-m", "cvil", "data", "validate", str(FIXTURE / dataset)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr


def test_dataset_inputs_equal_the_release_by_hand(data, bert):
    """Token ids written by hand from vocab.txt: a tagged row, an `o: ';'` row and an `o: ''` row."""
    from cvil.inputs.dataset import VQADataset
    from cvil.inputs.alignment import COMPONENT_TAG, KDSelection
    from cvil.train.data_setup import feature_store
    from cvil.train.distributed import DistInfo

    rows = {split: read_qla(layout.qla_path(data / "vqa", split), drop_empty=split != "test").rows
            for split in layout.SPLITS}
    expected = {  # what the release's tensorize_example builds for the English (teacher) text
        ("train", 0): ([CLS, 2054, 3609, 2003, 1996, 4937, 1029, SEP, 4937, 2795, 5093, 14513, 3388, SEP],
                       [0] * 8 + [1] * 6),  # what color is the cat ? [SEP] cat table tennis rack ##et [SEP]
        ("val", 0): ([CLS, 2003, 2045, 1037, 3899, 1029, SEP], [0] * 7),  # o ';': is there a dog ? [SEP]
        ("test", 0): ([CLS, 2054, 2003, 2006, 1996, 2795, 1029, SEP], [0] * 8),  # o '': what is on the table ? [SEP]
    }
    for (split, i), (ids, segments) in expected.items():
        ds = VQADataset(rows[split], bert, feature_store(data / "vqa", split, DistInfo()), 6, "en", 50,
                        teacher_tokenizer=bert, kd=KDSelection())
        ex = ds[i]
        assert ex["input_ids"].tolist() == ids and ex["token_type_ids"].tolist() == segments
        assert ex["teacher_input_ids"].tolist() == ids and ex["teacher_token_type_ids"].tolist() == segments
        first_sep = ids.index(SEP)
        tag_pairs = [tuple(p[:2]) for p in ex["kd_text_pairs"].tolist() if p[2] == COMPONENT_TAG]
        # one tokenizer on both sides: the walk pairs every position from the first [SEP] on (empty tags: just it)
        assert tag_pairs == [(k, k) for k in range(first_sep, len(ids))]
        assert ex["n_regions"] == {"train": 3, "val": 2, "test": 4}[split]


@pytest.mark.slow
def test_final_eval_scores_labelled_jvg_rows_through_the_label_map(data, tmp_path, mlflow_store):
    """A real (tiny, lr 0) run on the fixture's vg/: val has no answer strings, so its ground truth must be
    label2ans[an[0]] over the labelled rows (the row without a label is not scored), recorded as answer_source."""
    from mlflow.tracking import MlflowClient

    from cvil.config import load_config
    from cvil.train.api import run
    from cvil.world import CONFIG_DIR

    out = tmp_path / "run"
    shape = "{hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, " \
            "max_position_embeddings: 64}"
    cfg = load_config(CONFIG_DIR / "synthetic" / "baseline.yaml", [
        f"data.root={data}", "model.init=", f"model.tokenizer={data / 'bert-base-uncased'}",
        f"model.from_scratch={shape}", f"output_dir={out}", "tracking.enabled=true", f"tracking.uri={mlflow_store}",
        "data.max_regions=50", "data.batch_size=2", "evaluate=[val, test]",
        "stages=[{name: s, dataset: vg, lang: ja, epochs: 1, lr: 0.0}]"])
    metrics = run(cfg)
    with open(out / "predictions" / "val_per_question.csv", encoding="utf-8") as f:
        val = {int(r["question_id"]): r["ground_truth"] for r in csv.DictReader(f)}
    assert val == {0: "白", 1: "草の上"}  # JVG val rows carry no q_id: keyed by their position in the file
    with open(out / "predictions" / "test_per_question.csv", encoding="utf-8") as f:
        test = {int(r["question_id"]): r["ground_truth"] for r in csv.DictReader(f)}
    assert test == {2341000: "白", 2341001: "走っている", 2342000: "2匹"}  # the .unknown strings, every test row
    assert metrics["val.coverage"] == 100.0 and metrics["test.coverage"] == pytest.approx(200 / 3)
    client = MlflowClient(mlflow_store)
    tags = client.search_runs([client.get_experiment_by_name("cvil").experiment_id])[0].data.tags
    assert tags["val.answer_source"] == "label_map" and tags["test.answer_source"] == "answer_field"
    assert json.loads((out / "final_metrics.json").read_text())["val.accuracy"] == metrics["val.accuracy"]
