"""OSCAR+ for VQA: a post-LN BERT over `[CLS] question [SEP] tags [SEP]` followed by projected image regions.

Built from transformers' BERT parts (`BertEmbeddings`, `BertEncoder`, `BertPooler`) so the maths and the state-dict
names are BERT's; only what Oscar adds is written here:

- region tokens: `Linear(img_feature_dim -> hidden)` (`bert.img_embedding`), then the optional image LayerNorm
  (`bert.LayerNorm`, only when `config.use_img_layernorm`), then dropout. No position, token-type or embedding
  LayerNorm for regions; they are concatenated *after* the text.
- the encoder is driven layer by layer (not through `BertModel.forward`), because the input is not plain token
  embeddings; hidden states are therefore collected here, in HF order: index 0 = embeddings (text + regions),
  index i = output of layer i.
- VQA head: tanh pooler on position 0 -> dropout(hidden_dropout_prob) -> `classifier`; loss = BCE-with-logits
  (mean) x num_labels on soft targets, the reference's `instance_bce_with_logits`.

Attention mask: `attention_mask` is `[B, T+R]` with 1 = attend. It goes through transformers'
`create_bidirectional_mask`, the helper `BertModel` itself uses, which produces what the configured attention
expects: a 4-D bool mask for SDPA (or `None` when nothing is padded, so SDPA may pick a mask-free kernel) and a
4-D additive float mask (dtype min at masked keys) for eager. Oscar used -10000 instead of the dtype minimum; after
softmax both give exactly zero weight in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEmbeddings, BertEncoder, BertPooler

from cvil.models.checkpoint import load_model, save_safetensors_checkpoint
from cvil.models.config import check_attn_implementation


@dataclass
class OscarEncoding:
    """Encoder output without the head: what the KD teacher and student consume."""

    last_hidden_state: torch.Tensor  # [B, T+R, H]
    hidden_states: tuple[torch.Tensor, ...] | None  # num_layers + 1 entries, HF order, or None


@dataclass
class OscarOutput:
    """Output of `OscarVQA.forward`."""

    logits: torch.Tensor  # [B, num_labels]
    loss: torch.Tensor | None  # scalar, when labels were given
    pooled: torch.Tensor  # [B, H], tanh pooler output (before the classifier dropout)
    hidden_states: tuple[torch.Tensor, ...] | None


def instance_bce_with_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over all entries, times the number of labels (= sum over classes, batch mean).

    Computed in fp32 so the loss is the same under autocast.
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="mean")
    return loss * logits.size(1)


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy against the soft scores normalised to a distribution, averaged over the batch
    (`train.loss: ce`, the paper's "we minimize the cross-entropy loss"; the released code used BCE).

    Per example: target = labels / labels.sum() (the VQA soft scores min(1, #annotators/3) are not a distribution:
    several answers can score 1), loss = -Σ_c target_c · log_softmax(logits)_c. A row whose scores are all zero has
    no answer to put mass on: it contributes 0 but still counts in the batch mean, so the loss is a mean over
    examples like the BCE and the example-count normalisation of accumulation and DDP holds. fp32 throughout.
    """
    labels = labels.float()
    mass = labels.sum(dim=1, keepdim=True)
    target = labels / mass.clamp(min=torch.finfo(torch.float32).tiny)  # all-zero rows stay all zero
    per_example = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    return per_example.mean()


TASK_LOSSES = {"bce": instance_bce_with_logits, "ce": soft_cross_entropy}  # `train.loss`


class OscarBert(nn.Module):
    """The `bert.*` part: BERT embeddings/encoder/pooler plus Oscar's image embedding (and optional image LN)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.img_embedding = nn.Linear(config.img_feature_dim, config.hidden_size)
        if config.use_img_layernorm:
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.img_layer_norm_eps)
        self.img_dropout = nn.Dropout(config.hidden_dropout_prob)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, img_feats: torch.Tensor) -> torch.Tensor:
        """Text embeddings (word + position + type, LN, dropout) followed by the region embeddings."""
        text = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        img = self.img_embedding(img_feats.to(self.img_embedding.weight.dtype))
        if self.config.use_img_layernorm:
            img = self.LayerNorm(img)
        return torch.cat([text, self.img_dropout(img)], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        img_feats: torch.Tensor,
        output_hidden_states: bool = False,
    ) -> OscarEncoding:
        batch, text_len = input_ids.shape
        expected = (batch, text_len + img_feats.size(1))
        if tuple(attention_mask.shape) != expected:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected [B, T+R] = {expected}")
        hidden = self.embed(input_ids, token_type_ids, img_feats)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        states: list[torch.Tensor] | None = [hidden] if output_hidden_states else None
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
            if states is not None:
                states.append(hidden)
        return OscarEncoding(last_hidden_state=hidden, hidden_states=tuple(states) if states is not None else None)


class OscarVQA(nn.Module):
    """OSCAR+ with a linear VQA head. State-dict keys are Oscar's (`bert.*`, `classifier.*`).

    `config` comes from `cvil.models.config.oscar_config` (or `config_from_dict`); its `attn_implementation`
    ("sdpa" by default, or "eager") selects the attention kernel.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config._attn_implementation = check_attn_implementation(config._attn_implementation)
        self.config = config
        self.bert = OscarBert(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.apply(self._init_module)

    def _init_module(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) weights, zero biases, LayerNorm 1/0."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def reset_parameters(self, prefixes: tuple[str, ...]) -> None:
        """Re-initialise the submodules whose qualified names start with one of `prefixes` (e.g. "classifier")."""
        for name, module in self.named_modules():
            if name and name.startswith(prefixes):
                self._init_module(module)

    # -- forward -------------------------------------------------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        img_feats: torch.Tensor,
        output_hidden_states: bool = False,
    ) -> OscarEncoding:
        """Sequence output (and per-layer hidden states) without pooler or classifier."""
        return self.bert(input_ids, token_type_ids, attention_mask, img_feats, output_hidden_states)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        img_feats: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> OscarOutput:
        enc = self.encode(input_ids, token_type_ids, attention_mask, img_feats, output_hidden_states)
        pooled = self.bert.pooler(enc.last_hidden_state)
        logits = self.classifier(self.dropout(pooled))
        loss = instance_bce_with_logits(logits, labels) if labels is not None else None
        return OscarOutput(logits=logits, loss=loss, pooled=pooled, hidden_states=enc.hidden_states)

    # -- parameter groups for staged training ---------------------------------------------------------------------
    def head_parameters(self) -> Iterator[nn.Parameter]:
        """`classifier.*`: what the head-only stages train (the reference freezes everything else)."""
        return self.classifier.parameters()

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Everything but the classifier (`bert.*`, including pooler and image embedding)."""
        return self.bert.parameters()

    # -- checkpoints --------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        num_labels: int | None = None,
        img_feature_dim: int | None = None,
        attn_implementation: str | None = None,
        **config_overrides: Any,
    ) -> OscarVQA:
        """Load an Oscar-format folder, one of our safetensors saves, or a text-only HF BERT folder (student init).

        See `cvil.models.checkpoint.load_model` for the rules (label-set change, missing/mis-shaped keys). The
        model is returned in eval mode, as pytorch-transformers' `from_pretrained` did; the `LoadReport` is
        attached as `model.load_report`.
        """
        model, report = load_model(
            folder,
            model_cls=cls,
            num_labels=num_labels,
            img_feature_dim=img_feature_dim,
            attn_implementation=attn_implementation,
            **config_overrides,
        )
        model.load_report = report
        return model

    def save_pretrained(self, folder: str | Path) -> None:
        """Write `model.safetensors` + `config.json` (nothing else) into `folder`."""
        save_safetensors_checkpoint(self, folder)
