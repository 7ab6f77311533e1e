"""Per-stage data: QLA rows, label maps, packed features, datasets and loaders.

Training reads region features only from the packed fp16 store; a split without one is packed on first use (by
rank 0, the others wait), so the per-image `.pt` layout of the reference works unchanged. The store records a
fingerprint of the `.pt` files it was packed from and is rebuilt when they change (an edited feature file is never
silently ignored).

Encoded splits are cached (`split_dataset`): the dataset's columns (`VQADataset.save_columns`) go to
`<dataset folder>/.cvil-encoded/<split>-<key>/`, keyed by the sha256 of the QLA file's bytes, the tokenizers, the
settings that shape the encoding (language, KD selection, text length, label set, question types, row limit) and the
source of the modules that encode. A later stage, run, rank or grid cell with the same key opens them memory-mapped
(the QLA file is hashed but not parsed; the pages are shared by every process that maps them), so a 647k-row split
costs a few hundred MB per process instead of GBs of Python rows, and opens in seconds. The first process to need a
key builds it under a file lock; the others wait and open it. A folder that cannot be written is no error: the split
is then built in memory, as before. Delete `.cvil-encoded/` to reclaim the space; nothing else reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cvil.config import DataConfig, KDConfig, StageConfig
from cvil.data import layout
from cvil.inputs.collate import collate
from cvil.inputs.loader import FeatureLoader
from cvil.data.feature_store import (DEFAULT_MAX_REGIONS, INDEX_FILE, PackedFeatureStore, pack_features,
                                     source_fingerprint)
from cvil.data.errors import DataFormatError, DataSetupError
from cvil.data.label_sets import label_maps, relabel
from cvil.data.qla import QLAFile, read_qla
from cvil.data.region_features import PtDirSource
from cvil.data.split_features import store_is_current
from cvil.train.distributed import DistInfo, barrier, broadcast_object
from cvil.train.sampling import ResumableSampler, ShardSampler


log = logging.getLogger(__name__)


def dataset_folder(data: DataConfig, dataset: str) -> Path:
    folder = Path(data.root) / dataset
    if not folder.is_dir():
        raise DataSetupError(f"dataset folder not found: {folder} (data.root={data.root!r}, dataset={dataset!r})")
    return folder


def split_rows(folder: Path, split: str) -> QLAFile:
    """The rows of a split; train and val drop rows without an in-vocabulary answer (counted), test keeps all.
    Read afresh at every call: the parsed rows of a 647k-row file take GBs, so nothing keeps them (the training
    path opens its splits from the encoded cache, `split_dataset`, and reads rows only to build it)."""
    path = layout.qla_path(folder, split)
    if not path.is_file():
        raise DataSetupError(f"missing split file {path}")
    return read_qla(path, drop_empty=split != "test")


def feature_store(folder: Path, split: str, dist: DistInfo, max_regions: int | None = None) -> PackedFeatureStore:
    """The split's packed store, packing it on first use and REBUILDING it when the per-image `.pt` folder beside it
    changed since (edited, added or removed files: see `cvil.data.split_features.store_is_current`, the one owner of
    "store, else per-image files"). Rank 0 (global) decides and packs under a file lock (parallel grid cells share a
    dataset folder); the other ranks wait at a barrier. A store packed with fewer regions per image than `max_regions`
    (`data.max_regions`) is refused."""
    packed = layout.packed_store_path(folder, split)
    if broadcast_object(not store_is_current(folder, split) if dist.is_main else None):
        if dist.is_main:
            _pack_once(folder, split, packed, max_regions)
        barrier()
    store = PackedFeatureStore(packed)
    if max_regions is not None and store.max_regions is not None and store.max_regions < max_regions:
        raise DataSetupError(f"{packed} was packed with at most {store.max_regions} regions per image, but "
                             f"data.max_regions is {max_regions}: re-pack it with `cvil data pack ... --max-regions "
                             f"{max_regions}` (a store packed from per-image .pt files: delete it and training "
                             f"re-packs it)")
    return store


def _pack_once(folder: Path, split: str, packed: Path, max_regions: int | None = None) -> None:
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
        pack_features(PtDirSource(source_dir), packed, source_key=source_fingerprint(source_dir),
                      max_regions=max(DEFAULT_MAX_REGIONS, max_regions or 0))


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
    from cvil.inputs.dataset import KDSelection

    return KDSelection(cls=kd.cls, image=kd.image, tags=kd.tags, codemix=kd.codemix and split == "train",
                       fix_continuation_overrun=kd.fix_tag_continuation, codemix_rate=kd.codemix_rate,
                       codemix_unit=kd.codemix_unit)


def build_dataset(rows, *, folder: Path, split: str, stage: StageConfig, data: DataConfig, tokenizer,
                  dist: DistInfo, teacher_tokenizer=None, kd: KDConfig | None = None, seed: int = 0,
                  row_identity: str = "q_id", features: PackedFeatureStore | None = None):
    """`row_identity`: `QLAFile.key_description` of the file `rows` come from (teacher caches check it);
    `features`: the split's store when the caller opened it already (`feature_store` is a collective)."""
    from cvil.inputs.dataset import VQADataset

    use_kd = stage.distils and kd is not None
    return VQADataset(
        relabel(rows, folder, data.label_set),
        tokenizer,
        feature_store(folder, split, dist, data.max_regions) if features is None else features,
        len(label_maps(folder, data.label_set)),
        stage.lang,
        data.max_regions,
        teacher_tokenizer=teacher_tokenizer if use_kd else None,
        kd=kd_selection(kd, split=split) if use_kd else None,
        seed=seed,
        max_text_len=data.max_text_len,
        row_identity=row_identity,
    )


ENCODED_CACHE = ".cvil-encoded"  # in the dataset folder: encoded splits (module docstring)
_ENCODING_MODULES = ("cvil/inputs/dataset.py", "cvil/inputs/encoding.py", "cvil/inputs/alignment.py",
                     "cvil/inputs/codemix.py", "cvil/data/tokenizers.py", "cvil/data/qla.py", "cvil/data/text.py",
                     "cvil/data/label_sets.py", "cvil/train/data_setup.py")


def encoded_cache_dir(folder: Path) -> Path:
    return Path(folder) / ENCODED_CACHE


@dataclass(frozen=True)
class SplitInfo:
    """What training needs to know about a split's file besides its examples (kept with the encoded cache)."""

    path: str
    kept: int  # rows left by the coverage filter
    dropped: int
    dropped_by_reason: dict[str, int]
    key_description: str


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _tokenizer_fingerprint(tokenizer) -> str | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: nothing cheap and complete to key on, so no cache
        return None
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def _code_fingerprint() -> str:
    root, digest = Path(__file__).resolve().parents[2], hashlib.sha256()
    for name in _ENCODING_MODULES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


def _cache_key(path: Path, split: str, folder: Path, stage: StageConfig, data: DataConfig, tokenizer,
               teacher_tokenizer, kd_sel) -> str | None:
    """The encoded cache's key of a split (module docstring), or None where it cannot be keyed."""
    tokenizers = [_tokenizer_fingerprint(tokenizer)] + ([_tokenizer_fingerprint(teacher_tokenizer)] if kd_sel else [])
    if None in tokenizers:
        return None
    label_file = folder / layout.HINDI_CLASSES
    parts = {
        "qla_sha256": _sha256_file(path), "split": split, "tokenizers": tokenizers, "code": _code_fingerprint(),
        "lang": stage.lang, "max_text_len": data.max_text_len, "kd": None if kd_sel is None else asdict(kd_sel),
        "label_set": data.label_set, "num_labels": len(label_maps(folder)),
        "hindi_classes": _sha256_file(label_file) if data.label_set == "hindi_merged" else None,
        "question_types": list(stage.question_types),
        "max_train_examples": data.max_train_examples if split == "train" else 0,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path | None):
    """An exclusive file lock (parallel ranks and grid cells build a key once); none where it cannot be taken."""
    import fcntl

    handle = None
    if lock_path is not None:
        try:
            handle = open(lock_path, "w")
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            if handle is not None:
                handle.close()
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # releases the lock


def split_dataset(split: str, *, folder: Path, stage: StageConfig, data: DataConfig, tokenizer, dist: DistInfo,
                  teacher_tokenizer=None, kd: KDConfig | None = None, seed: int = 0):
    """`(VQADataset, SplitInfo)` of a train or val split as the stage trains on it, from the encoded cache when it
    holds this key, else read, checked, encoded and added to it (module docstring). Ranks build a key one at a
    time (a file lock; nothing collective happens while it is held): the first builds, the others open it."""
    from cvil.inputs.dataset import VQADataset

    path = layout.qla_path(folder, split)
    if not path.is_file():
        raise DataSetupError(f"missing split file {path}")
    use_kd = stage.distils and kd is not None
    kd_sel = kd_selection(kd, split=split) if use_kd else None
    store = feature_store(folder, split, dist, data.max_regions)  # every rank, before the lock: it may broadcast
    key = _cache_key(path, split, folder, stage, data, tokenizer, teacher_tokenizer, kd_sel)
    cache_root = encoded_cache_dir(folder)
    cache = cache_root / f"{split}-{key[:32]}" if key else None
    if cache is not None:
        try:
            cache_root.mkdir(exist_ok=True)
        except OSError:
            cache = None
    with _locked(None if cache is None else cache_root / f".{cache.name}.lock"):
        if cache is not None and (cache / "columns.json").is_file():
            try:
                info = SplitInfo(**json.loads((cache / "columns.json").read_text(encoding="utf-8"))["extra"])
                ds = VQADataset.from_columns(
                    cache, tokenizer, store, len(label_maps(folder, data.label_set)),
                    stage.lang, data.max_regions, teacher_tokenizer=teacher_tokenizer if use_kd else None,
                    kd=kd_sel, seed=seed, max_text_len=data.max_text_len, row_identity=info.key_description)
                return ds, info
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged entry: build it again
                log.warning("encoded cache %s is unreadable (%s): rebuilding it", cache, exc)
                import shutil

                shutil.rmtree(cache, ignore_errors=True)
        ds, info = _build_split(split, folder=folder, stage=stage, data=data, tokenizer=tokenizer, dist=dist,
                                teacher_tokenizer=teacher_tokenizer, kd=kd, seed=seed, features=store)
        if cache is not None:
            try:
                ds.save_columns(cache, extra=asdict(info))
                ds = VQADataset.from_columns(  # memory-mapped: the pages are shared, the built copy is freed
                    cache, tokenizer, ds.features, ds.label_count, ds.lang, ds.max_regions,
                    teacher_tokenizer=ds.teacher, kd=ds.kd, seed=seed, max_text_len=ds.max_text_len,
                    row_identity=ds.row_identity)
            except OSError as exc:
                log.warning("could not write the encoded cache %s (%s): the split stays in memory", cache, exc)
    _release_build_memory()
    return ds, info


def _release_build_memory() -> None:
    """After building a split: drop the construction's tag-walk cache and hand the freed heap back to the OS (the
    parsed rows of a 600k-row file leave GBs of free but mapped heap; forked workers would inherit it)."""
    import ctypes
    import gc

    from cvil.inputs.alignment import clear_walk_cache

    clear_walk_cache()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps what it keeps
        pass


def _build_split(split: str, *, folder: Path, stage: StageConfig, data: DataConfig, **common):
    """Read, check and encode a split (the encoded cache's miss path)."""
    qla = split_rows(folder, split)
    if split == "train" and not qla.rows:
        raise DataSetupError(f"{qla.path}: no labelled rows to train on ({qla.dropped.total} rows, "
                             f"all without an in-vocabulary answer)" if qla.dropped.total else
                             f"{qla.path}: no rows to train on (an empty split)")
    check_label_ids(qla, len(label_maps(folder)))
    rows = of_types(qla.rows, stage.question_types, folder)
    if split == "train" and data.max_train_examples:
        rows = rows[: data.max_train_examples]
    info = SplitInfo(str(qla.path), len(qla.rows), qla.dropped.total, dict(qla.dropped.by_reason),
                     qla.key_description)
    ds = build_dataset(rows, folder=folder, split=split, stage=stage, data=data, row_identity=qla.key_description,
                       **common)
    return ds, info


def make_collate(data: DataConfig):
    fixed = None if data.dynamic_padding else data.max_text_len

    def _collate(examples):
        return collate(examples, fixed_text_len=fixed)

    return _collate


def build_stage_data(stage: StageConfig, data: DataConfig, kd: KDConfig, *, tokenizer, teacher_tokenizer,
                     dist: DistInfo, seed: int) -> StageData:
    from cvil.languages import check_tokenizer

    folder = dataset_folder(data, stage.dataset)
    if dist.is_main:  # a language file's `needs_accents` vs an accent-stripping student tokenizer: a logged caveat
        check_tokenizer(stage.lang, tokenizer)
    common = dict(folder=folder, stage=stage, data=data, tokenizer=tokenizer, dist=dist,
                  teacher_tokenizer=teacher_tokenizer, kd=kd, seed=seed)
    train_ds, train_info = split_dataset("train", **common)
    val_ds, val_info = split_dataset("val", **common)
    if stage.select == "val_score" and not val_info.kept:
        what = (f"{val_info.dropped} rows, none with an in-vocabulary answer" if val_info.dropped
                else "an empty split")
        raise DataSetupError(f"{val_info.path}: no labelled val rows ({what}); stage {stage.name!r} selects its "
                             f"checkpoint on the val score (select: val_score): add labelled val rows, or set "
                             f"select: last for this stage")
    sampler = ResumableSampler(len(train_ds), seed=seed, rank=dist.rank, world_size=dist.world_size)
    # persistent workers: forked once per stage, not every epoch; `VQADataset.set_epoch` reaches them (shared memory);
    # they leave the region features to the main process (`FeatureLoader`: reading them there is cheaper)
    loader_kw = dict(collate_fn=make_collate(data), num_workers=data.num_workers,
                     pin_memory=data.pin_memory and dist.device.type == "cuda",
                     persistent_workers=data.num_workers > 0, generator=torch.Generator().manual_seed(seed))
    train = FeatureLoader(train_ds, batch_size=data.batch_size, sampler=sampler, drop_last=False, **loader_kw)
    val = FeatureLoader(val_ds, batch_size=data.eval_batch_size,
                        sampler=ShardSampler(len(val_ds), rank=dist.rank, world_size=dist.world_size), **loader_kw)
    return StageData(train, val, sampler, len(label_maps(folder, data.label_set)), val_info.dropped,
                     train_rows=len(train_ds), train_kept=train_info.kept,
                     train_dropped=dict(train_info.dropped_by_reason))


def check_label_ids(qla: QLAFile, num_labels: int) -> None:
    """Refuse a label id outside the label maps (`an: [-1]` would otherwise index the last class)."""
    for row, index in zip(qla.rows, qla.file_indices()):
        bad = [a for a in row.answer_ids if not 0 <= a < num_labels]
        if bad:
            raise DataFormatError(qla.path, f"row {index} field 'an'", f"label ids in [0, {num_labels})",
                                  f"label id {bad[0]}")


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch on `device`; region features travel in the store's fp16 (half the bytes) and are widened to fp32
    there, so the model sees the values the fp32 per-example path gives it (fp16 -> fp32 is exact)."""
    non_blocking = device.type == "cuda"
    out = {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}
    feats = out.get("img_feats")
    if torch.is_tensor(feats) and feats.dtype == torch.float16:
        out["img_feats"] = feats.float()
    return out
