"""Where things live in a run folder (`output_dir`): the one place that spells its file names.

```
OUT/config.yaml  metrics.jsonl  final_metrics.json  run.lock
OUT/checkpoints/last.pt                 # resumable: model, optimiser, scheduler, scaler, RNG, data position
OUT/stages/<i>-<name>/best.pt  selection.json
OUT/final/                              # the final model (safetensors + config + tokenizer + manifest)
OUT/oscar/                              # optional Oscar-format export
OUT/predictions/<split>_results.json  <split>_per_question.csv
```
Like `cvil.data.layout` for dataset folders: every writer and reader asks this module.
"""

from __future__ import annotations

from pathlib import Path

from cvil.tracking_schema import PREDICTIONS_DIR, per_question_name, results_name

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
FINAL_METRICS = "final_metrics.json"
CHECKPOINTS = "checkpoints"
STAGES = "stages"
FINAL = "final"
OSCAR = "oscar"
PREDICTIONS = PREDICTIONS_DIR
# what a run writes into its output_dir (a second run there without --resume would mix or destroy them)
OUTPUTS = (CONFIG, METRICS, FINAL_METRICS, CHECKPOINTS, STAGES, FINAL, OSCAR, PREDICTIONS)


def config_path(out: str | Path) -> Path:
    return Path(out) / CONFIG


def metrics_path(out: str | Path) -> Path:
    return Path(out) / METRICS


def final_metrics_path(out: str | Path) -> Path:
    return Path(out) / FINAL_METRICS


def checkpoint_path(out: str | Path) -> Path:
    """The resumable checkpoint `checkpoints/last.pt`."""
    return Path(out) / CHECKPOINTS / "last.pt"


def stage_dir(out: str | Path, index: int, name: str) -> Path:
    return Path(out) / STAGES / f"{index}-{name}"


def best_weights_path(stage_folder: Path) -> Path:
    return stage_folder / "best.pt"


def selection_path(stage_folder: Path) -> Path:
    return stage_folder / "selection.json"


def final_dir(out: str | Path) -> Path:
    return Path(out) / FINAL


def oscar_dir(out: str | Path) -> Path:
    return Path(out) / OSCAR


def results_path(out: str | Path, split: str) -> Path:
    """`predictions/<split>_results.json` (EvalAI format)."""
    return Path(out) / PREDICTIONS / results_name(split)


def per_question_path(out: str | Path, split: str) -> Path:
    return Path(out) / PREDICTIONS / per_question_name(split)


def per_question_beside(results: Path) -> Path:
    """The per-question CSV written next to a results file of any name (`X_results.json` -> `X_per_question.csv`)."""
    return results.with_name(results.name.replace("_results.json", "") + "_per_question.csv")
