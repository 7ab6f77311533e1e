"""The model configuration: a transformers `BertConfig` carrying Oscar's extra fields.

Why a plain `BertConfig` and not a subclass: Oscar checkpoints ship a BERT `config.json` with a few extra keys
(`img_feature_dim`, `num_labels`, optionally `use_img_layernorm`), and transformers' BERT building blocks read
their sizes from a `BertConfig`. Keeping one config object for both avoids a second source of truth.

transformers 5 specifics handled here (see shared ENV notes):
- `attn_implementation` must be set on the config; an unset value (`None`) makes transformers' mask helper return
  *no mask at all*, so we always set it and only accept the implementations the tests cover.
- `num_labels` is a property backed by an `id2label` map; `to_dict()` would write thousands of `LABEL_i` entries,
  so `config_to_dict` writes `num_labels` instead (the Oscar form).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import BertConfig

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
DEFAULT_ATTN = "sdpa"

# Fields that belong to transformers' runtime state or to the label map, never written to our config.json.
_DROP_ON_SAVE = ("id2label", "label2id", "_name_or_path", "transformers_version", "dtype", "torch_dtype")


def check_attn_implementation(name: str | None) -> str:
    """Return the attention implementation, or raise for one the model is not tested with."""
    name = name or DEFAULT_ATTN
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation {name!r} is not supported; expected one of {ATTN_IMPLEMENTATIONS}")
    return name


def oscar_config(
    *,
    img_feature_dim: int,
    num_labels: int,
    use_img_layernorm: bool = False,
    img_layer_norm_eps: float = 1e-12,
    attn_implementation: str = DEFAULT_ATTN,
    **bert_fields: Any,
) -> BertConfig:
    """Build the model config. `bert_fields` are ordinary `BertConfig` fields (hidden_size, num_hidden_layers, ...).

    Defaults are BERT-base's (the transformers defaults), which is what the reference's checkpoints use.
    """
    if img_feature_dim <= 0 or num_labels <= 0:
        raise ValueError(f"img_feature_dim and num_labels must be positive, got {img_feature_dim}, {num_labels}")
    for key in ("id2label", "label2id"):
        bert_fields.pop(key, None)
    return BertConfig(
        img_feature_dim=int(img_feature_dim),
        num_labels=int(num_labels),
        use_img_layernorm=bool(use_img_layernorm),
        img_layer_norm_eps=float(img_layer_norm_eps),
        attn_implementation=check_attn_implementation(attn_implementation),
        **bert_fields,
    )


def config_from_dict(raw: dict[str, Any], **overrides: Any) -> BertConfig:
    """Build the model config from a `config.json` dict (Oscar's, an HF BERT's or ours) plus caller overrides.

    `num_labels` is taken from the dict's `num_labels`, else from the length of its `id2label`; an override wins.
    Unknown keys of old pytorch-transformers configs (`torchscript`, `loss_type`, ...) are kept as attributes,
    which is harmless. Overrides set to `None` are ignored, so callers can pass optional arguments straight through.
    """
    fields = {k: v for k, v in raw.items() if k not in _DROP_ON_SAVE and k != "model_type"}
    if "num_labels" not in fields and raw.get("id2label"):
        fields["num_labels"] = len(raw["id2label"])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    missing = [k for k in ("img_feature_dim", "num_labels") if fields.get(k) is None]
    if missing:
        raise ValueError(f"model config lacks {missing}; pass them explicitly")
    return oscar_config(**fields)


def config_to_dict(config: BertConfig) -> dict[str, Any]:
    """The config as written to `config.json`: BERT fields + Oscar extras, `num_labels` instead of a label map."""
    data = {k: v for k, v in config.to_dict().items() if k not in _DROP_ON_SAVE}
    data["num_labels"] = config.num_labels
    data["architectures"] = ["OscarVQA"]
    return data


def read_config_json(folder: str | Path) -> dict[str, Any]:
    """The raw `config.json` of a checkpoint folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    return json.loads(path.read_text(encoding="utf-8"))
