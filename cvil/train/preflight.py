"""Checks that fail fast, before any model is built: paths exist, stages make sense, a resume is compatible."""

from __future__ import annotations

from pathlib import Path

from cvil.config import RunConfig, config_hash
from cvil.data import layout


def check_run(cfg: RunConfig, *, resume: bool = False) -> None:
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
        if stage.objective != "task" and not cfg.kd.teacher:
            problems.append(f"stages.{i} ({stage.name}) distils but kd.teacher is not set")
    for key, path in (("model.init", cfg.model.init), ("model.tokenizer", cfg.model.tokenizer),
                      ("kd.teacher", cfg.kd.teacher if any(s.objective != "task" for s in cfg.stages) else "")):
        if path and not Path(path).exists():
            problems.append(f"{key} {path!r} does not exist")
    if not cfg.model.init and not cfg.model.tokenizer:
        problems.append("training from scratch (model.init empty) needs model.tokenizer")
    if resume:
        ckpt = Path(cfg.output_dir) / "checkpoints" / "last.pt"
        if ckpt.exists():
            from cvil.torch_files import load_torch_file

            saved = load_torch_file(ckpt, what="a cvil checkpoint")["progress"]
            if saved.get("config_hash") and saved["config_hash"] not in (config_hash(cfg),
                                                                      config_hash(cfg, with_output_dir=True)):
                problems.append(f"--resume: {ckpt} was written with a different config; use a new output_dir")
    if problems:
        raise ValueError("invalid run configuration:\n  - " + "\n  - ".join(problems))
