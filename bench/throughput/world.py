"""Throughput benchmark, the inputs: the tiny synthetic world with region features of the benchmarked size."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

@dataclass
class BenchWorld:
    """QLA rows, both tokenizers, and the size's region features (packed store + per-image `.pt` files)."""

    root: Path
    rows: list
    teacher_tokenizer: Any
    student_tokenizer: Any
    store: Any  # PackedFeatureStore
    pt_dir: Path
    num_labels: int


class _PtFeatures:
    """Per-image `.pt` files read with `torch.load` at every lookup (the reference's feature path)."""

    def __init__(self, folder: Path) -> None:
        from cvil.data.region_features import PtDirSource

        self.source = PtDirSource(folder)

    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]:
        from cvil.data.region_features import padded_regions

        return padded_regions(self.source.get(img_id), max_regions)


def make_world(img_dim: int, root: str | Path | None = None, seed: int = 0) -> BenchWorld:
    """The tiny synthetic world (generated once into `root`, a temp dir by default), with region features of
    `img_dim` dims: the world's region count per image, random non-negative values (as detector features)."""
    from cvil.data.feature_store import PackedFeatureStore, pack_features
    from cvil.data.label_maps import load_label_maps
    from cvil.data.layout import feature_dir, qla_path
    from cvil.data.qla import read_qla
    from cvil.data.region_features import PtDirSource
    from cvil.data.synth.writer import generate
    from cvil.data.tokenizers import load_tokenizer

    if root is None:
        root = Path(tempfile.mkdtemp(prefix="cvil-throughput-"))
        atexit.register(shutil.rmtree, root, True)
    root = Path(root)
    if not (root / "world.json").is_file():
        generate("tiny", seed, root)
    vqa = root / "vqa"
    rows, n_regions = [], {}
    for split in ("train", "val"):
        split_rows = read_qla(qla_path(vqa, split)).rows
        rows.extend(split_rows)
        for img_id in sorted({r.img_id for r in split_rows}):
            if img_id not in n_regions:
                n_regions[img_id] = len(torch.load(feature_dir(vqa, split) / f"{img_id}.pt", weights_only=True))
    pt_dir = root / f"bench_features_{img_dim}"
    if not pt_dir.is_dir():
        tmp = root / f"bench_features_{img_dim}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, img_dim])
        for img_id, n in n_regions.items():
            feats = np.abs(rng.standard_normal((n, img_dim), dtype=np.float32))
            torch.save(torch.from_numpy(feats), tmp / f"{img_id}.pt")
        tmp.rename(pt_dir)
    packed = root / f"bench_packed_{img_dim}"
    store = (PackedFeatureStore(packed) if (packed / "index.json").is_file()
             else pack_features(PtDirSource(pt_dir), packed, progress=False))
    return BenchWorld(root, rows, load_tokenizer(root / "tokenizers" / "teacher"),
                      load_tokenizer(root / "tokenizers" / "student"), store, pt_dir, len(load_label_maps(vqa)))

