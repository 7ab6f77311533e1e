"""The scale benchmark (`bench/scale.py`) on a small variant: it runs, and the batch path beats the per-example path.

Only a ratio measured in one process is asserted (absolute times on a shared machine mean nothing)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_the_batch_path_beats_the_per_example_path_at_paper_dimensions(tmp_path):
    from bench.scale import _memory, _throughput, build_world, open_split

    folder = build_world(tmp_path, rows=20_000, images=200)
    ds, _ = open_split(folder, tmp_path)  # cold: builds the encoded cache, then serves it memory-mapped
    assert len(ds) == 20_000 and ds._ids.flat.flags.writeable is False
    figures = _throughput(ds, batches=15, workers=0)
    assert figures["ratio_new_over_old"] >= 1.5, figures
    with_workers = _throughput(ds, batches=3, workers=2)  # the training code's loader, whose workers skip features
    assert all(len(with_workers[path]["worker_memory"]) == 2 for path in ("new", "old")), with_workers
    assert _memory()["rss_mb"] > 0
