"""Checkpoint I/O: Oscar format, safetensors, HF BERT as student, and the error rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForPreTraining, BertModel

from cvil.models import CheckpointError, OscarVQA, save_oscar_checkpoint

INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask", "img_feats")


def inputs(batch):
    return {k: batch[k] for k in INPUT_KEYS}


def logits(model, batch):
    with torch.no_grad():
        return model.eval()(**inputs(batch), output_hidden_states=True)


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def assert_same_outputs(a, b):
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


@pytest.fixture
def oscar_dir(tmp_path, make_model):
    """A tiny model saved in the original Oscar format, with a vocab copied from a tokenizer folder."""
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    model = make_model()
    save_oscar_checkpoint(model, tmp_path / "ckpt", vocab_file=tok)
    return tmp_path / "ckpt", model


@pytest.mark.parametrize("img_layernorm", [False, True])
def test_oscar_format_round_trip(tmp_path, make_model, batch, img_layernorm):
    model = make_model(use_img_layernorm=img_layernorm)
    save_oscar_checkpoint(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256SUMS", "config.json", "pytorch_model.bin"]
    raw = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert list(raw) == list(model.state_dict())
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["img_feature_dim"], config["num_labels"], config["use_img_layernorm"]) == (10, 5, img_layernorm)
    assert "id2label" not in config
    loaded = OscarVQA.from_pretrained(tmp_path)
    assert not loaded.training and loaded.load_report.kind == "oscar"
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    assert loaded.config.use_img_layernorm is img_layernorm
    assert_same_outputs(logits(model, batch), logits(loaded, batch))


def test_vocab_is_copied(oscar_dir):
    folder, _ = oscar_dir
    assert (folder / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"


@pytest.mark.parametrize("img_layernorm", [False, True])
def test_safetensors_round_trip(tmp_path, make_model, batch, img_layernorm):
    model = make_model(use_img_layernorm=img_layernorm, hidden_dropout_prob=0.3)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = OscarVQA.from_pretrained(tmp_path, attn_implementation="eager")
    assert loaded.config._attn_implementation == "eager" and loaded.config.hidden_dropout_prob == 0.3
    a, b = logits(model, batch), logits(loaded, batch)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("img_layernorm", [False, True])
def test_image_layernorm_detected_from_keys(make_model, tmp_path, img_layernorm):
    """run_vqa never wrote `use_img_layernorm`: without it in config.json, the keys decide."""
    model = make_model(use_img_layernorm=img_layernorm)
    save_oscar_checkpoint(model, tmp_path)
    edit_config(tmp_path, use_img_layernorm=None, img_layer_norm_eps=None)
    loaded = OscarVQA.from_pretrained(tmp_path)
    assert loaded.config.use_img_layernorm is img_layernorm
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []


def test_pytorch_transformers_1x_config_loads(oscar_dir, batch):
    """An Oscar config.json as pytorch-transformers 1.x wrote it: `num_labels` only, extra run_vqa fields."""
    folder, model = oscar_dir
    old = {
        "attention_probs_dropout_prob": 0.1, "finetuning_task": "vqa_text", "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 160, "num_attention_heads": 2, "num_hidden_layers": 2,
        "num_labels": 5, "output_attentions": False, "output_hidden_states": False, "torchscript": False,
        "type_vocab_size": 2, "vocab_size": 60, "img_feature_dim": 10, "img_feature_type": "faster_r-cnn",
        "loss_type": "bce", "classifier": "linear", "cls_hidden_scale": 3, "drop_out": 0.1, "pruned_heads": {},
    }
    (folder / "config.json").write_text(json.dumps(old))
    loaded = OscarVQA.from_pretrained(folder)
    assert loaded.config._attn_implementation == "sdpa" and not loaded.config.use_img_layernorm
    assert_same_outputs(logits(model, batch), logits(loaded, batch))


def test_old_gamma_beta_names_and_hf_buffers(oscar_dir, batch):
    folder, model = oscar_dir
    state = {}
    for key, value in model.state_dict().items():
        if "LayerNorm" in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        state[key] = value
    state["bert.embeddings.position_ids"] = torch.arange(160)[None]
    torch.save(state, folder / "pytorch_model.bin")
    loaded = OscarVQA.from_pretrained(folder)
    report = loaded.load_report
    assert ("bert.embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight") in report.renamed
    assert report.ignored_buffers == ["bert.embeddings.position_ids"]
    assert report.unexpected == [] and report.missing == []
    assert_same_outputs(logits(model, batch), logits(loaded, batch))


def test_label_set_change_drops_classifier(oscar_dir, batch, caplog):
    folder, model = oscar_dir
    with caplog.at_level("INFO", logger="cvil.models.checkpoint"):
        loaded = OscarVQA.from_pretrained(folder, num_labels=7)
    report = loaded.load_report
    assert report.label_change == (5, 7)
    assert report.dropped == ["classifier.bias", "classifier.weight"]
    assert report.missing == ["classifier.weight", "classifier.bias"]
    assert "label set changed 5 -> 7" in report.summary() and "label set changed" in caplog.text
    assert loaded.classifier.weight.shape == (7, 32) and torch.count_nonzero(loaded.classifier.bias) == 0
    with torch.no_grad():
        a, b = model.eval().encode(**inputs(batch)), loaded.encode(**inputs(batch))
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=0, rtol=0)


def test_same_label_count_keeps_classifier(oscar_dir):
    folder, model = oscar_dir
    loaded = OscarVQA.from_pretrained(folder, num_labels=5)
    assert loaded.load_report.label_change is None
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight)


def test_classifier_shape_mismatch_without_label_change_is_an_error(oscar_dir):
    folder, _ = oscar_dir
    edit_config(folder, num_labels=7)  # config and weights disagree, the caller asked for nothing
    with pytest.raises(CheckpointError, match=r"classifier\.weight: checkpoint \(5, 32\) vs model \(7, 32\)"):
        OscarVQA.from_pretrained(folder)


def test_missing_keys_are_an_error(oscar_dir):
    folder, model = oscar_dir
    state = model.state_dict()
    del state["bert.encoder.layer.1.output.dense.weight"], state["bert.img_embedding.bias"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="missing required keys") as err:
        OscarVQA.from_pretrained(folder)
    assert "bert.encoder.layer.1.output.dense.weight" in str(err.value)
    assert "bert.img_embedding.bias" in str(err.value)


def test_wrong_hidden_size_is_an_error(oscar_dir):
    folder, _ = oscar_dir
    edit_config(folder, hidden_size=64, intermediate_size=128)
    expected = r"bert\.embeddings\.word_embeddings\.weight: checkpoint \(60, 32\) vs model \(60, 64\)"
    with pytest.raises(CheckpointError, match=expected):
        OscarVQA.from_pretrained(folder)


def test_wrong_img_dim_is_an_error(oscar_dir):
    folder, _ = oscar_dir
    expected = r"bert\.img_embedding\.weight: checkpoint \(32, 10\) vs model \(32, 12\)"
    with pytest.raises(CheckpointError, match=expected):
        OscarVQA.from_pretrained(folder, img_feature_dim=12)


def test_unexpected_keys_are_reported_not_fatal(oscar_dir, caplog):
    folder, model = oscar_dir
    state = dict(model.state_dict(), **{"cls.predictions.bias": torch.zeros(3)})
    torch.save(state, folder / "pytorch_model.bin")
    with caplog.at_level("WARNING", logger="cvil.models.checkpoint"):
        loaded = OscarVQA.from_pretrained(folder)
    assert loaded.load_report.unexpected == ["cls.predictions.bias"]
    assert "cls.predictions.bias" in caplog.text


# -- HF BERT folder as the student -----------------------------------------------------------------------------------
def _save_bert(folder: Path, cls, file_format: str):
    torch.manual_seed(3)
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=160,
    )
    bert = cls(config).eval()
    bert.save_pretrained(folder)
    if file_format == "bin":
        (folder / "model.safetensors").unlink()
        torch.save(bert.state_dict(), folder / "pytorch_model.bin")
    return bert.bert if cls is BertForPreTraining else bert


@pytest.mark.parametrize("cls", [BertModel, BertForPreTraining])
@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
def test_hf_bert_folder_initialises_the_student(tmp_path, batch, cls, file_format):
    bert = _save_bert(tmp_path, cls, file_format)
    student = OscarVQA.from_pretrained(tmp_path, img_feature_dim=10, num_labels=5, hidden_dropout_prob=0.3)
    report = student.load_report
    assert report.kind == "bert" and student.config.hidden_dropout_prob == 0.3
    fresh = ["bert.img_embedding.bias", "bert.img_embedding.weight", "classifier.bias", "classifier.weight"]
    assert sorted(report.missing) == fresh
    assert not student.config.use_img_layernorm
    assert all(k.startswith("cls.") for k in report.unexpected)
    assert bool(report.unexpected) == (cls is BertForPreTraining)
    for key, value in bert.state_dict().items():
        if not key.endswith(("position_ids", "token_type_ids")):
            torch.testing.assert_close(student.state_dict()["bert." + key], value, atol=0, rtol=0)
    assert torch.count_nonzero(student.classifier.bias) == 0
    assert torch.count_nonzero(student.bert.img_embedding.bias) == 0
    assert abs(student.bert.img_embedding.weight.std().item() - 0.02) < 0.01

    # With zero regions the Oscar encoder is exactly HF BERT (same embeddings, layers, mask handling, pooler).
    text_only = dict(inputs(batch), img_feats=batch["img_feats"][:, :0], attention_mask=batch["attention_mask"][:, :-4])
    with torch.no_grad():
        ours = student(**text_only, output_hidden_states=True)
        ref = bert(input_ids=text_only["input_ids"], token_type_ids=text_only["token_type_ids"],
                   attention_mask=text_only["attention_mask"], output_hidden_states=True)
    torch.testing.assert_close(ours.pooled, ref.pooler_output, atol=1e-6, rtol=0)
    for x, y in zip(ours.hidden_states, ref.hidden_states, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_hf_bert_folder_needs_img_dim_and_labels(tmp_path):
    _save_bert(tmp_path, BertModel, "safetensors")
    with pytest.raises(CheckpointError, match="img_feature_dim and num_labels"):
        OscarVQA.from_pretrained(tmp_path)


def test_hf_bert_missing_encoder_key_is_an_error(tmp_path):
    bert = _save_bert(tmp_path, BertModel, "bin")
    state = bert.state_dict()
    del state["pooler.dense.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"bert\.pooler\.dense\.weight"):
        OscarVQA.from_pretrained(tmp_path, img_feature_dim=10, num_labels=5)
