"""Building the models a run needs and shaping them per stage (head size, what trains).

The student starts from `model.init` (an mBERT-style HF BERT folder, or an Oscar-format/our own checkpoint), or
from scratch for the TEACHER schedule. A model folder that carries cvil's checksum manifest (`SHA256SUMS`: a run's
`final/`, an Oscar export) is verified before it is loaded, as `model.init` or as `kd.teacher`; one without (a
downloaded checkpoint) loads as it is. Per stage, the classifier is re-initialised when the label set changes or
the stage asks for it (the reference's missing `remove-classifier.py`), and parameters are frozen as the stage says:
head-only stages train `classifier.*` alone (as the reference's `--only_classifier`); a pure KD stage freezes the
pooler and the classifier, which the KD loss never reaches, so DDP needs no `find_unused_parameters`
(`train.kd_head: frozen`, the default). The reference instead kept them in the optimiser with a zero gradient, so
AdamW's decoupled weight decay alone shrank them by ≈0.88 over the stage: `train.kd_head: decay_only` does that (the
objective adds them × 0 to the loss, so every parameter DDP wraps gets a gradient).
"""

from __future__ import annotations

from cvil.errors import CvilError

import logging
from pathlib import Path

import torch
from torch import nn

from cvil.config import ConfigError, KDConfig, RunConfig, StageConfig
from cvil.models.config import oscar_config
from cvil.models.oscar import OscarVQA
from cvil.train.checkpointing import atomic_torch_save, verified_torch_load, verify_manifest
from cvil.data.label_sets import label_maps
from cvil.data.split_features import open_split_features
from cvil.train.data_setup import dataset_folder

log = logging.getLogger(__name__)


class ResumeError(CvilError, ValueError):
    """A checkpoint cannot be resumed by this run (written with another config)."""


def _first_stage_shapes(cfg: RunConfig) -> tuple[int, int]:
    """(num_labels, img_feature_dim) of the first stage's dataset."""
    folder = dataset_folder(cfg.data, cfg.stages[0].dataset)
    # a stale store is packed again when the stage starts; that pass names any image of another width
    dim = open_split_features(folder, "train").dim
    return len(label_maps(folder, cfg.data.label_set)), dim


def build_student(cfg: RunConfig, device: torch.device) -> OscarVQA:
    """The student, for a config that passed `cvil.train.preflight.check_run`."""
    num_labels, img_dim = _first_stage_shapes(cfg)
    torch.manual_seed(cfg.train.seed)  # fresh parts (image embedding, head) depend on the seed only
    dropout: dict = dict(hidden_dropout_prob=cfg.model.hidden_dropout_prob,
                   attention_probs_dropout_prob=cfg.model.attention_probs_dropout_prob)
    if cfg.model.init:
        verify_manifest(cfg.model.init, required=False)  # a folder cvil wrote (a run's final/) is checked first
        if cfg.model.use_img_layernorm:  # otherwise: the checkpoint decides (a BERT folder has none, as mBERT)
            dropout["use_img_layernorm"] = True
        model = OscarVQA.from_pretrained(cfg.model.init, num_labels=num_labels, img_feature_dim=img_dim,
                                         attn_implementation=cfg.model.attn_implementation, **dropout)
    else:
        from cvil.data.tokenizers import load_tokenizer

        vocab = len(load_tokenizer(cfg.model.tokenizer))
        model = OscarVQA(oscar_config(img_feature_dim=img_dim, num_labels=num_labels, vocab_size=vocab,
                                      use_img_layernorm=cfg.model.use_img_layernorm,
                                      attn_implementation=cfg.model.attn_implementation,
                                      **dropout, **cfg.model.from_scratch))
    if cfg.kd.projection == "linear":
        add_kd_projection(model, cfg)
    return model.to(device)


def add_kd_projection(model: OscarVQA, cfg: RunConfig) -> None:
    """`kd.projection: linear`: a learned map from the student's hidden size to the teacher's (as TinyBERT's W_h),
    a submodule of the student, so the optimiser, DDP, checkpoints and `save_pretrained` all carry it."""
    from cvil.models.config import read_config_json

    teacher_hidden = int(read_config_json(cfg.kd.teacher).get("hidden_size", 768))
    gen = torch.Generator(device="cpu").manual_seed(cfg.train.seed)
    proj = nn.Linear(model.config.hidden_size, teacher_hidden)
    with torch.no_grad():
        proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen) * model.config.initializer_range)
        proj.bias.zero_()
    model.kd_projection = proj


def kd_projection(model: nn.Module) -> nn.Module | None:
    """The student's KD projection (`kd.projection: linear`), or None."""
    return getattr(model, "kd_projection", None)


def load_teacher(cfg: RunConfig, device: torch.device) -> OscarVQA:
    if not cfg.kd.teacher:
        raise ConfigError("a KD stage needs kd.teacher (an Oscar-format teacher checkpoint folder)")
    verify_manifest(cfg.kd.teacher, required=False)  # cvil's Oscar export carries one; a downloaded OSCAR+ has none
    model = OscarVQA.from_pretrained(cfg.kd.teacher, attn_implementation=cfg.model.attn_implementation)
    return model.to(device).eval()


def prepare_head(model: OscarVQA, stage: StageConfig, num_labels: int, *, seed: int) -> None:
    """Give the model a fresh `num_labels` classifier when the label set changes or the stage asks for one."""
    if not stage.reset_head and model.classifier.out_features == num_labels:
        return
    old = model.classifier.out_features
    head = nn.Linear(model.config.hidden_size, num_labels, device=model.classifier.weight.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * model.config.initializer_range)
        head.bias.zero_()
    model.classifier = head
    model.config.num_labels = num_labels
    log.info("stage %s: classifier.* dropped and re-initialised (%d -> %d labels)", stage.name, old, num_labels)


def match_head(model: OscarVQA, state: dict) -> None:
    """Resize the classifier to the shape stored in `state` (before loading a checkpoint from another stage)."""
    rows = state["classifier.weight"].shape[0]
    if model.classifier.out_features != rows:
        model.classifier = nn.Linear(model.config.hidden_size, rows, device=model.classifier.weight.device)
        model.config.num_labels = rows


def kd_reaches_head(stage: StageConfig, kd: KDConfig) -> bool:
    """Whether any loss term of the stage reaches the pooler/classifier."""
    return stage.task_loss_weight != 0 or (stage.distils and kd.logit_weight != 0)


def set_trainable(model: OscarVQA, stage: StageConfig, kd: KDConfig, *, train_pooler: bool = True,
                  kd_head: str = "frozen") -> None:
    if stage.trainable == "head":
        model.requires_grad_(False)
        model.classifier.requires_grad_(True)
        return
    model.requires_grad_(True)
    if not kd_reaches_head(stage, kd) and kd_head == "frozen":
        model.bert.pooler.requires_grad_(False)
        model.classifier.requires_grad_(False)
    if kd_projection(model) is not None:  # trained only where KD reaches it (DDP needs a grad for every trainable)
        kd_projection(model).requires_grad_(stage.distils)
    if not train_pooler:  # `model.train_pooler: false` (see ModelConfig)
        model.bert.pooler.requires_grad_(False)


def decay_only_parameters(model: OscarVQA, stage: StageConfig, kd: KDConfig,
                          kd_head: str = "frozen") -> tuple[nn.Parameter, ...]:
    """`train.kd_head: decay_only`: the trainable pooler/classifier parameters no loss term of the stage reaches
    (they get an exact zero gradient, so only weight decay moves them); () otherwise."""
    if kd_head != "decay_only" or stage.trainable == "head" or kd_reaches_head(stage, kd):
        return ()
    return tuple(p for p in (*model.bert.pooler.parameters(), *model.classifier.parameters()) if p.requires_grad)


def save_weights(model: nn.Module, path: Path) -> None:
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def load_weights(path: Path) -> dict:
    return verified_torch_load(path)
