"""Run configuration: frozen dataclasses loaded from YAML files plus `key=value` overrides.

One resolved `RunConfig` describes a whole run (a schedule of stages). It is built from a YAML file (which may
`extends:` another file, merged depth-first), then dotted `key=value` overrides from the command line
(`train.seed=3`, `kd.layers=[12]`, `stages.0.epochs=2`). Unknown keys fail with a "did you mean", values are
type-checked against the dataclass annotations, and the resolved config is saved with every run
(`to_yaml`), so a run can always be re-created from its own artifact.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cvil.config_values import check_values
from cvil.errors import ConfigError  # defined beside the other error types; `cvil.config.ConfigError` stays its name
from cvil.suggest import did_you_mean


# The folder holding the shipped `configs/` (inside the package, so a pip-installed cvil has them; the repository's
# top-level `configs` is a link to it). Shipped grids name their cells' configs relative to this folder.
SHIPPED_CONFIG_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelConfig:
    """The student: its initialisation and the knobs of the OSCAR-style encoder."""

    init: str = ""  # HF BERT folder (mBERT-like) or Oscar-format checkpoint folder; "" = from scratch (teacher)
    tokenizer: str = ""  # tokenizer folder; "" = the init folder
    from_scratch: dict = field(default_factory=dict)  # BertConfig kwargs when init == "" (hidden_size, ...)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    hidden_dropout_prob: float = 0.3  # the reference's --drop_out (embeddings, layers, image embedding, head)
    attention_probs_dropout_prob: float = 0.1
    use_img_layernorm: bool = False
    # False: the tanh pooler keeps its initial weights in every stage. For the from-scratch stand-ins: a trained
    # pooler saturates (|tanh| > 0.9 in >90 % of units within ~1k steps at lr 1e-3) while fitting the answer prior,
    # which cuts the gradient of every question type not learnt yet: the teacher then learnt one of colour / position
    # and sat at the other's prior for most seeds. A fixed random pooler stays in its linear range.
    train_pooler: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives and how batches are built."""

    root: str = "worlds/small"  # holds vqa/ and vg/ (and tokenizers/ for the synthetic world)
    max_regions: int = 50
    max_text_len: int = 128
    dynamic_padding: bool = True  # pad text to the longest in the batch, not to max_text_len
    batch_size: int = 32  # per process
    eval_batch_size: int = 128
    num_workers: int = 0
    pin_memory: bool = False
    max_train_examples: int = 0  # 0 = all; for smoke runs
    # answers: the folder's trainval_ans2label.pkl; hindi_merged: train and predict over hi_ans2label.json's merged
    # Hindi classes (`cvil data hindi-classes`), soft scores of merged answers combined by max
    label_set: Literal["answers", "hindi_merged"] = "answers"
    # language files (or folders of *.yaml) beside the shipped ones (cvil/languages, README "Adding a language"):
    # a stage's `lang` may name any language they declare
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class KDConfig:
    """The cViL distillation objective (reference §2): which positions, which layers, which reduction."""

    teacher: str = ""  # Oscar-format teacher folder
    teacher_tokenizer: str = ""  # "" = the teacher folder
    teacher_cache: str = ""  # folder with train/ and val/ caches (cvil.distill.teacher_cache); "" = online teacher
    cls: bool = True
    image: bool = True
    tags: bool = True
    codemix: bool = True
    layers: tuple[int, ...] = (3, 6, 9, 12)  # teacher layers (HF hidden_states index); student mapped proportionally
    layer_weights: tuple[float, ...] = ()  # λ_m per layer; () = all 1 (the released code)
    reduction: Literal["pooled", "per_component"] = "pooled"
    logit_weight: float = 0.0  # teacher-logit BCE term (disabled in the released code)
    fix_tag_continuation: bool = False  # the reference's rare continuation overrun, faithful by default
    # "linear": a learned student -> teacher hidden map (TinyBERT's W_h, one for all layers), trained with the
    # student and saved with it (key `kd_projection.*`); needed when the hidden sizes differ. Off in the paper.
    projection: Literal["none", "linear"] = "none"
    # code-mix draws replace n = min(max(1, round(rate * count)), #candidates) words (Python round); count = the
    # student's subwords of the question (the release) or the target words of its alignment (the paper's 15 % of words)
    codemix_rate: float = 0.15
    codemix_unit: Literal["subwords", "words"] = "subwords"


@dataclass(frozen=True)
class StageConfig:
    """One stage of a schedule: data, length, learning rate, what trains, and what is optimised."""

    name: str = "stage"
    dataset: str = "vg"  # subfolder of data.root: vqa (VQA v2 / mVQA) or vg (JVG)
    lang: str = "ja"  # lang-default: the student's question language (en for the teacher); a cvil.languages code
    epochs: float = 1.0
    lr: float = 5e-5
    trainable: Literal["head", "all"] = "all"
    objective: Literal["task", "kd", "task+kd"] = "task"
    task_weight: float = 1.0  # weight of the task loss when objective has both (0 in the released KD code)
    kd_weight: float = 1.0
    reset_head: bool = False  # drop classifier.* before the stage (label set changes)
    question_types: tuple[str, ...] = ()  # train/val only on rows whose `question_type` is listed; () = all rows
    eval_every: int = 0  # optimizer steps between evaluations; 0 = at the end of each epoch only
    select: Literal["val_score", "val_kd_loss", "last"] = "val_score"  # which checkpoint ends the stage

    @property
    def distils(self) -> bool:
        """Whether the stage's loss has a KD term (and so needs the teacher's side of the batch)."""
        return self.objective != "task"

    @property
    def task_loss_weight(self) -> float:
        """The weight of the task loss: `task_weight` when the stage mixes both losses, 1 for task, 0 for pure KD."""
        return self.task_weight if self.objective == "task+kd" else float(self.objective == "task")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop, shared by every stage (reference §2.8)."""

    seed: int = 88
    weight_decay: float = 0.05
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    grad_accum: int = 1  # micro-batches per optimizer step; the loss is normalised over the whole window
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on capable GPUs, fp32 on CPU
    # the task loss: bce = BCE-with-logits x num_labels on the soft scores (the released code); ce = softmax
    # cross-entropy against the soft scores normalised per example (the paper's text; cvil.models.oscar)
    loss: Literal["bce", "ce"] = "bce"
    # pooler/classifier in a stage whose loss never reaches them (pure KD): frozen = out of the optimiser, unchanged;
    # decay_only = in the optimiser with zero gradient, so AdamW's weight decay alone shrinks them (the release)
    kd_head: Literal["frozen", "decay_only"] = "frozen"
    optimizer_impl: Literal["auto", "fused", "foreach", "plain"] = "auto"
    compile: bool = False
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    log_every: int = 0  # optimizer steps between logged training metrics; 0 = about 100 points per stage
    checkpoint_every: int = 200  # optimizer steps between resumable checkpoints (and at every epoch end)
    # > 0: seconds between resumable checkpoints instead of `checkpoint_every` steps (epoch ends still save); rank 0
    # writes them in a background thread (cvil.train.checkpointing.BackgroundSaver), the step loop pays a CPU copy
    checkpoint_every_s: float = 0.0
    progress: Literal["auto", "on", "off"] = "auto"  # a bar on a terminal, periodic one-line reports elsewhere
    deterministic: bool = True


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow settings; rank 0 alone talks to the store."""

    enabled: bool = True
    uri: str = ""  # "" = MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working folder
    experiment: str = "cvil"
    run_name: str = ""
    parent_run_id: str = ""
    tags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """A whole run: a named schedule of stages plus everything they share."""

    schedule: str = "baseline"
    output_dir: str = "runs/default"
    stages: tuple[StageConfig, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluate: tuple[str, ...] = ("val", "test")  # splits scored at the end with the official metrics
    export_oscar: bool = False  # also save the final model as an Oscar-format checkpoint (the teacher stand-in)


# ---------------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (following `extends:`), apply `key=value` overrides, and validate the result."""
    raw: dict = _read_yaml_tree(Path(path)) if path else {}
    for item in overrides:
        key, value = _split_override(item)
        _set_dotted(raw, key, value)
    cfg = from_dict(RunConfig, raw, where="")
    check_values(cfg)
    return cfg


def _read_yaml_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular `extends:` chain {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    merged = _read_yaml_tree((path.parent / base), seen + (path,))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _split_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(part, node, dotted)]
            continue
        if part == "tags" and parts[i - 1 : i] == ["tracking"]:  # tag names contain dots: keep the rest whole
            node.setdefault("tags", {})[".".join(parts[i + 1 :])] = value
            return
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(last, node, dotted)] = value
    else:
        node[last] = value


def _list_index(part: str, node: list, dotted: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override {dotted!r}: {part!r} is not an index of a list of {len(node)} items")
    return int(part)


# ------------------------------------------------------------------------------------------------ validation


def from_dict(cls: type, data: Any, *, where: str) -> Any:
    """Build dataclass `cls` from plain data, checking keys and types; errors name the dotted key."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        hint = did_you_mean(key, names, show=lambda n: _join(where, n)) or f"; valid keys: {', '.join(names)}"
        raise ConfigError(f"unknown config key {_join(where, key)!r}{hint}")
    kwargs = {k: _coerce(hints[k], v, where=_join(where, k)) for k, v in data.items()}
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _switch_word(value: Any, allowed: tuple) -> Any:
    """YAML 1.1 reads `on`/`off`/`yes`/`no` as booleans: for an on/off choice, take true/false (and their spellings)
    as "on"/"off", so `train.progress=on` means what it says."""
    if "on" not in allowed or "off" not in allowed:
        return value
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return "on" if value.lower() in ("true", "yes", "on") else "off"
    return value


def _coerce(tp: Any, value: Any, *, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin is Literal:
        value = _switch_word(value, args)
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in args:
            try:
                return _coerce(arg, value, where=where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value] if not isinstance(value, str) else value.split(",") if value else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where=f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where=f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


# ------------------------------------------------------------------------------------------------- output


def to_dict(cfg: Any) -> Any:
    """Plain data (lists, dicts, scalars) for YAML and for re-loading."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted flat params (`stages.1.lr`, `kd.layers`), as MLflow params and grid keys."""
    out: dict[str, Any] = {}
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out.update(flatten(item, f"{name}.{i}."))
        else:
            out[name] = value
    return out


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)


def config_hash(cfg: RunConfig, *, with_output_dir: bool = False) -> str:
    """SHA-256 of the resolved config without its `tracking` section and `output_dir`: what makes two runs the same
    experiment.

    Grids use it to skip cells already finished with the same settings; resume uses it to refuse a checkpoint
    written by a different config. Where the run lives is not part of it, so a moved run folder still resumes
    (`with_output_dir=True` gives the hash of cvil before that change, which resume still accepts).
    """
    import hashlib
    import json

    data = to_dict(cfg)
    data.pop("tracking", None)
    data.get("train", {}).pop("checkpoint_every_s", None)  # when to save changes nothing trained (and came later)
    if not data.get("data", {}).get("languages", True):  # added later: an empty list keeps the hashes of before
        data["data"].pop("languages")
    if not with_output_dir:
        data.pop("output_dir", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
