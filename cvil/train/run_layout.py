"""Where things live in a run folder (`output_dir`): the one place that spells its file names.

```
OUT/.cvil-run.json                      # the marker: this folder is a cvil run (format, version)
OUT/config.yaml  metrics.jsonl  final_metrics.json  run.lock
OUT/checkpoints/last.pt                 # resumable: model, optimiser, scheduler, scaler, RNG, data position
OUT/stages/<i>-<name>/best.pt  selection.json
OUT/final/                              # the final model (safetensors + config + tokenizer + manifest)
OUT/oscar/                              # optional Oscar-format export (+ manifest)
OUT/predictions/<split>_results.json  <split>_per_question.csv
```
Like `cvil.data.layout` for dataset folders: every writer and reader asks this module.

What a run may replace (`--overwrite`, `replaceable_outputs`): only a folder carrying the marker (written when a run
starts), and there only the entries above; inside `checkpoints/`, `stages/`, `final/`, `oscar/` and `predictions/`
only the names cvil writes there (`_owned`: a writer that adds a name adds it here), so a file of the user's in one of
them (`final/thesis.tex`) stops the overwrite instead of going with it. Files of the user's beside the entries above
are never touched.

Symlinks: cvil never makes one in a run folder, and a run refuses to start (or resume) in a folder holding any
(`check_no_symlinks`, before anything is written). Every cvil writer then replaces rather than follows: files go
through `cvil.fileio.atomic_write` (a temporary sibling renamed over the target), `metrics.jsonl` is appended with
`O_NOFOLLOW`, `run.lock` opened with `O_NOFOLLOW`. The exceptions are `transformers`' `save_pretrained` of the
tokenizer into `final/` (it opens its files directly): safe because the folder held no symlink when the run started
and cvil itself created `final/` and everything in it since.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cvil.config_values import SPLITS
from cvil.errors import UsageError
from cvil.fileio import MANIFEST, atomic_write
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
MARKER = ".cvil-run.json"
MARKER_FORMAT, MARKER_VERSION = "cvil-run", 1


class RunFolderError(UsageError):
    """A run folder cvil will not write into, resume or replace as it is (a symlink in it, files cvil did not write
    where `--overwrite` would delete them, a damaged marker file); the message names the file."""


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


def marker_path(out: str | Path) -> Path:
    return Path(out) / MARKER


def has_marker(out: str | Path) -> bool:
    """Whether `out` carries the run marker; one that is there but is not cvil's is an error naming it."""
    path = marker_path(out)
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{path}: not a readable cvil run marker ({exc}); delete it only if {out} is a cvil "
                             "run folder") from None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        raise RunFolderError(f"{path}: not a cvil run marker (expected format {MARKER_FORMAT!r})")
    return True


def ensure_marker(out: str | Path) -> None:
    """Write the marker when it is missing (a new run, or a run of a cvil that wrote none)."""
    path = marker_path(out)
    if not path.is_file():
        atomic_write(path, json.dumps({"format": MARKER_FORMAT, "version": MARKER_VERSION}) + "\n")


def find_symlink(out: str | Path) -> Path | None:
    """The first symlink anywhere inside `out` (not `out` itself: the folder the user named), or None."""
    out = Path(out)
    if not out.is_dir():
        return None
    for root, dirs, files in os.walk(out):  # does not descend into symlinked folders
        dirs.sort()
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(root, name)):
                return Path(root) / name
    return None


def check_no_symlinks(out: str | Path) -> None:
    link = find_symlink(out)
    if link is not None:
        raise RunFolderError(f"{link}: a symbolic link inside the run folder {out} (cvil never makes one, and will "
                             "not write through one): remove it, or choose another output_dir")


# --------------------------------------------------------------------------------- what --overwrite may remove
_CHECKPOINT_FILES = {"last.pt", "last.pt.sha256"}
_STAGE_FILES = {"best.pt", "best.pt.sha256", "selection.json"}
_STAGE_DIR = re.compile(r"\d+-.+")
_MODEL_FILES = {"model.safetensors", "pytorch_model.bin", "config.json", MANIFEST, "vocab.txt"}
_TOKENIZER_FILES = {"tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "vocab.txt", "vocab.json",
                    "merges.txt", "added_tokens.json", "sentencepiece.bpe.model", "spiece.model",
                    "chat_template.jinja"}
_PREDICTION_FILE = re.compile(rf"(?:{'|'.join(map(re.escape, SPLITS))})_(?:results\.json|per_question\.csv)")


def _manifest_names(folder: Path) -> set[str]:
    try:
        return {line.partition("  ")[2] for line in (folder / MANIFEST).read_text(encoding="utf-8").splitlines()}
    except (OSError, UnicodeDecodeError):
        return set()


def _owned(kind: str, top: Path, rel: tuple[str, ...], is_dir: bool) -> bool:
    """Whether `top/rel` (inside the run's `kind` subfolder) is a name cvil writes there (a `.tmp` leftover of one
    included)."""
    name = rel[-1].removesuffix(".tmp")
    if kind == STAGES:
        if len(rel) == 1:
            return is_dir and bool(_STAGE_DIR.fullmatch(rel[0]))
        return len(rel) == 2 and not is_dir and name in _STAGE_FILES
    if is_dir or len(rel) != 1:
        return False
    if kind == CHECKPOINTS:
        return name in _CHECKPOINT_FILES
    if kind == FINAL:
        return name in _MODEL_FILES | _TOKENIZER_FILES or name in _manifest_names(top)
    if kind == OSCAR:
        return name in _MODEL_FILES
    if kind == PREDICTIONS:
        return bool(_PREDICTION_FILE.fullmatch(name))
    return False


def _first_foreign(entry: Path) -> Path | None:
    """The first path at `entry` (one of OUTPUTS) that cvil did not write, or None."""
    if entry.is_symlink():
        return entry
    if entry.name not in (CHECKPOINTS, STAGES, FINAL, OSCAR, PREDICTIONS):
        return None if entry.is_file() else entry
    if not entry.is_dir():
        return entry
    for root, dirs, files in os.walk(entry):
        rel = Path(root).relative_to(entry).parts
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(root) / name
            if path.is_symlink() or not _owned(entry.name, entry, (*rel, name), path.is_dir()):
                return path
    return None


def replaceable_outputs(out: str | Path) -> list[Path]:
    """The earlier run's entries (of OUTPUTS) in `out` that `--overwrite` removes, after checking that `out` is a cvil
    run (its marker) and that they hold nothing cvil did not write; refuses naming the first foreign file."""
    out = Path(out)
    found = [out / name for name in OUTPUTS if os.path.lexists(out / name)]
    if not found:
        return []
    if not has_marker(out):
        raise RunFolderError(f"--overwrite refused: {found[0]} is in {out}, which has no {MARKER} marker, so it is not "
                             "recognisably a cvil run folder and its files may be yours: move them away, or choose "
                             "another output_dir")
    for entry in found:
        foreign = _first_foreign(entry)
        if foreign is not None:
            raise RunFolderError(f"--overwrite refused: {foreign} was not written by cvil (--overwrite replaces only a "
                                 f"run's own files): move it out of {out}, or choose another output_dir")
    return found


def remove_outputs(entries: list[Path]) -> None:
    """Remove what `replaceable_outputs` returned: the files cvil writes there one by one, then the folders they
    leave empty (anything else that appeared since stays, with its folder)."""
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
            continue
        walk = list(os.walk(entry, topdown=False))
        owned = [Path(root) / name for root, _, files in walk for name in files
                 if not os.path.islink(os.path.join(root, name))
                 and _owned(entry.name, entry, (*Path(root).relative_to(entry).parts, name), False)]
        for path in owned:
            path.unlink()
        for root, dirs, _ in walk:
            for name in dirs:
                _rmdir(Path(root) / name)
        _rmdir(entry)


def _rmdir(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: something not ours appeared meanwhile; it stays
        pass
