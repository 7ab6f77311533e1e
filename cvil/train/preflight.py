"""The pre-run gate: checks that fail fast, before any data is read or any model is built.

`check_run` is the one gate, entered once by `cvil.train.api.run` (so `cvil train`, `cvil demo`, the world builder,
grids and searches all pass it): value ranges (`config_values`), paths and stages, KD layers against the models'
depths, declared evaluations. All problems are listed in one `ConfigError`. Whether a resumed checkpoint matches the
config is checked once, where the checkpoint is loaded (`Trainer.load_resume_state`). `check_models` (the models
and tokenizers fit together) runs in the trainer once the tokenizers are loaded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cvil.errors import CvilError

from cvil.config import ConfigError, RunConfig, config_hash
from cvil.data import layout

log = logging.getLogger(__name__)


def resume_config_differs(progress: dict, cfg: RunConfig) -> bool:
    """Whether a checkpoint's saved progress comes from a run with another config (its hash is neither the config's
    nor, as older cvil wrote it, the config's with `output_dir`); a checkpoint without a hash is not refused."""
    saved = progress.get("config_hash")
    return bool(saved) and saved not in (config_hash(cfg), config_hash(cfg, with_output_dir=True))


def check_run(cfg: RunConfig) -> None:
    """Refuse a run that cannot work, naming every problem found (one `ConfigError`), before anything is built."""
    from cvil.config_values import check_values
    from cvil.train.config_checks import check_against_models
    from cvil.train.final_eval import check_declared_evaluation

    check_values(cfg)  # configs built in code (grids, searches) get the checks load_config makes
    problems = _path_problems(cfg)
    if problems:
        raise ConfigError("invalid run configuration:\n  - " + "\n  - ".join(problems))
    check_against_models(cfg)
    check_declared_evaluation(cfg)  # an undeclared dataset fails now, not after training


def _path_problems(cfg: RunConfig) -> list[str]:
    problems: list[str] = []
    if not cfg.stages:
        problems.append(f"schedule {cfg.schedule!r} has no stages")
    root = Path(cfg.data.root)
    if not root.is_dir():
        problems.append(f"data.root {str(root)!r} does not exist (build the synthetic world with `cvil synth`)")
    for i, stage in enumerate(cfg.stages):
        folder = root / stage.dataset
        if root.is_dir() and not layout.qla_path(folder, "train").is_file():
            problems.append(f"stages.{i} ({stage.name}): missing {layout.qla_path(folder, 'train')}")
        if stage.distils and not cfg.kd.teacher:
            problems.append(f"stages.{i} ({stage.name}) distils but kd.teacher is not set")
    distils = any(s.distils for s in cfg.stages)
    for key, path in (("model.init", cfg.model.init), ("model.tokenizer", cfg.model.tokenizer),
                      ("kd.teacher", cfg.kd.teacher if distils else ""),
                      ("kd.teacher_tokenizer", cfg.kd.teacher_tokenizer if distils else "")):
        if path and not Path(path).exists():
            problems.append(f"{key} {path!r} does not exist")
    if not cfg.model.init and not cfg.model.tokenizer:
        problems.append("training from scratch (model.init empty) needs model.tokenizer")
    if cfg.kd.projection == "linear" and not cfg.kd.teacher:
        problems.append("kd.projection: linear needs kd.teacher (its config.json gives the teacher's hidden size)")
    return problems


# -- models and tokenizers: read from the folders' config files, before any model is built -----------------------------
class PreflightError(CvilError, ValueError):
    """The models or tokenizers of a run cannot work together (each message names both sides)."""


@dataclass(frozen=True)
class _Shape:
    vocab_size: int | None
    hidden_size: int | None
    source: str


def _student_shape(cfg: RunConfig, tokenizer) -> _Shape:
    if cfg.model.init:
        raw = _config_json(cfg.model.init)
        return _Shape(raw.get("vocab_size"), raw.get("hidden_size"), f"model.init {cfg.model.init}")
    from cvil.models.config import oscar_config

    built = oscar_config(img_feature_dim=1, num_labels=1, vocab_size=len(tokenizer), **cfg.model.from_scratch)
    return _Shape(built.vocab_size, built.hidden_size, "model.from_scratch")


def _config_json(folder: str) -> dict:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _state_keys(folder: str) -> list[str]:
    """Tensor names of a checkpoint without reading the tensors (safetensors header, or a memory-mapped .bin)."""
    from cvil.models.checkpoint import BIN_NAME, SAFETENSORS_NAME

    folder_path = Path(folder)
    if (folder_path / SAFETENSORS_NAME).is_file():
        from safetensors import safe_open

        with safe_open(str(folder_path / SAFETENSORS_NAME), framework="pt") as f:
            return list(f.keys())
    if (folder_path / BIN_NAME).is_file():
        import torch

        return list(torch.load(folder_path / BIN_NAME, map_location="cpu", weights_only=True, mmap=True))
    return []


def _is_oscar_vqa(folder: str, raw: dict) -> bool:
    """An OSCAR(+) checkpoint has an image embedding (its config says `img_feature_dim`, or its keys show it)."""
    return raw.get("img_feature_dim") is not None or any("img_embedding." in k for k in _state_keys(folder))


def _vocab_problem(role: str, tok_name: str, tokenizer, shape: _Shape) -> str | None:
    if shape.vocab_size is not None and len(tokenizer) > int(shape.vocab_size):
        return (f"{role} tokenizer {tok_name} has {len(tokenizer)} tokens but {shape.source} has an embedding of "
                f"{shape.vocab_size} rows (ids >= {shape.vocab_size} would index past it): use the tokenizer the "
                "checkpoint was trained with")
    return None


def _warn_if_vocabularies_differ(cfg: RunConfig, tokenizer) -> None:
    init = Path(cfg.model.init) if cfg.model.init else None
    if not (cfg.model.tokenizer and init and any((init / f).is_file() for f in
                                                  ("vocab.txt", "tokenizer.json", "tokenizer_config.json"))):
        return
    from cvil.data.tokenizers import load_tokenizer

    own = load_tokenizer(init).get_vocab()
    given = tokenizer.get_vocab()
    if own != given:
        moved = next((t for t, i in sorted(given.items(), key=lambda x: x[1]) if own.get(t) != i), None)
        log.warning("model.tokenizer %s (%d tokens) differs from the vocabulary of model.init %s (%d tokens), "
                    "e.g. at %r: the student's embedding rows were trained for the init's vocabulary",
                    cfg.model.tokenizer, len(given), init, len(own), moved)


UNK_WARN_RATE = 0.05  # warn when at least this share of the target language's words are only [UNK] to the student
UNK_SAMPLE_ROWS = 500  # questions read from the start of the first stage's train file (no full parse)
_SAMPLE_BYTES = 4 << 20


def sample_questions(qla: Path, lang: str, rows: int = UNK_SAMPLE_ROWS) -> list[str]:
    """The `lang` questions of the first `rows` rows of a QLA JSON list, read from its first few MB only (a real
    train file is hundreds of MB): a cheap sample, not a validation (a damaged file is the data setup's to report)."""
    try:
        with open(qla, encoding="utf-8", errors="replace") as fh:
            text = fh.read(_SAMPLE_BYTES)
    except OSError:
        return []
    decoder, out = json.JSONDecoder(), []
    pos = text.find("[") + 1
    while pos and len(out) < rows:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            row, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(row, dict):
            question = row.get(lang, row.get("q") if lang == "en" else None)
            if isinstance(question, str) and question.strip():
                out.append(question)
    return out


def unknown_word_rate(tokenizer, questions: list[str], lang: str) -> tuple[float, int, str | None]:
    """(share of words, words seen, the most frequent such word) of the words of `questions` that `tokenizer` reads
    as its unknown token (`[UNK]`) or partly so. Each question is tokenised whole, as training does (a Japanese word
    alone would tokenise differently: `ます` is a word-piece continuation inside `あります`), and a word counts as
    unknown when an `[UNK]` token covers any of its characters; words as the `{lang}-en` alignments count them."""
    from collections import Counter

    from cvil.data.text import target_words

    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not getattr(tokenizer, "is_fast", False):
        return 0.0, 0, None
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    seen, unknown = 0, Counter()
    for question, ids, offsets in zip(questions, encoded["input_ids"], encoded["offset_mapping"]):
        unk_chars = {c for i, (a, b) in zip(ids, offsets) if i == unk for c in range(a, b)}
        start = 0
        for word in target_words(question, lang):
            if not word.strip():
                continue
            at = question.find(word, start)
            seen += 1
            if at < 0:
                continue
            start = at + len(word)
            if unk_chars.intersection(range(at, start)):
                unknown[word] += 1
    if not seen:
        return 0.0, 0, None
    # the example: the most frequent unknown word that has a letter (not a lone question mark)
    example = max(unknown, key=lambda w: (any(ch.isalpha() for ch in w), unknown[w]), default=None)
    return sum(unknown.values()) / seen, seen, example


def warn_unknown_words(cfg: RunConfig, tokenizer) -> float | None:
    """Warn (once, rank 0) when the student tokenizer maps >= 5 % of the target language's words in a sample of the
    first stage's train questions to `[UNK]`: such a run trains without error but cannot read those words (a
    vocabulary built for another language, or a cased/uncased mismatch). Returns the rate, None when not checked."""
    if not cfg.stages or os.environ.get("RANK", "0") not in ("", "0"):
        return None
    lang = cfg.stages[-1].lang  # the student's target language
    qla = layout.qla_path(Path(cfg.data.root) / cfg.stages[0].dataset, "train")
    questions = sample_questions(qla, lang)
    if not questions:
        return None
    rate, n_words, example = unknown_word_rate(tokenizer, questions, lang)
    if n_words and rate >= UNK_WARN_RATE:
        log.warning("the student tokenizer %s maps %.1f %% of the %r words of %d %s train questions to %s (e.g. %r): "
                    "the student cannot read them; use a tokenizer whose vocabulary covers %r (model.tokenizer)",
                    cfg.model.tokenizer or cfg.model.init, 100 * rate, lang, len(questions), qla,
                    getattr(tokenizer, "unk_token", "[UNK]"), example, lang)
    return rate


def check_models(cfg: RunConfig, tokenizer, teacher_tokenizer=None) -> None:
    """Refuse model/tokenizer combinations that would fail at the first step (or silently train the wrong thing)."""
    problems = []
    student = _student_shape(cfg, tokenizer)
    problems.append(_vocab_problem("student", cfg.model.tokenizer or cfg.model.init, tokenizer, student))
    _warn_if_vocabularies_differ(cfg, tokenizer)
    warn_unknown_words(cfg, tokenizer)
    if cfg.kd.teacher and any(s.distils for s in cfg.stages) and Path(cfg.kd.teacher).is_dir():
        raw = _config_json(cfg.kd.teacher)
        if not _is_oscar_vqa(cfg.kd.teacher, raw):
            problems.append(f"kd.teacher {cfg.kd.teacher} is a text-only BERT checkpoint (no image embedding): a "
                            "teacher must be an OSCAR(+) VQA checkpoint, e.g. the VinVL base model fine-tuned on VQA")
        else:
            teacher = _Shape(raw.get("vocab_size"), raw.get("hidden_size", 768), f"kd.teacher {cfg.kd.teacher}")
            if teacher_tokenizer is not None:
                problems.append(_vocab_problem("teacher", cfg.kd.teacher_tokenizer or cfg.kd.teacher,
                                               teacher_tokenizer, teacher))
            if (student.hidden_size is not None and int(teacher.hidden_size) != int(student.hidden_size)
                    and cfg.kd.projection != "linear"):
                problems.append(f"{teacher.source} has hidden size {teacher.hidden_size} but {student.source} has "
                                f"{student.hidden_size}: KD compares hidden states position by position, so both "
                                "must be equal (the paper distils 768 -> 768), or set kd.projection: linear")
    problems = [p for p in problems if p]
    if problems:
        raise PreflightError("; ".join(problems))
