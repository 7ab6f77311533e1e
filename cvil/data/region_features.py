"""Readers for the three region-feature formats of the reference, behind one small `FeatureSource` protocol.

- `pt-dir`: one `{img_id}.pt` float32 tensor `[n, D]` per image (what `features-split.py` writes and training reads);
- `vinvl-pt`: one `{split}_img_frcnn_feats.pt` holding `{img_id: tensor}` (memory-mapped when it is a zip-format
  file, so a whole split is not read into memory at once);
- `tsv`: VinVL rows `img_id \\t num_boxes \\t base64(float32[num_boxes * D])` (row[0] key, row[1] count, row[-1]
  payload) with an optional offset map `{img_id: byte offset}` for random access.
Every tensor is loaded with `torch.load(weights_only=True)` and checked (2-D, expected width, finite), so a bad
image fails with its id instead of turning into NaN losses hours later.
"""

from __future__ import annotations

import binascii
import mmap
import os
import zipfile
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json
from cvil.errors import UsageError
from cvil.suggest import unknown_choice


@runtime_checkable
class FeatureSource(Protocol):
    """Region features keyed by image id; `get` returns float32 `[n, D]` (n may exceed the model's max_regions)."""

    path: Path

    def ids(self) -> list[int]: ...

    def get(self, img_id: int) -> np.ndarray: ...


def padded_regions(array: np.ndarray, max_regions: int):
    """`(float32 tensor [max_regions, D], n)`: the first `n = min(len(array), max_regions)` rows of one image's
    features, the rest zeros (the reference truncates and zero-pads so)."""
    import torch

    n = min(len(array), max_regions)
    out = torch.zeros(max_regions, array.shape[1])
    if n:  # torch widens fp16 rows (much faster than numpy's fp16 cast)
        out[:n] = torch.from_numpy(np.ascontiguousarray(array[:n]))
    return out, n


def _as_img_id(key: object, path: Path, where: str) -> int:
    try:
        return int(key)  # dict and JSON keys may be ints or digit strings
    except (TypeError, ValueError):
        raise DataFormatError(path, where, "an integer image id", repr(key)) from None


def check_features(array: np.ndarray, path: str | Path, img_id: int, dim: int | None = None) -> np.ndarray:
    """Validate one image's features (2-D, `dim` wide unless empty, finite) and return them as float32."""
    if array.ndim != 2:
        raise DataFormatError(path, f"img_id {img_id}", "a 2-D [num_boxes, D] feature tensor", f"shape {tuple(array.shape)}")
    if dim is not None and array.shape[0] and array.shape[1] != dim:
        raise DataFormatError(path, f"img_id {img_id}", f"feature dim {dim}", f"dim {array.shape[1]}")
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise DataFormatError(path, f"img_id {img_id}", "finite features", f"NaN/inf at region {bad[0]}, dim {bad[1]}")
    return array


def _tensor_to_array(value: object, path: Path, img_id: int) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        raise DataFormatError(path, f"img_id {img_id}", "a feature tensor", type(value).__name__)
    if not value.is_floating_point():
        raise DataFormatError(path, f"img_id {img_id}", "a floating-point tensor", str(value.dtype))
    return value.detach().to("cpu", torch.float32).numpy()


def _torch_load(path: Path, *, mmap: bool = False) -> object:
    """`torch.load(weights_only=True)`; `mmap=True` maps a zip-format file (torch >= 1.6's default) instead of reading
    it: tensors are views of the file, read by the OS when first touched (a legacy-format file is read whole)."""
    import torch

    from cvil.torch_files import load_error_detail

    try:
        if mmap and zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt file or forbidden content (weights_only refuses arbitrary objects)
        raise DataFormatError(path, "file", "a tensor file loadable with weights_only=True",
                              load_error_detail(exc)) from exc


def _missing(path: Path, img_id: int) -> DataFormatError:
    return DataFormatError(path, f"img_id {img_id}", "region features for this image", "none found")


class PtDirSource:
    """A folder of per-image `{img_id}.pt` tensors."""

    def __init__(self, path: str | Path, dim: int | None = None) -> None:
        self.path, self.dim = Path(path), dim
        if not self.path.is_dir():
            raise DataFormatError(self.path, "folder", "a folder of {img_id}.pt files", "no such folder")

    def ids(self) -> list[int]:
        return sorted(int(p.stem) for p in self.path.glob("*.pt") if p.stem.lstrip("-").isdigit())

    def get(self, img_id: int) -> np.ndarray:
        file = self.path / f"{img_id}.pt"
        if not file.is_file():
            raise _missing(self.path, img_id)
        return check_features(_tensor_to_array(_torch_load(file), file, img_id), file, img_id, self.dim)


class VinVLDictSource:
    """One `.pt` file holding `{img_id: tensor}`. A zip-format file (what `torch.save` writes since torch 1.6) is
    memory-mapped (`torch.load(mmap=True)`): the dict and the tensors' headers are read, each image's bytes only when
    `get` reads them, so packing a 100 GB split does not need 100 GB of memory. A legacy-format file is loaded whole,
    as the reference does before splitting it."""

    def __init__(self, path: str | Path, dim: int | None = None) -> None:
        self.path, self.dim = Path(path), dim
        if not self.path.is_file():
            raise DataFormatError(self.path, "file", "a VinVL {img_id: tensor} .pt file", "no such file")
        value = _torch_load(self.path, mmap=True)
        if not isinstance(value, dict):
            raise DataFormatError(self.path, "top level", "a dict {img_id: tensor}", type(value).__name__)
        self._tensors = {_as_img_id(k, self.path, f"key {k!r}"): v for k, v in value.items()}

    def ids(self) -> list[int]:
        return sorted(self._tensors)

    def get(self, img_id: int) -> np.ndarray:
        if img_id not in self._tensors:
            raise _missing(self.path, img_id)
        return check_features(_tensor_to_array(self._tensors[img_id], self.path, img_id), self.path, img_id, self.dim)


class TsvSource:
    """VinVL feature TSV; rows are found through the offset map, or by one scan of the file when there is none."""

    def __init__(self, path: str | Path, offset_map: str | Path | None = None, dim: int | None = None) -> None:
        self.path, self.dim = Path(path), dim
        if not self.path.is_file():
            raise DataFormatError(self.path, "file", "a VinVL feature TSV", "no such file")
        size = self.path.stat().st_size
        self._offsets = self._read_offset_map(Path(offset_map), size) if offset_map else self._scan()
        self._map: mmap.mmap | None = None

    def _read_offset_map(self, map_path: Path, size: int) -> dict[int, int]:
        raw = load_json(map_path, "an offset map JSON {img_id: byte offset}")
        if not isinstance(raw, dict):
            raise DataFormatError(map_path, "top level", "a dict {img_id: byte offset}", type(raw).__name__)
        offsets = {}
        for key, offset in raw.items():
            img_id = _as_img_id(key, map_path, f"key {key!r}")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise DataFormatError(map_path, f"key {key!r}", "a non-negative int byte offset", repr(offset))
            if offset >= size:
                raise DataFormatError(map_path, f"key {key!r}", f"an offset inside {self.path.name} ({size} bytes)", offset)
            offsets[img_id] = offset
        return offsets

    def _scan(self) -> dict[int, int]:
        offsets, position = {}, 0
        with open(self.path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                img_id = _as_img_id(line.split(b"\t", 1)[0].decode(errors="replace"), self.path, f"line {line_no}")
                if img_id in offsets:
                    raise DataFormatError(self.path, f"line {line_no}", "each img_id once", f"img_id {img_id} again")
                offsets[img_id] = position
                position += len(line)
        return offsets

    def _line_number(self, offset: int) -> int:
        """1-based line of a byte offset (only computed for error messages)."""
        with open(self.path, "rb") as handle:
            return handle.read(offset).count(b"\n") + 1

    def ids(self) -> list[int]:
        return sorted(self._offsets)

    def __getstate__(self) -> dict:  # a memory map does not cross process boundaries (DataLoader workers)
        return {**self.__dict__, "_map": None}

    def _row_bounds(self, offset: int) -> tuple[int, int]:
        """[start, end) of the row at `offset` in the memory-mapped file, without its line end."""
        if self._map is None:
            with open(self.path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        end = self._map.find(b"\n", offset)
        end = len(self._map) if end < 0 else end
        if end > offset and self._map[end - 1] == ord("\r"):
            end -= 1
        return offset, end

    def get(self, img_id: int) -> np.ndarray:
        if img_id not in self._offsets:
            raise _missing(self.path, img_id)
        start, end = self._row_bounds(self._offsets[img_id])

        def bad(expected: str, got: object) -> DataFormatError:
            return DataFormatError(self.path, f"line {self._line_number(start)} (img_id {img_id})", expected, got)

        # row[0] = key, row[1] = num_boxes, row[-1] = base64 payload: the payload (megabytes) is decoded in place
        payload_at = self._map.rfind(b"\t", start, end) + 1
        fields = self._map[start:payload_at].split(b"\t")
        if len(fields) < 3:
            raise bad("img_id \\t num_boxes \\t base64 features", f"{len(fields)} column(s)")
        if fields[0].strip() != str(img_id).encode():
            raise bad(f"the row of img_id {img_id} at byte {start}", f"key {fields[0].decode(errors='replace')!r}")
        try:
            num_boxes = int(fields[1])
            with memoryview(self._map) as view:
                payload = binascii.a2b_base64(view[payload_at:end], strict_mode=True)
        except (ValueError, binascii.Error) as exc:
            raise bad("an int box count and a complete base64 payload (truncated row?)", str(exc)) from None
        if num_boxes < 0 or (num_boxes == 0) != (len(payload) == 0) or (num_boxes and len(payload) % (4 * num_boxes)):
            raise bad(f"num_boxes ({num_boxes}) x D float32 values (truncated row?)", f"{len(payload)} bytes")
        width = len(payload) // (4 * num_boxes) if num_boxes else (self.dim or 0)
        array = np.frombuffer(payload, dtype="<f4").reshape(num_boxes, width).copy()  # writable, like the others
        return check_features(array, self.path, img_id, self.dim)


SOURCES: dict[str, Callable[..., FeatureSource]] = {
    "pt-dir": lambda path, offset_map=None, dim=None: PtDirSource(path, dim),
    "vinvl-pt": lambda path, offset_map=None, dim=None: VinVLDictSource(path, dim),
    "tsv": lambda path, offset_map=None, dim=None: TsvSource(path, offset_map, dim),
}


def open_feature_source(kind: str, path: str | Path, offset_map: str | Path | None = None,
                        dim: int | None = None) -> FeatureSource:
    """Open a feature source by format name (`pt-dir`, `vinvl-pt`, `tsv`)."""
    if kind not in SOURCES:
        raise UsageError(unknown_choice("feature source", kind, SOURCES))
    if offset_map is not None and kind != "tsv":
        raise UsageError(f"--offset-map only applies to tsv sources, not {kind!r}")
    return SOURCES[kind](os.fspath(path), offset_map, dim)
