"""Per-stage data: QLA rows, label maps, packed features, datasets and loaders.

Training reads region features only from the packed fp16 store; a split without one is packed on first use (by
rank 0, the others wait), so the per-image `.pt` layout of the reference works unchanged. The store records a
fingerprint of the `.pt` files it was packed from and is rebuilt when they change (an edited feature file is never
silently ignored).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cvil.config import DataConfig, KDConfig, StageConfig
from cvil.data import layout
from cvil.data.collate import collate
from cvil.data.feature_store import INDEX_FILE, PackedFeatureStore, pack_features, packed_from, source_fingerprint
from cvil.data.errors import DataFormatError, DataSetupError
from cvil.data.label_sets import label_maps, relabel
from cvil.data.qla import QLAFile, read_qla
from cvil.data.region_features import PtDirSource
from cvil.train.distributed import DistInfo, barrier, broadcast_object
from cvil.train.sampling import ResumableSampler, ShardSampler


log = logging.getLogger(__name__)


def dataset_folder(data: DataConfig, dataset: str) -> Path:
    folder = Path(data.root) / dataset
    if not folder.is_dir():
        raise DataSetupError(f"dataset folder not found: {folder} (data.root={data.root!r}, dataset={dataset!r})")
    return folder


@lru_cache(maxsize=16)
def _qla(path: Path, drop_empty: bool) -> QLAFile:
    return read_qla(path, drop_empty=drop_empty)


def split_rows(folder: Path, split: str) -> QLAFile:
    """The rows of a split; train and val drop rows without an in-vocabulary answer (counted), test keeps all."""
    path = layout.qla_path(folder, split)
    if not path.is_file():
        raise DataSetupError(f"missing split file {path}")
    return _qla(path, split != "test")


def feature_store(folder: Path, split: str, dist: DistInfo) -> PackedFeatureStore:
    """The split's packed store, packing it on first use and REBUILDING it when the per-image `.pt` folder beside it
    changed since (edited, added or removed files: see `store_is_current`). Rank 0 decides and packs under a file lock
    (parallel grid cells share a dataset folder); the other ranks wait at a barrier."""
    packed = layout.packed_store_path(folder, split)
    if broadcast_object(not store_is_current(folder, split) if dist.is_main else None):
        if dist.is_main:
            _pack_once(folder, split, packed)
        barrier()
    return PackedFeatureStore(packed)


def store_is_current(folder: Path, split: str) -> bool:
    """Whether the split's packed store can be used as it is: it exists and, when the per-image folder it is built
    from is there, was packed from exactly these files (same names, sizes and mtimes). A store with no per-image
    folder beside it (packed from a TSV or a VinVL file) is used as it is."""
    return packed_from(layout.packed_store_path(folder, split), layout.feature_dir(folder, split))


def _pack_once(folder: Path, split: str, packed: Path) -> None:
    import fcntl

    packed.parent.mkdir(parents=True, exist_ok=True)
    with open(packed.parent / f".{packed.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if store_is_current(folder, split):  # another process packed it while we waited
            return
        source_dir = layout.feature_dir(folder, split)
        if not source_dir.is_dir():
            hint = layout.pack_hint(folder, split)
            raise DataSetupError(f"no packed store at {packed} and no per-image features at {source_dir}"
                                 + (f"; {hint}" if hint else ""))
        if (packed / INDEX_FILE).exists():
            log.warning("%s is out of date (the files in %s changed since it was packed): rebuilding it",
                        packed, source_dir)
        pack_features(PtDirSource(source_dir), packed, source_key=source_fingerprint(source_dir))


def of_types(rows, question_types: tuple[str, ...], folder: Path):
    """The rows of the listed `question_type`s (a curriculum stage); all rows when none are listed."""
    if not question_types:
        return rows
    kept = [r for r in rows if r.extra.get("question_type") in question_types]
    if not kept:
        raise DataSetupError(f"{folder}: no rows with question_type in {list(question_types)}")
    return kept


@dataclass
class StageData:
    """Everything one stage reads: the train loader, the val loader, and the facts evaluation needs."""

    train: DataLoader
    val: DataLoader
    train_sampler: ResumableSampler
    num_labels: int
    val_dropped: int  # val questions without an in-vocabulary answer (for the unfiltered score)
    train_rows: int = 0  # train rows this stage trains on
    train_kept: int = 0  # train rows of the file left by the coverage filter
    train_dropped: dict[str, int] = field(default_factory=dict)  # train rows the coverage filter left out, by reason


def kd_selection(kd: KDConfig, *, split: str):
    """The positions to distil; code-mixing is a training-time augmentation (train split only, as the reference)."""
    from cvil.data.vqa_dataset import KDSelection

    return KDSelection(cls=kd.cls, image=kd.image, tags=kd.tags, codemix=kd.codemix and split == "train",
                       fix_continuation_overrun=kd.fix_tag_continuation, codemix_rate=kd.codemix_rate,
                       codemix_unit=kd.codemix_unit)


def build_dataset(rows, *, folder: Path, split: str, stage: StageConfig, data: DataConfig, tokenizer,
                  dist: DistInfo, teacher_tokenizer=None, kd: KDConfig | None = None, seed: int = 0,
                  row_identity: str = "q_id"):
    """`row_identity`: `QLAFile.key_description` of the file `rows` come from (teacher caches check it)."""
    from cvil.data.vqa_dataset import VQADataset

    use_kd = stage.distils and kd is not None
    return VQADataset(
        relabel(rows, folder, data.label_set),
        tokenizer,
        feature_store(folder, split, dist),
        len(label_maps(folder, data.label_set)),
        stage.lang,
        data.max_regions,
        teacher_tokenizer=teacher_tokenizer if use_kd else None,
        kd=kd_selection(kd, split=split) if use_kd else None,
        seed=seed,
        max_text_len=data.max_text_len,
        row_identity=row_identity,
    )


def make_collate(data: DataConfig):
    fixed = None if data.dynamic_padding else data.max_text_len

    def _collate(examples):
        return collate(examples, fixed_text_len=fixed)

    return _collate


def build_stage_data(stage: StageConfig, data: DataConfig, kd: KDConfig, *, tokenizer, teacher_tokenizer,
                     dist: DistInfo, seed: int) -> StageData:
    folder = dataset_folder(data, stage.dataset)
    train_file = split_rows(folder, "train")
    if not train_file.rows:
        raise DataSetupError(f"{train_file.path}: no labelled rows to train on ({train_file.dropped.total} rows, "
                             f"all without an in-vocabulary answer)" if train_file.dropped.total else
                             f"{train_file.path}: no rows to train on (an empty split)")
    train_rows = of_types(train_file.rows, stage.question_types, folder)
    if data.max_train_examples:
        train_rows = train_rows[: data.max_train_examples]
    val_file = split_rows(folder, "val")
    if stage.select == "val_score" and not val_file.rows:
        what = (f"{val_file.dropped.total} rows, none with an in-vocabulary answer" if val_file.dropped.total
                else "an empty split")
        raise DataSetupError(f"{val_file.path}: no labelled val rows ({what}); stage {stage.name!r} selects its "
                             f"checkpoint on the val score (select: val_score): add labelled val rows, or set "
                             f"select: last for this stage")
    for qla in (train_file, val_file):
        check_label_ids(qla, len(label_maps(folder)))
    common = dict(folder=folder, stage=stage, data=data, tokenizer=tokenizer, dist=dist,
                  teacher_tokenizer=teacher_tokenizer, kd=kd, seed=seed)
    train_ds = build_dataset(train_rows, split="train", row_identity=train_file.key_description, **common)
    val_ds = build_dataset(of_types(val_file.rows, stage.question_types, folder), split="val",
                           row_identity=val_file.key_description, **common)
    sampler = ResumableSampler(len(train_ds), seed=seed, rank=dist.rank, world_size=dist.world_size)
    loader_kw = dict(collate_fn=make_collate(data), num_workers=data.num_workers,
                     pin_memory=data.pin_memory and dist.device.type == "cuda",
                     persistent_workers=False, generator=torch.Generator().manual_seed(seed))
    train = DataLoader(train_ds, batch_size=data.batch_size, sampler=sampler, drop_last=False, **loader_kw)
    val = DataLoader(val_ds, batch_size=data.eval_batch_size,
                     sampler=ShardSampler(len(val_ds), rank=dist.rank, world_size=dist.world_size), **loader_kw)
    return StageData(train, val, sampler, len(label_maps(folder, data.label_set)), val_file.dropped.total,
                     train_rows=len(train_rows), train_kept=len(train_file.rows),
                     train_dropped=dict(train_file.dropped.by_reason))


def check_label_ids(qla: QLAFile, num_labels: int) -> None:
    """Refuse a label id outside the label maps (`an: [-1]` would otherwise index the last class)."""
    for row, index in zip(qla.rows, qla.file_indices()):
        bad = [a for a in row.answer_ids if not 0 <= a < num_labels]
        if bad:
            raise DataFormatError(qla.path, f"row {index} field 'an'", f"label ids in [0, {num_labels})",
                                  f"label id {bad[0]}")


def to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}
