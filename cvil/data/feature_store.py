"""The packed feature store: every image's regions in one memory-mapped fp16 array, plus a JSON index.

Training reads region features for every sample; opening one `.pt` file per image (or decoding base64 TSV rows)
costs far more than the model needs. `pack_features` converts any `FeatureSource` once into

    features.f16   raw little-endian float16, shape [total_regions, D] (read with numpy.memmap)
    index.json     {"dim": D, "dtype": "float16", "ids": {img_id: [offset, n]}, "max_regions": M,
                    "checksum": {"algorithm": "sha256", "block_bytes": B, "blocks": [hex digest per B-byte block]}}

Each image keeps its first `M` regions (`max_regions`, default 50: what training reads; `n` counts the kept rows),
so a VinVL split with up to 100 boxes per image does not store twice what is read; training refuses a store packed
with fewer regions than its `data.max_regions` (`cvil.train.data_setup.feature_store`). Stores of older cvil have no
`max_regions` (all regions kept).

and `PackedFeatureStore` serves `[max_regions, D]` float32 tensors, truncated to the first `max_regions` regions and
zero-padded, as the reference does (`get`; `get_batch` reads a batch, in fp16 when asked, as the data loaders do). fp16 halves the size (the reference's teacher cache is fp16 too); values beyond
the fp16 range, NaN and inf are rejected at pack time rather than stored.

Integrity: bytes changed in `features.f16` after packing (a bad copy, a disk fault, a stray write: NaN features
train silently with NaN losses) are caught when the store is opened. The digests are per block (16 MiB), so the
error names the block and the images in it. Hashing is done up front, not lazily per read: DataLoader workers each
read nearly every block in an epoch, so lazy checks would hash the store once per worker and fail mid-epoch.
Opening a store hashes it once (about 1 s per GB) and then leaves a marker (`.{store}.verified.json` beside the
store folder, plus an in-process cache) keyed by the file's size, mtime, ctime and inode, so later opens of an
unchanged 2 GB store cost one `stat`. As with git's index, a marker written within 2 s of the file's last change is
not trusted (a write in the same timestamp tick would keep the mtime). A store packed by an older cvil has no
digests: it opens with a warning. `PackedFeatureStore(path, verify=True)` hashes regardless of the marker (bit rot
that leaves the timestamps alone is only caught that way).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from cvil.data.errors import DataFormatError
from cvil.data.region_features import FeatureSource, check_features, padded_regions
from cvil.fileio import atomic_paths

FEATURES_FILE = "features.f16"
INDEX_FILE = "index.json"
VERIFIED_SUFFIX = ".verified.json"  # cache marker `.{store}.verified.json` BESIDE the store folder (not in it: the
# run metadata digests the store folder's file list): the features file's stat when its blocks last hashed clean
DTYPE = np.dtype("<f2")
INDEX_VERSION = 2  # 2: block checksums
BLOCK_BYTES = 16 << 20
RACY_NS = 2_000_000_000  # a marker this close to the file's last change is not trusted (see the module docstring)
REPACK = "re-run `cvil data pack` (or delete the store: training re-packs it from the per-image files)"

log = logging.getLogger(__name__)
_verified: dict[tuple, int] = {}  # in-process cache: marker key -> verified_at_ns
_warned_unverifiable: set[Path] = set()


class _BlockHasher:
    """The sha256 of each `block_bytes` block of a stream written in pieces of any size."""

    def __init__(self, block_bytes: int) -> None:
        self.block_bytes, self.blocks = block_bytes, []
        self._digest, self._filled = hashlib.sha256(), 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            take = min(len(view), self.block_bytes - self._filled)
            self._digest.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.block_bytes:
                self._finish()

    def _finish(self) -> None:
        self.blocks.append(self._digest.hexdigest())
        self._digest, self._filled = hashlib.sha256(), 0

    def result(self) -> list[str]:
        if self._filled:
            self._finish()
        return self.blocks


def _progress(items: Iterable, description: str, show: bool | None, total: int | None = None) -> Iterable:
    from tqdm import tqdm

    disable = not sys.stderr.isatty() if show is None else not show
    return tqdm(items, desc=description, unit="img", disable=disable, total=total)


DEFAULT_MAX_REGIONS = 50  # the regions per image that training reads (`data.max_regions` of every config)


def _half_rows(source: FeatureSource, img_id: int, max_regions: int | None) -> tuple[np.ndarray, int]:
    """One image's first `max_regions` rows as fp16 (checked: finite, within the fp16 range) and its region count
    before truncation."""
    array = check_features(source.get(img_id), source.path, img_id)
    kept = array if max_regions is None else array[:max_regions]
    with np.errstate(over="ignore"):  # overflow becomes inf, which the next line reports
        half = kept.astype(DTYPE)
    if not np.isfinite(half).all():
        raise DataFormatError(source.path, f"img_id {img_id}", "values within the float16 range (|x| <= 65504)",
                              f"max |x| = {float(np.abs(kept).max()):g}")
    return half, int(array.shape[0])


_worker_source: FeatureSource | None = None


def _init_worker(source: FeatureSource) -> None:
    global _worker_source
    _worker_source = source


def _worker_rows(task: tuple[int, int | None]):
    """A pool worker's `_half_rows`; an error comes back as None (the parent reads that image again to raise it)."""
    img_id, max_regions = task
    try:
        return _half_rows(_worker_source, img_id, max_regions)
    except Exception:  # noqa: BLE001  (re-raised, with its own type and message, by the parent)
        return None


def _rows_in_order(source: FeatureSource, ids: Sequence[int], max_regions: int | None, workers: int):
    """`(img_id, fp16 rows, regions before truncation)` in `ids` order, read by `workers` processes when > 1."""
    if workers <= 1:
        for img_id in ids:
            yield (img_id, *_half_rows(source, img_id, max_regions))
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    with context.Pool(workers, initializer=_init_worker, initargs=(source,)) as pool:
        chunk = max(1, min(64, len(ids) // (8 * workers) or 1))
        for img_id, got in zip(ids, pool.imap(_worker_rows, [(i, max_regions) for i in ids], chunksize=chunk)):
            yield (img_id, *(got if got is not None else _half_rows(source, img_id, max_regions)))


def pack_features(source: FeatureSource, out: str | Path, *, ids: Iterable[int] | None = None,
                  dim: int | None = None, progress: bool | None = None,
                  source_key: str | None = None, block_bytes: int = BLOCK_BYTES,
                  max_regions: int | None = DEFAULT_MAX_REGIONS, workers: int = 1) -> "PackedFeatureStore":
    """Pack `source` (all its images, or `ids`) into `out/`; same input -> byte-identical files (any `workers`).

    `max_regions`: keep the first `max_regions` regions of each image (what training reads, 50 in every config; None
    keeps all); the index records it and training refuses a store packed with fewer than its `data.max_regions`.
    `workers` > 1 reads and converts the images in that many processes (for per-image `.pt` folders, where reading
    is the cost; the source must be picklable and cheap to pickle).
    `source_key` (e.g. `source_fingerprint` of a per-image folder) is stored in the index, so that a user of the
    store can tell that the source changed since it was packed.

    Every tensor is validated (2-D, one width across images, finite, within fp16 range). Files are written under
    temporary names and renamed at the end (`cvil.fileio.atomic_paths`), so an interrupted pack never leaves a store that looks complete.
    The sha256 of every `block_bytes` block of `features.f16` goes into the index (checked when the store is opened).
    """
    if max_regions is not None and max_regions < 1:
        raise ValueError(f"max_regions must be >= 1 (or None for all), got {max_regions}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    given_dim = dim
    wanted = sorted(set(source.ids() if ids is None else ids))
    index: dict[str, list[int]] = {}
    offset = truncated = 0
    hasher = _BlockHasher(block_bytes)
    _marker_path(out).unlink(missing_ok=True)
    with atomic_paths(out / FEATURES_FILE, out / INDEX_FILE) as (tmp_features, tmp_index):  # the index last
        with open(tmp_features, "wb") as handle:
            rows = _rows_in_order(source, wanted, max_regions, workers)
            for img_id, half, n_all in _progress(rows, f"packing {source.path.name}", progress, len(wanted)):
                if half.shape[0]:
                    if dim is not None and half.shape[1] != dim:
                        raise _odd_dim_error(source, wanted, given_dim)
                    dim = half.shape[1] if dim is None else dim
                    data = half.tobytes()
                    handle.write(data)
                    hasher.update(data)
                truncated += n_all > half.shape[0]
                index[str(img_id)] = [offset, int(half.shape[0])]
                offset += half.shape[0]
        if dim is None:
            raise DataFormatError(source.path, "all images",
                                  "at least one image with regions (to know the feature dim)", "none")
        meta = {"version": INDEX_VERSION, "dim": dim, "dtype": "float16", "ids": index,
                "checksum": {"algorithm": "sha256", "block_bytes": block_bytes, "blocks": hasher.result()}}
        if max_regions is not None:
            meta["max_regions"] = max_regions
            meta["truncated_images"] = truncated
        if source_key is not None:
            meta["source_key"] = source_key
        tmp_index.write_text(json.dumps(meta), encoding="utf-8")
    return PackedFeatureStore(out, verify=False)  # its digests were just taken from the bytes written


def _marker_path(store: Path) -> Path:
    store = store.resolve()
    return store.parent / f".{store.name}{VERIFIED_SUFFIX}"


def _odd_dim_error(source: FeatureSource, ids: list[int], expected: int | None) -> DataFormatError:
    """The images whose width differs from the usual one (or the asked-for `expected`), found by reading every
    image's width once more: only on this error path, so that the odd file is named even when it sorts first."""
    widths: dict[int, list[int]] = {}
    for img_id in ids:
        array = source.get(img_id)
        if array.shape[0]:
            widths.setdefault(array.shape[1], []).append(img_id)
    usual = expected if expected is not None else max(widths, key=lambda w: (len(widths[w]), -w))
    odd = sorted((i, w) for w, group in widths.items() if w != usual for i in group)
    img_id, width = odd[0]
    folder_like = source.path.is_dir() and (source.path / f"{img_id}.pt").is_file()
    where = source.path / f"{img_id}.pt" if folder_like else source.path
    more = f" ({len(odd) - 1} more images differ)" if len(odd) > 1 else ""
    return DataFormatError(where, f"img_id {img_id}", f"feature dim {usual} (as {len(widths.get(usual, []))} images)",
                           f"dim {width}{more}")


def source_fingerprint(folder: str | Path) -> str:
    """SHA-256 over the names, sizes and modification times of a per-image feature folder's `.pt` files: cheap (one
    `stat` per file), and it changes when any file is edited, added or removed."""
    import hashlib

    digest = hashlib.sha256()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.endswith(".pt") and entry.is_file():
            info = entry.stat()
            digest.update(f"{entry.name}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def packed_from(packed: str | Path, source_dir: str | Path) -> bool:
    """Whether the store at `packed` exists and, when the per-image folder `source_dir` is there, was packed from
    exactly its current files (a store with no such folder beside it, e.g. packed from a TSV, is taken as it is)."""
    packed, source_dir = Path(packed), Path(source_dir)
    if not (packed / INDEX_FILE).exists():
        return False
    return not source_dir.is_dir() or PackedFeatureStore(packed).source_key == source_fingerprint(source_dir)


class PackedFeatureStore:
    """Read-only access to a packed store; safe to pass to DataLoader workers (the memmap is reopened lazily)."""

    def __init__(self, path: str | Path, *, verify: bool | None = None) -> None:
        """Open the store at `path`. `verify`: None (default) hashes `features.f16` against the index's block
        digests unless an unchanged copy of it was verified before (module docstring); True always hashes; False
        never does (the pack that just wrote it)."""
        from cvil.data.json_file import load_json

        self.path = Path(path)
        index_path = self.path / INDEX_FILE
        index = load_json(index_path, "a packed-store index (run `cvil data pack`)")
        if not isinstance(index, dict) or index.get("dtype") != "float16" or not isinstance(index.get("dim"), int):
            raise DataFormatError(index_path, "top level", '{"dim": int, "dtype": "float16", "ids": {...}}', repr(index)[:80])
        self.dim: int = index["dim"]
        self.source_key: str | None = index.get("source_key")  # set when packed from a fingerprinted folder
        packed_regions = index.get("max_regions")  # regions kept per image by the pack; None: all (older stores)
        self.max_regions: int | None = packed_regions if isinstance(packed_regions, int) else None
        try:
            entries = {int(k): (int(v[0]), int(v[1])) for k, v in index["ids"].items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise DataFormatError(index_path, "ids", "{img_id: [offset, n]}", repr(index.get("ids"))[:80]) from None
        self._entries = entries
        self.total_regions = sum(n for _, n in entries.values())
        size = (self.path / FEATURES_FILE).stat().st_size if (self.path / FEATURES_FILE).exists() else None
        expected = self.total_regions * self.dim * DTYPE.itemsize
        if size != expected:
            raise DataFormatError(self.path / FEATURES_FILE, "file size", f"{expected} bytes ({self.total_regions} x {self.dim} float16)",
                                  "no such file" if size is None else f"{size} bytes")
        for img_id, (offset, n) in entries.items():
            if offset < 0 or n < 0 or offset + n > self.total_regions:
                raise DataFormatError(index_path, f"img_id {img_id}", f"rows inside [0, {self.total_regions})", [offset, n])
        self._array: np.memmap | None = None
        if verify is not False:
            self._verify(index.get("checksum"), expected, always=bool(verify))

    def _verify(self, checksum: object, size: int, *, always: bool) -> None:
        """Hash `features.f16` block by block against the digests the pack recorded (once per unchanged file)."""
        index_path, features = self.path / INDEX_FILE, self.path / FEATURES_FILE
        if checksum is None:
            if self.path not in _warned_unverifiable:
                _warned_unverifiable.add(self.path)
                log.warning("packed store %s has no block checksums (packed by an older cvil), so changed bytes in "
                            "%s cannot be detected; %s to add them", self.path, FEATURES_FILE, REPACK)
            return
        block_bytes = checksum.get("block_bytes") if isinstance(checksum, dict) else None
        blocks = checksum.get("blocks") if isinstance(checksum, dict) else None
        n_blocks = -(-size // block_bytes) if type(block_bytes) is int and block_bytes > 0 else None
        if (n_blocks is None or checksum.get("algorithm") != "sha256" or not isinstance(blocks, list)
                or len(blocks) != n_blocks or not all(isinstance(b, str) and len(b) == 64 for b in blocks)):
            raise DataFormatError(index_path, "checksum", f'{{"algorithm": "sha256", "block_bytes": int > 0, '
                                  f'"blocks": [one hex digest per block of the {size}-byte {FEATURES_FILE}]}}',
                                  repr(checksum)[:80])
        info = os.stat(features)
        key = (str(features.resolve()), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino,
               hashlib.sha256(json.dumps(checksum, sort_keys=True).encode()).hexdigest())
        changed_ns = max(info.st_mtime_ns, info.st_ctime_ns)
        if not always and (_verified.get(key, 0) - changed_ns >= RACY_NS or self._marker_trusts(key, changed_ns)):
            return
        verified_at = time.time_ns()
        self._check_blocks(blocks, block_bytes, size)
        _verified[key] = verified_at
        marker = _marker_path(self.path)
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        try:  # best effort: a store in a read-only folder is hashed once per process instead
            tmp.unlink(missing_ok=True)  # never write through a leftover (or planted) link
            tmp.write_text(json.dumps({"key": list(key), "verified_at_ns": verified_at}), encoding="utf-8")
            os.replace(tmp, marker)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _check_blocks(self, blocks: list[str], block_bytes: int, size: int) -> None:
        with open(self.path / FEATURES_FILE, "rb") as handle:
            for i, digest in enumerate(blocks):
                if hashlib.sha256(handle.read(block_bytes)).hexdigest() != digest:
                    raise self._bad_block(i, len(blocks), block_bytes, size)

    def _marker_trusts(self, key: tuple, changed_ns: int) -> bool:
        try:
            marker = json.loads(_marker_path(self.path).read_text(encoding="utf-8"))
            trusted = tuple(marker["key"]) == key and int(marker["verified_at_ns"]) - changed_ns >= RACY_NS
        except (OSError, ValueError, KeyError, TypeError):  # absent or damaged marker: hash again
            return False
        if trusted:
            _verified[key] = int(marker["verified_at_ns"])
        return trusted

    def _bad_block(self, block: int, n_blocks: int, block_bytes: int, size: int) -> DataFormatError:
        start, end = block * block_bytes, min(size, (block + 1) * block_bytes)
        row_bytes = self.dim * DTYPE.itemsize
        first_row, last_row = start // row_bytes, (end - 1) // row_bytes
        ids = sorted(i for i, (offset, n) in self._entries.items()
                     if n and offset <= last_row and offset + n > first_row)
        images = f"img_id {ids[0]}" if len(ids) == 1 else f"img_ids {ids[0]}..{ids[-1]} ({len(ids)} images)"
        return DataFormatError(self.path / FEATURES_FILE, f"block {block} of {n_blocks} (bytes {start}-{end - 1}, "
                               f"{images})", f"the sha256 recorded in {INDEX_FILE} when the store was packed",
                               f"another: packed store {self.path} changed after packing; {REPACK}")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    @property
    def array(self) -> np.ndarray:
        """The `[total_regions, D]` fp16 memmap (opened on first use)."""
        if self._array is None:
            shape = (self.total_regions, self.dim)
            self._array = (np.memmap(self.path / FEATURES_FILE, dtype=DTYPE, mode="r", shape=shape)
                           if self.total_regions else np.zeros(shape, dtype=DTYPE))
        return self._array

    def ids(self) -> list[int]:
        return sorted(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, img_id: object) -> bool:
        return img_id in self._entries

    def num_regions(self, img_id: int) -> int:
        return self._entry(img_id)[1]

    def _entry(self, img_id: int) -> tuple[int, int]:
        try:
            return self._entries[img_id]
        except KeyError:
            raise DataFormatError(self.path, f"img_id {img_id}", "region features for this image",
                                  "not in the packed store") from None

    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]:
        """`(float32 [max_regions, D], n)` with the first `n = min(regions, max_regions)` rows filled, rest zeros."""
        offset, n = self._entry(img_id)
        return padded_regions(np.array(self.array[offset : offset + min(n, max_regions)]), max_regions)

    def _entries_of(self, img_ids: Sequence[int]) -> np.ndarray:
        return np.array([self._entry(i) for i in img_ids], dtype=np.int64).reshape(-1, 2)

    def region_counts(self, img_ids: Sequence[int], max_regions: int) -> np.ndarray:
        """The `n_regions` (int64 [B]) that `get_batch` gives, from the index alone: a DataLoader worker that leaves
        the features to the main process (`cvil.inputs.loader.FeatureLoader`) still builds the attention mask."""
        return np.minimum(self._entries_of(img_ids)[:, 1], max_regions)

    def get_batch(self, img_ids: Sequence[int], max_regions: int, dtype: torch.dtype = torch.float32,
                  out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`([B, max_regions, D], n_regions long [B])`, each image as `get` gives it. `dtype=torch.float16` keeps the
        stored values as they are (no widening: the batch path moves them to the device in fp16, half the bytes);
        `out`: an fp16 `[B, max_regions, D]` tensor to fill, every row written (e.g. pinned memory, so that the batch
        reaches the accelerator without another copy)."""
        entries = self._entries_of(img_ids)
        n = np.minimum(entries[:, 1], max_regions)
        if dtype == torch.float16:  # one copy per image, straight from the memmap into the batch
            shape = (len(entries), max_regions, self.dim)
            fresh = out is None
            if fresh:
                out = torch.from_numpy(np.zeros(shape, dtype=DTYPE))
            elif tuple(out.shape) != shape or out.dtype != torch.float16:
                raise ValueError(f"out is {out.dtype} {tuple(out.shape)}, not float16 {shape}")
            array, target = self.array.view(np.ndarray), out.numpy()  # plain slices: a memmap's cost ~10 µs each
            for b, (offset, k) in enumerate(zip(entries[:, 0].tolist(), n.tolist())):
                target[b, :k] = array[offset : offset + k]
                if not fresh:
                    target[b, k:] = 0
            return out, torch.from_numpy(n)
        mask = np.arange(max_regions)[None, :] < n[:, None]
        rows = (entries[:, :1] + np.arange(max_regions)[None, :])[mask]
        out = torch.zeros(len(entries), max_regions, self.dim)
        out[torch.from_numpy(mask)] = torch.from_numpy(self.array[rows]).float()
        return out.to(dtype), torch.from_numpy(n)
