"""OscarVQA: key names, layout, hidden-state convention, attention equivalences, loss, gradients."""

from __future__ import annotations

import re

import pytest
import torch

from cvil.models import OscarVQA, instance_bce_with_logits

# The reference's key list (cvil-reference §1.4) as patterns; N = layer index.
_LAYER_KEYS = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
]


def reference_keys(num_layers: int, img_layernorm: bool) -> set[str]:
    keys = {f"bert.embeddings.{n}.weight" for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
    keys |= {f"bert.embeddings.LayerNorm.{p}" for p in ("weight", "bias")}
    for i in range(num_layers):
        keys |= {f"bert.encoder.layer.{i}.{k}.{p}" for k in _LAYER_KEYS for p in ("weight", "bias")}
    modules = ("bert.pooler.dense", "bert.img_embedding", "classifier") + (("bert.LayerNorm",) if img_layernorm else ())
    for mod in modules:
        keys |= {f"{mod}.weight", f"{mod}.bias"}
    return keys


def inputs(batch):
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask", "img_feats")}


@pytest.mark.parametrize("img_layernorm", [False, True])
def test_state_dict_keys_are_oscars(make_model, sizes, img_layernorm):
    model = make_model(use_img_layernorm=img_layernorm)
    state = model.state_dict()
    assert set(state) == reference_keys(2, img_layernorm)
    pattern = r"(bert\.(embeddings|encoder\.layer\.\d+|pooler|img_embedding|LayerNorm)|classifier)\..+"
    assert all(re.fullmatch(pattern, k) for k in state)
    assert state["bert.img_embedding.weight"].shape == (sizes["hidden"], sizes["img_dim"])
    assert state["classifier.weight"].shape == (sizes["labels"], sizes["hidden"])


@pytest.mark.parametrize("img_layernorm", [False, True])
def test_hidden_states_convention_and_region_embedding(make_model, batch, sizes, img_layernorm):
    model = make_model(use_img_layernorm=img_layernorm).eval()
    with torch.no_grad():
        out = model(**inputs(batch), output_hidden_states=True)
        enc = model.encode(**inputs(batch), output_hidden_states=True)
        T = batch["input_ids"].shape[1]
        text = model.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
        img = model.bert.img_embedding(batch["img_feats"])
        if img_layernorm:
            img = model.bert.LayerNorm(img)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (3, T + sizes["regions"], sizes["hidden"]) for h in out.hidden_states)
    # index 0 = embeddings: BERT text embeddings, then regions with no position/type embedding.
    torch.testing.assert_close(out.hidden_states[0], torch.cat([text, img], dim=1))
    torch.testing.assert_close(out.hidden_states[-1], enc.last_hidden_state)
    torch.testing.assert_close(out.pooled, torch.tanh(model.bert.pooler.dense(enc.last_hidden_state[:, 0])))
    torch.testing.assert_close(out.logits, model.classifier(out.pooled))
    assert model(**inputs(batch)).hidden_states is None


def test_sdpa_and_eager_agree(make_model, batch):
    sdpa = make_model(attn_implementation="sdpa").eval()
    eager = make_model(attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    with torch.no_grad():
        a = sdpa(**inputs(batch), output_hidden_states=True)
        b = eager(**inputs(batch), output_hidden_states=True)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_dynamic_and_fixed_padding_agree(make_model, batch_factory, sizes, attn):
    """Text padded to the longest example vs to 128: same logits, same hidden states at the real positions."""
    model = make_model(attn_implementation=attn).eval()
    text_lens, regions = (5, 9, 3), (4, 2, 3)
    dyn, fixed = batch_factory(text_lens, regions), batch_factory(text_lens, regions, pad_to=128)
    with torch.no_grad():
        a = model(**inputs(dyn), output_hidden_states=True)
        b = model(**inputs(fixed), output_hidden_states=True)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    T = dyn["input_ids"].shape[1]
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        for i, (n, r) in enumerate(zip(text_lens, regions)):
            torch.testing.assert_close(ha[i, :n], hb[i, :n], atol=1e-5, rtol=0)
            torch.testing.assert_close(ha[i, T : T + r], hb[i, 128 : 128 + r], atol=1e-5, rtol=0)


def test_padding_content_is_ignored(make_model, batch):
    model = make_model().eval()
    noisy = dict(inputs(batch))
    mask = noisy["attention_mask"].bool()
    T = noisy["input_ids"].shape[1]
    noisy["input_ids"] = noisy["input_ids"].masked_fill(~mask[:, :T], 7)
    noisy["img_feats"] = noisy["img_feats"] + (~mask[:, T:]).unsqueeze(-1) * 3.0
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs(batch)).logits, model(**noisy).logits, atol=1e-5, rtol=0)


def test_loss_is_bce_times_num_labels(make_model, batch):
    model = make_model().eval()
    out = model(**inputs(batch), labels=batch["labels"])
    x, y = out.logits.detach().double(), batch["labels"].double()
    p = torch.sigmoid(x)
    golden = -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).sum(dim=1).mean()
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.double(), golden, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(instance_bce_with_logits(out.logits, batch["labels"]), out.loss)


@pytest.mark.parametrize("img_layernorm", [False, True])
def test_gradient_reaches_every_parameter(make_model, batch, img_layernorm):
    model = make_model(use_img_layernorm=img_layernorm).train()
    model(**inputs(batch), labels=batch["labels"]).loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_parameter_groups_partition_the_model(make_model):
    model = make_model()
    head, enc = list(model.head_parameters()), list(model.encoder_parameters())
    assert {id(p) for p in head} == {id(model.classifier.weight), id(model.classifier.bias)}
    assert {id(p) for p in head} | {id(p) for p in enc} == {id(p) for p in model.parameters()}
    assert not {id(p) for p in head} & {id(p) for p in enc}


def test_init_is_bert_like(make_model):
    model = make_model()
    assert torch.count_nonzero(model.classifier.bias) == 0
    assert torch.count_nonzero(model.bert.img_embedding.bias) == 0
    assert abs(model.bert.img_embedding.weight.std().item() - 0.02) < 0.01


def test_bad_inputs_are_rejected(make_model, batch, sizes):
    model = make_model()
    bad = dict(inputs(batch), attention_mask=batch["attention_mask"][:, :-1])
    with pytest.raises(ValueError, match="attention_mask"):
        model(**bad)
    with pytest.raises(ValueError, match="attn_implementation"):
        make_model(attn_implementation="flash_attention_2")
    assert isinstance(model, OscarVQA)
