"""The embedded default, end to end: a synthetic world, its student init and its trained teacher.

`ensure_world(root)` makes whatever is missing, in order, and is idempotent: the world (`cvil synth`), the
mBERT stand-in (`student_init/`, the teacher's shape over the student tokenizer) and the OSCAR+ stand-in
(`teacher/oscar/`, trained with `configs/synthetic/teacher.yaml` and exported in the Oscar format). Grids, the
README's main job and `nox -s ablations` all start here.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cvil.config import SHIPPED_CONFIG_ROOT, load_config


def _say(message: str) -> None:
    """Progress of the minutes-long steps, shown whether or not the caller configured logging."""
    print(f"[world] {message}", file=sys.stderr, flush=True)


CONFIG_DIR = SHIPPED_CONFIG_ROOT / "configs"
TEACHER_CONFIG = CONFIG_DIR / "synthetic" / "teacher.yaml"


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


def read_world_manifest(root: str | Path) -> dict:
    """The synthetic world's manifest `root/world.json` (written last by `cvil synth`); a truncated or damaged one is
    a `CvilError` naming it and saying to rebuild the world (what it describes cannot be trusted)."""
    from cvil.data.errors import DataFormatError
    from cvil.data.json_file import load_json
    from cvil.errors import CvilError

    manifest = Path(root) / "world.json"
    rebuild = f"rebuild the world: delete {root} and run the command again"
    try:
        built = load_json(manifest, "the synthetic world's manifest")
    except DataFormatError as exc:
        raise CvilError(f"{exc} (a truncated or damaged world manifest); {rebuild}") from None
    if not isinstance(built, dict):
        raise CvilError(f"{manifest}: top level: expected the synthetic world's manifest (a JSON object), got "
                        f"{type(built).__name__}; {rebuild}")
    return built


def check_world_matches(root: str | Path, preset: str, seed: int) -> None:
    """Refuse to reuse a world built with another preset or seed (a UsageError naming both), and an unknown preset.

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


def ensure_world(root: str | Path = "worlds/small", preset: str = "small", seed: int = 0, *,
                 tracking: bool = True) -> WorldPaths:
    root = Path(root)
    paths = WorldPaths(root, root / "teacher" / "oscar", root / "student_init")
    check_world_matches(root, preset, seed)
    if not (root / "world.json").is_file():
        from cvil.data.synth.writer import generate

        _say(f"generating the synthetic world (preset {preset}, seed {seed}) in {root}")
        generate(preset, seed, root)
    teacher_cfg = load_config(TEACHER_CONFIG, [f"data.root={root}", f"model.tokenizer={root / 'tokenizers' / 'teacher'}",
                                               f"output_dir={root / 'teacher'}", f"tracking.enabled={str(tracking).lower()}",
                                               "tracking.run_name=teacher", "tracking.tags.cvil.role=teacher"])
    if not (paths.student_init_dir / "config.json").is_file():
        from cvil.models.student_init import make_student_init

        make_student_init(paths.student_init_dir, root / "tokenizers" / "student", seed=seed,
                          **teacher_cfg.model.from_scratch)
    if not (paths.teacher_dir / "pytorch_model.bin").is_file():
        from cvil.train.api import run

        _say(f"training the teacher stand-in ({TEACHER_CONFIG.name}; about 2-3 minutes on 2 CPU cores)")
        start = time.perf_counter()
        metrics = run(teacher_cfg, resume=True)
        _say(f"teacher ready in {time.perf_counter() - start:.0f} s: English val VQA accuracy "
             f"{metrics.get('val.accuracy', float('nan')):.2f}")
        (root / "teacher" / "teacher_metrics.json").write_text(
            json.dumps({**metrics, "seconds": round(time.perf_counter() - start, 1)}, indent=2), encoding="utf-8")
    return paths
