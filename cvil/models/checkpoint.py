"""Checkpoint I/O for `OscarVQA`: Oscar-format folders, our safetensors folders, and text-only HF BERT folders.

Folder kinds (decided by `config.json`, then by the keys):
- **oscar**: `config.json` has `img_feature_dim`, or the weights have `bert.img_embedding.*`. Every model key is
  required. This covers a real OSCAR+ checkpoint (`pytorch_model.bin`, pytorch-transformers key names, maybe old
  LayerNorm `gamma/beta` names, maybe the image LayerNorm `bert.LayerNorm.*`), the synthetic teacher saved by
  `save_oscar_checkpoint`, and our own `model.safetensors` saves.
- **bert**: anything else, i.e. an mBERT-style `BertModel`/`BertForPreTraining` folder used to initialise the
  student, as the reference does. Embeddings/encoder/pooler are filled; `bert.img_embedding.*` and `classifier.*`
  (and `bert.LayerNorm.*` if asked for) are freshly initialised N(0, initializer_range)/0. The caller must give
  `img_feature_dim` and `num_labels`. Pretraining heads (`cls.*`) are reported as unexpected and ignored.

Rules (the reference's pytorch-transformers `from_pretrained` raised on any size mismatch, and the cViL release
needed a missing script to drop the classifier before changing the label set; here that drop is explicit):
- a shape mismatch is an error naming the keys and both shapes, except `classifier.*` when the caller passes a
  `num_labels` different from the checkpoint's: then the classifier is dropped and re-initialised, and the report
  says so;
- missing required keys are an error naming them; unexpected keys are reported and logged, not fatal;
- `embeddings.position_ids` / `embeddings.token_type_ids` (HF-only buffers) are ignored.
"""

from __future__ import annotations

from cvil.errors import CvilError

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cvil.fileio import atomic_write, write_manifest
from cvil.models.config import config_from_dict, config_to_dict, read_config_json

# The model class is the caller's (`OscarVQA.from_pretrained` passes itself): `cvil.models.oscar` imports this module,
# so nothing here imports it back. A model here is an `OscarVQA`-shaped module: built from a `BertConfig` as
# `model_cls(config)`, Oscar key names in its state dict, the config as `.config`.
Model = TypeVar("Model", bound=nn.Module)

logger = logging.getLogger(__name__)

SAFETENSORS_NAME = "model.safetensors"
BIN_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.txt"

_HF_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_BERT_PARTS = ("embeddings.", "encoder.", "pooler.")
_IMG_EMBEDDING = "bert.img_embedding."
_IMG_LAYERNORM = "bert.LayerNorm."
_CLASSIFIER = "classifier."
_MAX_LISTED = 12  # keys listed in an error message before "... and N more"


class CheckpointError(CvilError, ValueError, RuntimeError):
    """A checkpoint cannot be used: it does not fit the model (missing keys or mis-shaped tensors), or a training
    checkpoint is missing or fails its checksum (`cvil.train.checkpointing`); the message names which.

    The one class for both (it was two: a ValueError here, a RuntimeError there), so it stays both."""


@dataclass
class LoadReport:
    """What happened while loading a checkpoint, by key name."""

    source: str
    kind: str  # "oscar" or "bert"
    missing: list[str] = field(default_factory=list)  # model keys not in the checkpoint, freshly initialised
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model has no place for (ignored)
    dropped: list[str] = field(default_factory=list)  # checkpoint keys dropped on purpose (label-set change)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint name, model name)
    ignored_buffers: list[str] = field(default_factory=list)
    label_change: tuple[int, int] | None = None  # (checkpoint num_labels, new num_labels)

    def summary(self) -> str:
        parts = [f"loaded {self.kind} checkpoint {self.source}"]
        if self.label_change:
            old, new = self.label_change
            parts.append(f"label set changed {old} -> {new}: dropped and re-initialised {_names(self.dropped)}")
        if self.missing:
            parts.append(f"freshly initialised (not in checkpoint): {_names(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ignored: {_names(self.unexpected)}")
        if self.renamed:
            parts.append(f"{len(self.renamed)} keys renamed (e.g. {self.renamed[0][0]} -> {self.renamed[0][1]})")
        if self.ignored_buffers:
            parts.append(f"ignored HF buffers: {_names(self.ignored_buffers)}")
        return "; ".join(parts)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


# -- reading ----------------------------------------------------------------------------------------------------------
def read_state_dict(folder: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The raw tensors of a folder: `model.safetensors` if present, else `pytorch_model.bin` (weights_only)."""
    folder = Path(folder)
    safetensors_path, bin_path = folder / SAFETENSORS_NAME, folder / BIN_NAME
    if safetensors_path.is_file():
        return load_file(str(safetensors_path), device="cpu"), safetensors_path
    if bin_path.is_file():
        from cvil.torch_files import load_torch_file

        state = load_torch_file(bin_path, what="an Oscar checkpoint (pytorch_model.bin)")
        if not isinstance(state, dict):
            raise CheckpointError(f"{bin_path} does not hold a state dict (got {type(state).__name__})")
        return state, bin_path
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {BIN_NAME} in {folder}")


def normalise_keys(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]], list[str]]:
    """Map checkpoint names onto Oscar's: old LayerNorm `gamma/beta` -> `weight/bias`, a bare `BertModel`'s
    `embeddings./encoder./pooler.` -> `bert.*`; drop HF-only buffers. Returns (state, renamed, ignored buffers)."""
    out: dict[str, torch.Tensor] = {}
    renamed: list[tuple[str, str]] = []
    ignored: list[str] = []
    for key, tensor in state.items():
        if key.endswith(_HF_BUFFERS):
            ignored.append(key)
            continue
        new = key
        head, _, last = new.rpartition(".")
        if last in ("gamma", "beta"):
            new = f"{head}.{'weight' if last == 'gamma' else 'bias'}"
        if new.startswith(_BERT_PARTS):
            new = "bert." + new
        if new != key:
            renamed.append((key, new))
        out[new] = tensor
    return out, renamed, ignored


def _is_oscar(raw_config: dict[str, Any], state: dict[str, torch.Tensor]) -> bool:
    return raw_config.get("img_feature_dim") is not None or any(k.startswith(_IMG_EMBEDDING) for k in state)


def _checkpoint_num_labels(raw_config: dict[str, Any], state: dict[str, torch.Tensor]) -> int | None:
    if raw_config.get("num_labels") is not None:
        return int(raw_config["num_labels"])
    if raw_config.get("id2label"):
        return len(raw_config["id2label"])
    weight = state.get(_CLASSIFIER + "weight")
    return int(weight.shape[0]) if weight is not None else None


# -- loading -----------------------------------------------------------------------------------------------------------
def load_model(
    folder: str | Path,
    *,
    model_cls: type[Model],
    num_labels: int | None = None,
    img_feature_dim: int | None = None,
    attn_implementation: str | None = None,
    **config_overrides: Any,
) -> tuple[Model, LoadReport]:
    """Build a `model_cls` (`OscarVQA`) from a checkpoint folder (see the module docstring). Returned in eval mode."""
    raw_config = read_config_json(folder)
    raw_state, path = read_state_dict(folder)
    state, renamed, ignored = normalise_keys(raw_state)
    oscar = _is_oscar(raw_config, state)
    report = LoadReport(source=str(path), kind="oscar" if oscar else "bert", renamed=renamed, ignored_buffers=ignored)
    overrides = dict(config_overrides, attn_implementation=attn_implementation)

    if oscar:
        if raw_config.get("img_feature_dim") is None and img_feature_dim is None:
            img_feature_dim = int(state[_IMG_EMBEDDING + "weight"].shape[1])
        if raw_config.get("use_img_layernorm") is None and "use_img_layernorm" not in overrides:
            # The reference's run_vqa never sets the flag; OSCAR+ pretraining did, so trust the keys.
            overrides["use_img_layernorm"] = any(k.startswith(_IMG_LAYERNORM) for k in state)
        old_labels = _checkpoint_num_labels(raw_config, state)
        if num_labels is not None and old_labels is not None and num_labels != old_labels:
            report.label_change = (old_labels, num_labels)
            report.dropped = sorted(k for k in state if k.startswith(_CLASSIFIER))
            state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER)}
        num_labels = num_labels if num_labels is not None else old_labels
        fresh_prefixes: tuple[str, ...] = (_CLASSIFIER,) if report.label_change else ()
    else:
        given = {"img_feature_dim": img_feature_dim, "num_labels": num_labels}
        needed = [name for name, value in given.items() if value is None]
        if needed:
            raise CheckpointError(
                f"{folder} is a text-only BERT checkpoint; pass {' and '.join(needed)} to build the student"
            )
        overrides.setdefault("use_img_layernorm", False)
        fresh_prefixes = (_IMG_EMBEDDING, _IMG_LAYERNORM, _CLASSIFIER)
        report.unexpected = sorted(k for k in state if not k.startswith("bert."))
        state = {k: v for k, v in state.items() if k.startswith("bert.") and not k.startswith(fresh_prefixes)}

    config = config_from_dict(raw_config, num_labels=num_labels, img_feature_dim=img_feature_dim, **overrides)
    model = model_cls(config)
    _fill(model, state, fresh_prefixes, report, folder)
    model.eval()
    logger.info(report.summary())
    if report.unexpected and report.kind == "oscar":  # a BERT folder's pretraining heads are expected leftovers
        logger.warning("checkpoint %s: unexpected keys ignored: %s", path, _names(report.unexpected))
    return model, report


def _fill(
    model: nn.Module, state: dict[str, torch.Tensor], fresh_prefixes: tuple[str, ...], report: LoadReport, folder: Any
) -> None:
    """Copy `state` into `model`; keys under `fresh_prefixes` may be absent (they keep their fresh init)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    required = [k for k in missing if not k.startswith(fresh_prefixes)]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch for {_names(mismatched)}")
    if required:
        problems.append(f"missing required keys {_names(required)}")
    if problems:
        raise CheckpointError(f"cannot load {folder} into OscarVQA: " + "; ".join(problems))
    report.missing = missing
    report.unexpected = sorted(set(report.unexpected) | {k for k in state if k not in expected})
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


# -- saving ------------------------------------------------------------------------------------------------------------
def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _write_config(model: nn.Module, folder: Path) -> None:
    text = json.dumps(config_to_dict(model.config), indent=2, sort_keys=True) + "\n"
    atomic_write(folder / CONFIG_NAME, text)


def save_safetensors_checkpoint(model: nn.Module, folder: str | Path) -> Path:
    """Our format: `model.safetensors` + `config.json`, nothing else. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = _cpu_state(model)
    atomic_write(folder / SAFETENSORS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    _write_config(model, folder)
    return folder


def save_oscar_checkpoint(model: nn.Module, folder: str | Path, vocab_file: str | Path | None = None) -> Path:
    """The original Oscar format: `pytorch_model.bin` (torch.save of the Oscar-named state dict) + `config.json`
    (+ `vocab.txt` copied from `vocab_file`, a vocab file or a tokenizer folder holding one) + the checksum manifest
    `SHA256SUMS` over those files (`cvil.fileio.write_manifest`; checked when the folder is loaded as `kd.teacher` or
    `model.init`). The synthetic teacher is saved this way so it goes through the same loading path as a real OSCAR+
    checkpoint (which has no manifest)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = _cpu_state(model)
    atomic_write(folder / BIN_NAME, lambda p: torch.save(state, p))
    _write_config(model, folder)
    names = [BIN_NAME, CONFIG_NAME]
    if vocab_file is not None:
        source = Path(vocab_file)
        source = source / VOCAB_NAME if source.is_dir() else source
        if not source.is_file():
            raise FileNotFoundError(f"no vocabulary file at {source}")
        atomic_write(folder / VOCAB_NAME, lambda p: shutil.copyfile(source, p))
        names.append(VOCAB_NAME)
    write_manifest(folder, names)
    return folder
