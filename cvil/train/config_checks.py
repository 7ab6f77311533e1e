"""Config checks that need the models' `config.json` (read only that): done before any data or weights are loaded.

`kd.layers` are numbered on a 12-layer model and mapped proportionally onto the teacher's and the student's depth
(`cvil.distill.kd_losses.map_layers`); on a shallow model two of them can land on the same layer, which used to fail
with a traceback after both models were built.
"""

from __future__ import annotations

import json
from pathlib import Path

from cvil.config import ConfigError, RunConfig


def _depth(folder: str, key: str) -> int | None:
    """`num_hidden_layers` of a checkpoint folder's config.json (None when there is none to read)."""
    path = Path(folder) / "config.json"
    if not folder or not path.is_file():
        return None
    try:
        depth = json.loads(path.read_text(encoding="utf-8")).get("num_hidden_layers")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ConfigError(f"{key}: {path} is not a valid config.json ({exc})") from None
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else None


def check_against_models(cfg: RunConfig) -> None:
    """Refuse `kd.layers` that the teacher's or the student's depth cannot hold as distinct layers."""
    from cvil.distill.kd_losses import map_layers

    if not any(stage.distils for stage in cfg.stages):
        return
    student = (_depth(cfg.model.init, "model.init") if cfg.model.init
               else cfg.model.from_scratch.get("num_hidden_layers", 12))
    for key, depth in (("kd.teacher", _depth(cfg.kd.teacher, "kd.teacher")), ("model.init", student)):
        if not isinstance(depth, int):
            continue
        try:
            map_layers(tuple(cfg.kd.layers), depth)
        except ValueError as exc:
            raise ConfigError(f"kd.layers {list(cfg.kd.layers)} do not fit {key} ({depth} layers): {exc}") from None
