"""The region features of one split, as training reads them: the one owner of the choice "the packed store when it is
current, else the per-image `.pt` files".

A split's features are in its packed store (`layout.packed_store_path`, what training reads) and/or its per-image
folder (`layout.feature_dir`, `{img_id}.pt`). The store is *current* when it exists and, when the per-image folder is
there too, was packed from exactly its files (`feature_store.packed_from`); a store with no per-image folder beside it
(packed from a TSV or a VinVL file) is taken as it is. A stale store is rebuilt by training on first use
(`cvil.train.data_setup.feature_store`), so everything else reads the per-image files instead: `validate`,
`embed-plot` and the model's input width (`cvil.train.model_setup`) all open the split here. Nothing is written.
(`cvil.train.run_metadata.features_digest` prefers the per-image folder on purpose, for a digest that does not change
when the store is packed.)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.feature_store import INDEX_FILE, PackedFeatureStore, packed_from
from cvil.data.region_features import PtDirSource, padded_regions


def store_is_current(folder: str | Path, split: str) -> bool:
    """Whether the split's packed store can be used as it is: it exists and, when the per-image folder it is built
    from is there, was packed from exactly these files (same names, sizes and mtimes). A store with no per-image
    folder beside it (packed from a TSV or a VinVL file) is used as it is."""
    return packed_from(layout.packed_store_path(folder, split), layout.feature_dir(folder, split))


class SplitFeatures:
    """One split's features: `store` (a current packed store) or `source` (the per-image `.pt` files), never both.

    `stale`: a packed store is there but out of date (the per-image files changed since it was packed), so the
    per-image files are read. `root`/`description`: where the features are read from, for messages."""

    def __init__(self, folder: Path, split: str, store: PackedFeatureStore | None, source: PtDirSource | None,
                 stale: bool) -> None:
        self.folder, self.split, self.store, self.source, self.stale = folder, split, store, source, stale
        if store is not None:
            self.root = store.path
            self.description = f"packed {_relative(store.path, folder)}/"
        else:
            self.root = source.path
            self.description = f"{source.path.name}/*.pt"
        self._widths: dict[int, int] = {}

    def ids(self) -> list[int]:
        """The image ids with features, sorted."""
        return self.store.ids() if self.store is not None else self.source.ids()

    @cached_property
    def dim(self) -> int:
        """The feature width: the store's, else that of the first per-image file (packing names any other width)."""
        if self.store is not None:
            return self.store.dim
        ids = self.source.ids()
        if not ids:
            raise DataFormatError(self.source.path, "folder", "per-image {img_id}.pt region features", "none found")
        return int(self.source.get(ids[0]).shape[1])

    def width(self, img_id: int) -> int:
        """Feature width of one image (-1 when it has no regions), reading and so checking its tensor once, unless
        the pack already checked it."""
        if self.store is not None:
            return self.store.dim
        if img_id not in self._widths:
            array = self.source.get(img_id)
            self._widths[img_id] = array.shape[1] if array.shape[0] else -1
        return self._widths[img_id]

    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]:
        """`(float32 [max_regions, D], n)`, as `PackedFeatureStore.get` gives it."""
        if self.store is not None:
            return self.store.get(img_id, max_regions)
        return padded_regions(self.source.get(img_id), max_regions)


def _relative(path: Path, folder: Path) -> Path:
    try:
        return path.relative_to(folder)
    except ValueError:
        return path


def open_split_features(folder: str | Path, split: str) -> SplitFeatures:
    """The split's packed store when it is current, else its per-image `.pt` files; a `DataFormatError` naming both
    paths when neither exists."""
    folder = Path(folder)
    packed, per_image = layout.packed_store_path(folder, split), layout.feature_dir(folder, split)
    has_store = (packed / INDEX_FILE).exists()
    current = has_store and store_is_current(folder, split)
    if current:
        return SplitFeatures(folder, split, PackedFeatureStore(packed), None, stale=False)
    if per_image.is_dir():
        return SplitFeatures(folder, split, None, PtDirSource(per_image), stale=has_store)
    hint = layout.pack_hint(folder, split)
    raise DataFormatError(per_image, "folder", f"per-image features (or a packed store in {packed})",
                          f"neither exists; {hint}" if hint else "neither exists")
