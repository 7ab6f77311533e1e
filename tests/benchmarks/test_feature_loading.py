"""Feature loading throughput: one batch of 32 images' regions from the packed store vs per-image `.pt` vs TSV.

Run with `pytest tests/benchmarks/test_feature_loading.py --benchmark-only`. Features are VinVL-sized (D = 2054,
10..100 regions, truncated/padded to 50); the files are small enough to sit in the page cache, so this measures
decoding and copying, not disk. Each batch is a random draw of image ids, as a shuffled DataLoader would make.
"""

from __future__ import annotations

import base64
import itertools
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch

from cvil.data.feature_store import pack_features
from cvil.data.region_features import open_feature_source

D, N_IMAGES, BATCH, MAX_REGIONS, ROUNDS = 2054, 96, 32, 50, 15


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    features = {img_id: rng.random((int(rng.integers(10, 101)), D), dtype=np.float32) for img_id in range(N_IMAGES)}
    (root / "train").mkdir()
    offsets, position = {}, 0
    with open(root / "train.tsv", "wb") as tsv:
        for img_id, array in features.items():
            torch.save(torch.from_numpy(array), root / "train" / f"{img_id}.pt")
            offsets[str(img_id)] = position
            position += tsv.write(f"{img_id}\t{len(array)}\t".encode() + base64.b64encode(array.tobytes()) + b"\n")
    (root / "offsets.json").write_text(json.dumps(offsets))
    pt_dir = open_feature_source("pt-dir", root / "train")
    order = rng.permutation(N_IMAGES).tolist()
    return {
        "store": pack_features(pt_dir, root / "packed", progress=False),
        "pt-dir": pt_dir,
        "tsv": open_feature_source("tsv", root / "train.tsv", root / "offsets.json"),
        "batches": itertools.cycle([order[i : i + BATCH] for i in range(0, N_IMAGES, BATCH)]),
    }


def _pad_stack(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the per-image path must do after reading: truncate to MAX_REGIONS, zero-pad, stack."""
    out = torch.zeros(len(arrays), MAX_REGIONS, D)
    n = torch.tensor([min(len(a), MAX_REGIONS) for a in arrays])
    for b, array in enumerate(arrays):
        out[b, : n[b]] = torch.from_numpy(array[: n[b]])
    return out, n


def _run(benchmark, load_batch, batches) -> None:
    feats, n = benchmark(lambda: load_batch(next(batches)))
    assert feats.shape == (BATCH, MAX_REGIONS, D) and feats.dtype == torch.float32 and len(n) == BATCH
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["samples_per_s"] = round(BATCH / benchmark.stats.stats.median, 1)


def _loaders(world) -> dict[str, Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]]]:
    def packed_per_image(ids):
        items = [world["store"].get(i, MAX_REGIONS) for i in ids]
        return torch.stack([f for f, _ in items]), torch.tensor([n for _, n in items])

    return {
        "packed_get_batch": lambda ids: world["store"].get_batch(ids, MAX_REGIONS),
        "packed_get_per_image": packed_per_image,
        "pt_files": lambda ids: _pad_stack([world["pt-dir"].get(i) for i in ids]),
        "tsv_offset_map": lambda ids: _pad_stack([world["tsv"].get(i) for i in ids]),
    }


@pytest.mark.parametrize("variant", ["packed_get_batch", "packed_get_per_image", "pt_files", "tsv_offset_map"])
def test_feature_loading(benchmark, world, variant):
    _run(benchmark, _loaders(world)[variant], world["batches"])


def test_feature_loading_alternated(benchmark, world):
    """All variants alternated in one process (the trustworthy comparison on a shared machine): per variant the
    median batch time gives `samples_per_s`, and its ratio to the packed store's `get_batch` goes to `extra_info`."""
    loaders, times = _loaders(world), {}

    def one_round():
        for name, load in loaders.items():
            start = time.perf_counter()
            load(next(world["batches"]))
            times.setdefault(name, []).append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        benchmark.extra_info[f"{name}.samples_per_s"] = round(BATCH / median, 1)
        benchmark.extra_info[f"{name}.slowdown_vs_packed"] = round(median / medians["packed_get_batch"], 2)
