"""Model/tokenizer preflight: refused (one line naming both sides) when the trainer is built, before any step.

Before these checks: a tokenizer larger than the embedding raised a raw IndexError at step 1, unequal KD hidden sizes
a shape RuntimeError at the first KD step, and a text-only BERT teacher "pass img_feature_dim and num_labels to build
the student" (the wrong role); a tokenizer differing from the init's own vocabulary went unnoticed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from cvil.config import load_config
from cvil.errors import CvilError
from cvil.models.config import oscar_config
from cvil.models.oscar import OscarVQA
from cvil.models.student_init import make_student_init
from cvil.train.distributed import DistInfo
from cvil.train.trainer import Trainer
from cvil.world import CONFIG_DIR

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_format"
SHAPE = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
             max_position_embeddings=64)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    data = Path(shutil.copytree(FIXTURE, root / "data"))
    tok = data / "bert-base-uncased"
    vocab = (tok / "vocab.txt").read_text(encoding="utf-8").splitlines()
    bigger = root / "bigger_tok"
    bigger.mkdir()
    (bigger / "vocab.txt").write_text("\n".join(vocab + ["[extra1]", "[extra2]"]) + "\n", encoding="utf-8")
    swapped = root / "swapped_tok"
    swapped.mkdir()
    vocab[2000], vocab[2001] = vocab[2001], vocab[2000]
    (swapped / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    init = make_student_init(root / "init", tok, seed=0, **SHAPE)
    teacher32 = root / "teacher32"
    OscarVQA(oscar_config(img_feature_dim=2054, num_labels=6, vocab_size=len(vocab), **dict(SHAPE, hidden_size=32,
                                                                                              num_attention_heads=4))
             ).save_pretrained(teacher32)
    shutil.copy2(tok / "vocab.txt", teacher32 / "vocab.txt")
    return {"data": data, "tok": tok, "bigger": bigger, "swapped": swapped, "init": init, "teacher32": teacher32}


def _cfg(folders, tmp_path, *extra, config="baseline.yaml"):
    return load_config(CONFIG_DIR / "synthetic" / config, [
        f"data.root={folders['data']}", f"model.init={folders['init']}", f"output_dir={tmp_path}",
        f"model.tokenizer={folders['tok']}", f"kd.teacher_tokenizer={folders['tok']}",
        "tracking.enabled=false", "data.max_regions=50", *extra])


def _stages_kd():
    return "stages=[{name: kd, dataset: vqa, lang: ja, epochs: 1, lr: 1.0e-3, objective: kd}]"


def test_tokenizer_larger_than_the_student_embedding(folders, tmp_path):
    cfg = _cfg(folders, tmp_path, f"model.tokenizer={folders['bigger']}", "stages=[{name: s, dataset: vg}]")
    with pytest.raises(CvilError, match=(rf"student tokenizer {folders['bigger']} has 30524 tokens but model.init "
                                         rf"{folders['init']} has an embedding of 30522 rows")):
        Trainer(cfg, dist=DistInfo())


def test_a_tokenizer_differing_from_the_init_vocabulary_warns(folders, tmp_path, caplog):
    cfg = _cfg(folders, tmp_path, f"model.tokenizer={folders['swapped']}", "stages=[{name: s, dataset: vg}]")
    with caplog.at_level(logging.WARNING, logger="cvil.train.preflight"):
        Trainer(cfg, dist=DistInfo())
    warned = [r.getMessage() for r in caplog.records if r.name == "cvil.train.preflight"
              and "differs from the vocabulary" in r.getMessage()]
    assert len(warned) == 1 and str(folders["swapped"]) in warned[0] and str(folders["init"]) in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cvil.train.preflight"):
        Trainer(_cfg(folders, tmp_path, f"model.tokenizer={folders['tok']}", "stages=[{name: s, dataset: vg}]"),
                dist=DistInfo())
    assert not [r for r in caplog.records if r.name == "cvil.train.preflight"
                and "differs from the vocabulary" in r.getMessage()]
    # (an English BERT vocabulary on these Japanese questions is also reported: it reads some words as [UNK])
    assert any("to [UNK] (e.g." in r.getMessage() for r in caplog.records)


def test_kd_hidden_sizes_must_match(folders, tmp_path):
    cfg = _cfg(folders, tmp_path, f"kd.teacher={folders['teacher32']}", f"kd.teacher_tokenizer={folders['tok']}",
               _stages_kd(), config="kd.yaml")
    with pytest.raises(CvilError, match=(rf"kd.teacher {folders['teacher32']} has hidden size 32 but model.init "
                                         rf"{folders['init']} has 16: KD compares hidden states")):
        Trainer(cfg, dist=DistInfo())


def test_a_text_only_bert_teacher_is_named_as_the_teacher(folders, tmp_path):
    cfg = _cfg(folders, tmp_path, f"kd.teacher={folders['init']}", _stages_kd(), config="kd.yaml")
    with pytest.raises(CvilError, match=(rf"kd.teacher {folders['init']} is a text-only BERT checkpoint .*a teacher "
                                         r"must be an OSCAR\(\+\) VQA checkpoint")):
        Trainer(cfg, dist=DistInfo())


@pytest.mark.slow
def test_kd_projection_linear_distils_between_hidden_sizes(tiny_world, tmp_path):
    """`kd.projection: linear`: a 16-wide student learns from the 32-wide tiny teacher through a learned map that
    trains with the student and is saved with it; without it the same run is refused."""
    from safetensors.torch import load_file

    from cvil.train.api import run
    from cvil.train.model_setup import build_student
    from tests.conftest import tiny_overrides

    init16 = make_student_init(tmp_path / "init16", tiny_world.root / "tokenizers" / "student", seed=0,
                               **dict(SHAPE, num_hidden_layers=4))
    stages = "stages=[{name: kd, dataset: vqa, lang: ja, epochs: 1, lr: 1.0e-3, objective: kd, select: last}]"
    common = (f"model.init={init16}", stages, "evaluate=[]")
    with pytest.raises(CvilError, match="has hidden size 32 but model.init .* has 16: .*or set kd.projection: linear"):
        Trainer(load_config(CONFIG_DIR / "synthetic" / "kd.yaml", tiny_overrides(tiny_world, tmp_path / "a", *common)),
                dist=DistInfo())
    cfg = load_config(CONFIG_DIR / "synthetic" / "kd.yaml",
                      tiny_overrides(tiny_world, tmp_path / "b", *common, "kd.projection=linear"))
    initial = build_student(cfg, torch.device("cpu")).kd_projection.weight.detach().clone()
    run(cfg)
    saved = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    assert saved["kd_projection.weight"].shape == (32, 16) == initial.shape
    assert not torch.allclose(saved["kd_projection.weight"], initial)  # trained with the student
