"""`FeatureLoader`: a DataLoader whose workers leave the region features to the main process.

A KD batch's region features (fp16 `[B, 50, 2054]`, ~6.5 MB at paper size) are most of its bytes and little of its
work: a worker that copies them out of the packed store spends more time faulting in the fresh shared-memory tensor
and handing it to the main process than on the text (issue 27). The packed store is a memory map, whose pages are the
OS's file cache and so shared by every process anyway; so with workers, `VQADataset.__getitems__` in a worker puts a
`PendingFeatures` (the batch's image ids) where the features go, and the loader reads them from the store in the main
process as the batch leaves the DataLoader: one copy from the file cache, straight into pinned memory when
`pin_memory` is on. The batches are the same tensors, in the same key order, as without workers (tested).

Without workers, or over a dataset whose store has no batch reader (per-image `.pt` files), it is a plain DataLoader.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.data import DataLoader, get_worker_info

from cvil.inputs.collate import PendingFeatures


def _features_in_main(worker_init_fn, worker_id: int) -> None:
    """Worker start: this worker's copy of the dataset leaves its batches' features to the main process."""
    get_worker_info().dataset.features_in_main = True
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


class FeatureLoader(DataLoader):
    """A `DataLoader` (same arguments, by keyword) over a `VQADataset`; see the module docstring."""

    def __init__(self, dataset, *, num_workers: int = 0, worker_init_fn=None, **kwargs) -> None:
        self.reads_features = num_workers > 0 and getattr(dataset, "reads_batches", False)
        if self.reads_features:
            worker_init_fn = functools.partial(_features_in_main, worker_init_fn)
        super().__init__(dataset, num_workers=num_workers, worker_init_fn=worker_init_fn, **kwargs)

    def __iter__(self):
        batches = super().__iter__()
        if not self.reads_features:
            return batches
        pin = self.pin_memory and torch.accelerator.is_available()  # as the DataLoader decides it
        return (self._with_features(batch, pin) for batch in batches)

    def _with_features(self, batch: dict, pin: bool) -> dict:
        pending = batch.get("img_feats") if isinstance(batch, dict) else None
        if isinstance(pending, PendingFeatures):  # replaced in place: the keys keep their order
            batch["img_feats"] = self.dataset.read_features(pending.img_ids, pin_memory=pin)[0]
        return batch
