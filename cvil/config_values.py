"""Value ranges and names of a run config, checked before any data or model is loaded.

Kept apart from `cvil.config` (the schema, loading and overrides) because the rules grow with every option; the
loader calls `check_values` on every config it returns, and `cvil.train.api.run` again on configs built in code.
All problems are reported at once, in one line, as a `ConfigError` (exit 2 in the CLI). `cvil.config` imports this
module, so nothing here imports it back: the config is only read, and `RunConfig` is named for the type checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvil.errors import ConfigError
from cvil.suggest import unknown_choice

if TYPE_CHECKING:  # never executed: not an import at run time
    from cvil.config import RunConfig

SCHEDULES = ("baseline", "aug", "kd", "teacher")
SPLITS = ("train", "val", "test")
KD_REFERENCE_DEPTH = 12  # kd.layers are numbered on a 12-layer model (cvil.distill.kd_losses.map_layers)


def _name_problem(where: str, value: str, valid: tuple[str, ...]) -> str | None:
    if value in valid:
        return None
    return f"{where}: {unknown_choice('name', value, valid)}"


def _range_problems(cfg: RunConfig) -> list[str]:
    """Every out-of-range value and unknown name, as `key: what is wrong` (no file is read here)."""
    problems = [_name_problem("schedule", cfg.schedule, SCHEDULES)]
    problems += [_name_problem(f"evaluate[{i}]", split, SPLITS) for i, split in enumerate(cfg.evaluate)]
    checks: list[tuple[str, Any, bool, str]] = [
        ("data.max_regions", cfg.data.max_regions, cfg.data.max_regions >= 1, ">= 1"),
        ("data.max_text_len", cfg.data.max_text_len, cfg.data.max_text_len >= 3, ">= 3 ([CLS] word [SEP])"),
        ("data.batch_size", cfg.data.batch_size, cfg.data.batch_size >= 1, ">= 1"),
        ("data.eval_batch_size", cfg.data.eval_batch_size, cfg.data.eval_batch_size >= 1, ">= 1"),
        ("data.num_workers", cfg.data.num_workers, cfg.data.num_workers >= 0, ">= 0"),
        ("data.max_train_examples", cfg.data.max_train_examples, cfg.data.max_train_examples >= 0, ">= 0 (0 = all)"),
        ("train.grad_accum", cfg.train.grad_accum, cfg.train.grad_accum >= 1, ">= 1"),
        ("train.log_every", cfg.train.log_every, cfg.train.log_every >= 0, ">= 0 (0: about 100 points per stage)"),
        ("train.checkpoint_every", cfg.train.checkpoint_every, cfg.train.checkpoint_every >= 1, ">= 1"),
        ("train.checkpoint_every_s", cfg.train.checkpoint_every_s, cfg.train.checkpoint_every_s >= 0,
         ">= 0 (0: every train.checkpoint_every steps)"),
        ("train.threads", cfg.train.threads, cfg.train.threads >= 0, ">= 0 (0 = torch's default)"),
        ("train.warmup_ratio", cfg.train.warmup_ratio, 0 <= cfg.train.warmup_ratio < 1, "in [0, 1)"),
        ("train.max_grad_norm", cfg.train.max_grad_norm, cfg.train.max_grad_norm > 0, "> 0"),
        ("train.weight_decay", cfg.train.weight_decay, cfg.train.weight_decay >= 0, ">= 0"),
        ("train.adam_eps", cfg.train.adam_eps, cfg.train.adam_eps > 0, "> 0"),
        ("train.adam_betas", list(cfg.train.adam_betas), all(0 <= b < 1 for b in cfg.train.adam_betas),
         "each in [0, 1)"),
        ("kd.logit_weight", cfg.kd.logit_weight, cfg.kd.logit_weight >= 0, ">= 0"),
        ("kd.codemix_rate", cfg.kd.codemix_rate, 0 < cfg.kd.codemix_rate <= 1, "in (0, 1]"),
    ]
    for i, stage in enumerate(cfg.stages):
        at = f"stages.{i}"
        checks += [
            (f"{at}.epochs", stage.epochs, stage.epochs > 0, "> 0 (fractions train part of an epoch)"),
            (f"{at}.lr", stage.lr, stage.lr >= 0, ">= 0"),
            (f"{at}.eval_every", stage.eval_every, stage.eval_every >= 0, ">= 0 (0 = at each epoch end)"),
            (f"{at}.task_weight", stage.task_weight, stage.task_weight >= 0, ">= 0"),
            (f"{at}.kd_weight", stage.kd_weight, stage.kd_weight >= 0, ">= 0"),
            (f"{at}.name", stage.name, bool(stage.name) and "/" not in stage.name and stage.name not in (".", ".."),
             "a non-empty folder name without '/'"),
        ]
    bad_layers = [m for m in cfg.kd.layers if not 1 <= m <= KD_REFERENCE_DEPTH]
    checks.append(("kd.layers", list(cfg.kd.layers), not bad_layers and len(set(cfg.kd.layers)) == len(cfg.kd.layers),
                   f"distinct layers in 1..{KD_REFERENCE_DEPTH} (numbered on a 12-layer model)"))
    checks.append(("kd.layer_weights", list(cfg.kd.layer_weights),
                   not cfg.kd.layer_weights or len(cfg.kd.layer_weights) == len(cfg.kd.layers),
                   f"one weight per kd.layers entry ({len(cfg.kd.layers)}) or [] (all 1)"))
    problems += [f"{key}: expected {expected}, got {value!r}" for key, value, ok, expected in checks if not ok]
    return [p for p in problems if p]


def _language_problems(cfg: RunConfig) -> list[str]:
    """Register the config's language files (`data.languages`) and check every stage's `lang` against the registry
    (`cvil.languages`): an unknown code is named with the closest known ones."""
    from cvil.languages import LanguageError, add_paths, get_language

    try:
        add_paths(cfg.data.languages)
    except LanguageError as exc:
        return [f"data.languages: {exc}"]
    problems = []
    for i, stage in enumerate(cfg.stages):
        try:
            get_language(stage.lang)
        except LanguageError as exc:
            problems.append(f"stages.{i}.lang: {exc}")
    return problems


def check_values(cfg: RunConfig) -> None:
    """Refuse a config with any out-of-range value or unknown name (all of them, in one line) before any work."""
    problems = _range_problems(cfg) + _language_problems(cfg)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
