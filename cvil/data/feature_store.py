"""The packed feature store: every image's regions in one memory-mapped fp16 array, plus a JSON index.

Training reads region features for every sample; opening one `.pt` file per image (or decoding base64 TSV rows)
costs far more than the model needs. `pack_features` converts any `FeatureSource` once into

    features.f16   raw little-endian float16, shape [total_regions, D] (read with numpy.memmap)
    index.json     {"dim": D, "dtype": "float16", "ids": {img_id: [offset, n]}}

and `PackedFeatureStore` serves `[max_regions, D]` float32 tensors, truncated to the first `max_regions` regions and
zero-padded, as the reference does. fp16 halves the size (the reference's teacher cache is fp16 too); values beyond
the fp16 range are rejected at pack time rather than stored as inf.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from cvil.data.errors import DataFormatError
from cvil.data.region_features import FeatureSource, check_features, padded_regions
from cvil.fileio import atomic_paths

FEATURES_FILE = "features.f16"
INDEX_FILE = "index.json"
DTYPE = np.dtype("<f2")
INDEX_VERSION = 1


def _progress(items: Sequence[int], description: str, show: bool | None) -> Iterable[int]:
    from tqdm import tqdm

    disable = not sys.stderr.isatty() if show is None else not show
    return tqdm(items, desc=description, unit="img", disable=disable)


def pack_features(source: FeatureSource, out: str | Path, *, ids: Iterable[int] | None = None,
                  dim: int | None = None, progress: bool | None = None,
                  source_key: str | None = None) -> "PackedFeatureStore":
    """Pack `source` (all its images, or `ids`) into `out/`; same input -> byte-identical files.

    `source_key` (e.g. `source_fingerprint` of a per-image folder) is stored in the index, so that a user of the
    store can tell that the source changed since it was packed.

    Every tensor is validated (2-D, one width across images, finite, within fp16 range). Files are written under
    temporary names and renamed at the end (`cvil.fileio.atomic_paths`), so an interrupted pack never leaves a store that looks complete.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    given_dim = dim
    wanted = sorted(set(source.ids() if ids is None else ids))
    index: dict[str, list[int]] = {}
    offset = 0
    with atomic_paths(out / FEATURES_FILE, out / INDEX_FILE) as (tmp_features, tmp_index):  # the index last
        with open(tmp_features, "wb") as handle:
            for img_id in _progress(wanted, f"packing {source.path.name}", progress):
                array = check_features(source.get(img_id), source.path, img_id)
                if array.shape[0]:
                    if dim is not None and array.shape[1] != dim:
                        raise _odd_dim_error(source, wanted, given_dim)
                    dim = array.shape[1] if dim is None else dim
                    with np.errstate(over="ignore"):  # overflow becomes inf, which the next line reports
                        half = array.astype(DTYPE)
                    if not np.isfinite(half).all():
                        raise DataFormatError(source.path, f"img_id {img_id}",
                                              "values within the float16 range (|x| <= 65504)",
                                              f"max |x| = {float(np.abs(array).max()):g}")
                    handle.write(half.tobytes())
                index[str(img_id)] = [offset, int(array.shape[0])]
                offset += array.shape[0]
        if dim is None:
            raise DataFormatError(source.path, "all images",
                                  "at least one image with regions (to know the feature dim)", "none")
        meta = {"version": INDEX_VERSION, "dim": dim, "dtype": "float16", "ids": index}
        if source_key is not None:
            meta["source_key"] = source_key
        tmp_index.write_text(json.dumps(meta), encoding="utf-8")
    return PackedFeatureStore(out)


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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX_FILE
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataFormatError(index_path, "file", "a packed-store index (run `cvil data pack`)", "no such file") from None
        except json.JSONDecodeError as exc:
            raise DataFormatError(index_path, f"line {exc.lineno} column {exc.colno}", "valid JSON", exc.msg) from None
        if not isinstance(index, dict) or index.get("dtype") != "float16" or not isinstance(index.get("dim"), int):
            raise DataFormatError(index_path, "top level", '{"dim": int, "dtype": "float16", "ids": {...}}', repr(index)[:80])
        self.dim: int = index["dim"]
        self.source_key: str | None = index.get("source_key")  # set when packed from a fingerprinted folder
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

    def get_batch(self, img_ids: Sequence[int], max_regions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(float32 [B, max_regions, D], n_regions long [B])`, with one fancy-index read of the memmap."""
        entries = np.array([self._entry(i) for i in img_ids], dtype=np.int64).reshape(-1, 2)
        n = np.minimum(entries[:, 1], max_regions)
        mask = np.arange(max_regions)[None, :] < n[:, None]
        rows = (entries[:, :1] + np.arange(max_regions)[None, :])[mask]
        out = torch.zeros(len(entries), max_regions, self.dim)
        out[torch.from_numpy(mask)] = torch.from_numpy(self.array[rows]).float()
        return out, torch.from_numpy(n)
