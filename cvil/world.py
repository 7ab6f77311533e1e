"""The embedded default, end to end: a synthetic world, its student init and its trained teacher.

`ensure_world(root)` makes whatever is missing, in order, and is idempotent: the world (`cvil synth`), the
mBERT stand-in (`student_init/`, the teacher's shape over the student tokenizer) and the OSCAR+ stand-in
(`teacher/oscar/`, trained with `configs/synthetic/teacher.yaml`, after pre-training on the world's English-only
corpus where it has one, `teacher_pretrain.yaml`, and exported in the Oscar format). Grids, the
README's main job and `nox -s ablations` all start here.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cvil.config import SHIPPED_CONFIG_ROOT, load_config
from cvil.data.synth.manifest import GENERATOR_VERSION, read_world_manifest


def _say(message: str) -> None:
    """Progress of the minutes-long steps, shown whether or not the caller configured logging."""
    print(f"[world] {message}", file=sys.stderr, flush=True)


class WorldInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT while the world or its teacher was being built: what was done is kept (a half-generated world
    is removed, the teacher keeps its last checkpoint), and the same command continues. A KeyboardInterrupt, so no
    cleanup swallows it; the dispatchers print it as one line with exit code 128 + the signal (`cvil.cli`)."""

    def __init__(self, signum: int, what: str, root: str | Path):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal.Signals(self.signum).name} while {what} in {root}; run the same "
                         "command again to continue (finished parts are kept)")


@contextlib.contextmanager
def _stoppable(what: str, root: Path):
    """SIGTERM (Slurm, `timeout`, `kill`) and Ctrl-C raise `WorldInterrupted` instead of killing the process on the
    spot (which left a `.<root>.synth-tmp-<pid>` folder behind) or printing a traceback; the teacher's training run
    installs its own handlers (`cvil.train.stop_signals`) and its `RunInterrupted` is reported the same way."""
    from cvil.train.stop_signals import RunInterrupted

    def handler(signum, frame):
        raise WorldInterrupted(signum, what, root)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, handler) if main else None
    try:
        yield
    except WorldInterrupted:
        raise
    except RunInterrupted as exc:
        raise WorldInterrupted(exc.signum, what, root) from None
    except KeyboardInterrupt:
        raise WorldInterrupted(signal.SIGINT, what, root) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


CONFIG_DIR = SHIPPED_CONFIG_ROOT / "configs"
TEACHER_CONFIG = CONFIG_DIR / "synthetic" / "teacher.yaml"
PRETRAIN_TEACHER_CONFIG = CONFIG_DIR / "synthetic" / "teacher_pretrain.yaml"


# The teacher's pre-training budget in examples (2 epochs of the default corpus's 36,000 questions = 2,250 steps of
# 32), whatever the corpus's size: along world v3's knob the teacher sees more or fewer distinct scenes, not more or
# fewer steps (at a fixed epoch count a 2,000-image corpus would get a third of the steps and stay on the plateau).
PRETRAIN_EXAMPLES = 72_000


def teacher_overrides(root: str | Path) -> list[str]:
    """The pre-training stage's length for the world in `root` (`PRETRAIN_EXAMPLES` over its corpus's questions)."""
    from cvil.data.synth.writer import PRETRAIN

    corpus = read_world_manifest(root).get(PRETRAIN)
    if corpus is None:
        return []
    return [f"stages.0.epochs={PRETRAIN_EXAMPLES / corpus['splits']['train']['questions']:.6g}"]


def teacher_config(root: str | Path) -> Path:
    """The teacher's schedule for the world in `root`: pre-training on its English-only corpus first where the world
    has one (world v3, `pretrain/` in world.json), else the English VQA set alone (world v2)."""
    from cvil.data.synth.writer import PRETRAIN

    return PRETRAIN_TEACHER_CONFIG if PRETRAIN in read_world_manifest(root) else TEACHER_CONFIG


def teacher_recipe(root: str | Path) -> tuple[Path, list[str]]:
    """The config and overrides that train the teacher stand-in of the world in `root` (its data, its tokenizer, its
    pre-training length), where it is written left out: the world's own teacher and `bench.teacher_seeds`'s
    re-trainings over seeds are the same recipe."""
    root = Path(root)
    return teacher_config(root), [f"data.root={root}", f"model.tokenizer={root / 'tokenizers' / 'teacher'}",
                                  *teacher_overrides(root)]


@dataclass(frozen=True)
class WorldPaths:
    root: Path
    teacher_dir: Path
    student_init_dir: Path

    def overrides(self) -> list[str]:
        """The `key=value` overrides that point a synthetic config at this world."""
        return [f"data.root={self.root}", f"model.init={self.student_init_dir}",
                f"model.tokenizer={self.root / 'tokenizers' / 'student'}", f"kd.teacher={self.teacher_dir}",
                f"kd.teacher_tokenizer={self.root / 'tokenizers' / 'teacher'}"]


def percent(value) -> str:
    """A score of 0-100 as `98.43 %` (`n/a` when missing): every accuracy cvil prints is a percentage."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if number != number else f"{number:.2f} %"


def check_world_matches(root: str | Path, preset: str, seed: int) -> None:
    """Refuse to reuse a world built with another preset or seed (a UsageError naming both) or by another generator
    version (what a preset means changed), and an unknown preset.

    Without this a `cvil demo --preset tiny` followed by a plain `cvil demo` in the same folder would silently
    train on the tiny world.
    """
    from cvil.data.synth.presets import get_preset
    from cvil.errors import UsageError

    get_preset(preset)
    manifest = Path(root) / "world.json"
    if not manifest.is_file():
        return
    built = read_world_manifest(root)
    if (built.get("preset"), built.get("seed")) != (preset, seed):
        raise UsageError(f"{root} holds the synthetic world preset {built.get('preset')!r} seed {built.get('seed')}, "
                         f"not preset {preset!r} seed {seed}: choose another folder (--root) or the matching preset")
    if built.get("generator_version") != GENERATOR_VERSION:
        raise UsageError(f"{root} holds a synthetic world made by generator {built.get('generator_version')!r}, not "
                         f"{GENERATOR_VERSION!r} (world v3 changed what presets mean; `small-v2` is the former "
                         f"`small`): delete {root} or choose another folder (--root)")


def ensure_world(root: str | Path = "worlds/small", preset: str = "small", seed: int = 0, *,
                 tracking: bool = True) -> WorldPaths:
    root = Path(root)
    paths = WorldPaths(root, root / "teacher" / "oscar", root / "student_init")
    check_world_matches(root, preset, seed)
    if not (root / "world.json").is_file():
        from cvil.data.synth.writer import generate

        _say(f"generating the synthetic world (preset {preset}, seed {seed}) in {root}")
        with _stoppable("generating the synthetic world", root):
            generate(preset, seed, root)
    teacher_yaml, recipe = teacher_recipe(root)
    teacher_cfg = load_config(teacher_yaml, [*recipe, f"output_dir={root / 'teacher'}",
                                             f"tracking.enabled={str(tracking).lower()}",
                                             "tracking.run_name=teacher", "tracking.tags.cvil.role=teacher"])
    if not (paths.student_init_dir / "config.json").is_file():
        from cvil.models.student_init import make_student_init

        with _stoppable("writing the student init", root):
            make_student_init(paths.student_init_dir, root / "tokenizers" / "student", seed=seed,
                              **teacher_cfg.model.from_scratch)
    if not (paths.teacher_dir / "pytorch_model.bin").is_file():
        from cvil.train.api import run

        _say(f"training the teacher stand-in ({teacher_yaml.name}; about 2-3 minutes on 2 CPU cores)")
        start = time.perf_counter()
        with _stoppable("training the teacher stand-in", root):
            metrics = run(teacher_cfg, resume=True)
        _say(f"teacher ready in {time.perf_counter() - start:.0f} s: English val VQA accuracy "
             f"{percent(metrics.get('val.accuracy'))}")
        (root / "teacher" / "teacher_metrics.json").write_text(
            json.dumps({**metrics, "seconds": round(time.perf_counter() - start, 1)}, indent=2), encoding="utf-8")
    return paths
