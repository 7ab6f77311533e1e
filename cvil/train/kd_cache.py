"""Precompute the teacher cache a run can use instead of the online teacher (`kd.teacher_cache=DIR`): `DIR/train`
and `DIR/val` for the config's first KD stage, built from the same stage data the run trains on (`cvil kd-cache`)."""

from __future__ import annotations

from pathlib import Path


def build_kd_cache(*, config: str | Path, out: str | Path, overrides: list[str] | tuple[str, ...] = (),
                   overwrite: bool = False) -> dict[str, dict]:
    """Write the teacher cache of `config`'s first KD stage under `out`; returns each split's manifest."""
    from cvil.config import load_config
    from cvil.data.tokenizers import load_tokenizer
    from cvil.distill.teacher_cache import build_teacher_cache
    from cvil.errors import UsageError
    from cvil.train import model_setup
    from cvil.train.data_setup import build_stage_data
    from cvil.train.distributed import DistInfo

    cfg = load_config(config, list(overrides))
    stage = next((s for s in cfg.stages if s.distils), None)
    if stage is None:
        raise UsageError(f"{config} has no KD stage")
    dist = DistInfo()
    data = build_stage_data(stage, cfg.data, cfg.kd, tokenizer=load_tokenizer(cfg.model.tokenizer or cfg.model.init),
                            teacher_tokenizer=load_tokenizer(cfg.kd.teacher_tokenizer or cfg.kd.teacher), dist=dist,
                            seed=cfg.train.seed)
    teacher = model_setup.load_teacher(cfg, dist.device)
    return {split: build_teacher_cache(teacher, loader.dataset, Path(out) / split, cfg.kd.layers,
                                       batch_size=cfg.data.eval_batch_size, teacher_path=cfg.kd.teacher,
                                       overwrite=overwrite)
            for split, loader in (("train", data.train), ("val", data.val))}


def verify_kd_cache(out: str | Path) -> dict[str, int]:
    """Hash every shard of the teacher cache(s) in `out` (a cache folder, or one holding `train/` and `val/`) against
    their manifests; returns each folder's question count. Raises `TeacherCacheError` naming a bad shard."""
    from cvil.distill.teacher_cache import MANIFEST, TeacherCache
    from cvil.errors import UsageError

    out = Path(out)
    folders = [out] if (out / MANIFEST).is_file() else [
        out / split for split in ("train", "val") if (out / split / MANIFEST).is_file()]
    if not folders:
        raise UsageError(f"no teacher cache in {out}: neither {out / MANIFEST} nor {out}/train|val/{MANIFEST}")
    return {str(folder): len(TeacherCache(folder, verify_hash=True)) for folder in folders}
