"""Throughput of the KD / AUG / eval steps and of data loading, beside the naive reference step (`bench.throughput`).

Skipped by the default test command (`--benchmark-skip`); run with `nox -s throughput` or
`pytest tests/benchmarks/test_throughput.py --benchmark-only`. One thread. Two kinds of test:

- `test_step_variants[kind]`: every variant of the step (optimized, naive, one feature off at a time), alternated round
  by round inside one benchmark call; samples/s, ×naive and ×optimized per variant go to `extra_info` (the ratios are
  what to compare across machines; pytest-benchmark's own time is the whole alternating measurement);
- `test_optimized_step[kind]` / `test_naive_kd_step`: pytest-benchmark's own timing of one step of the default
  configuration (and of the naive KD step), with `samples_per_s` from its median in `extra_info`.

`small` runs too (hidden 128 x 4 layers, 50 slots of 2054-d regions; about a minute per test on one CPU thread).
"""

from __future__ import annotations

import pytest
import torch

from bench.throughput.harness import Harness
from bench.throughput.variants import NAIVE, default_variant, variants_for

SIZES = ["tiny", "small"]
ROUNDS = {"tiny": 7, "small": 3}


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def harnesses(one_thread, tmp_path_factory):
    root = tmp_path_factory.mktemp("throughput_world")
    cache: dict[str, Harness] = {}

    def get(size: str) -> Harness:
        if size not in cache:
            cache[size] = Harness(size, device="cpu", world_root=root)
        return cache[size]

    return get


def _save(benchmark, rows) -> None:
    benchmark.extra_info.update(
        samples_per_s={r.variant: round(r.samples_per_s, 1) for r in rows},
        vs_naive={r.variant: round(r.vs_naive, 2) for r in rows if r.vs_naive is not None},
        vs_optimized={r.variant: round(r.vs_optimized, 2) for r in rows if r.vs_optimized is not None},
        peak_mem_mb={r.variant: r.peak_mem_mb and round(r.peak_mem_mb, 1) for r in rows},
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["kd", "aug", "eval"])
def test_step_variants(benchmark, harnesses, size, kind):
    harness = harnesses(size)
    variants = variants_for(kind, "cpu")
    rows = benchmark.pedantic(lambda: harness.measure(kind, variants, ROUNDS[size]), rounds=1, iterations=1)
    _save(benchmark, rows)
    benchmark.extra_info.update(size=size, step=kind, batch_size=harness.batch_size)
    print(f"\n{size} {kind}: {benchmark.extra_info}")
    assert all(r.samples_per_s > 0 for r in rows)


@pytest.mark.parametrize("size", SIZES)
def test_data_loading(benchmark, harnesses, size):
    harness = harnesses(size)
    rows = benchmark.pedantic(lambda: harness.measure_loading(ROUNDS[size]), rounds=1, iterations=1)
    _save(benchmark, rows)
    benchmark.extra_info.update(size=size, step="loading")
    assert all(r.samples_per_s > 0 for r in rows)


def _timed_step(benchmark, harness: Harness, kind: str, variant, name: str) -> None:
    runner = harness.runner(kind, name, variant)
    for i in range(harness.n_batches):  # one warm-up step per batch shape
        runner.step(i)
    batches = iter(range(10**9))
    rounds = 4 * harness.n_batches if harness.size.name == "tiny" else harness.n_batches
    benchmark.pedantic(lambda: runner.step(next(batches) % harness.n_batches), rounds=rounds, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["samples_per_s"] = round(harness.batch_size / benchmark.stats.stats.median, 1)
    benchmark.extra_info.update(size=harness.size.name, step=kind, variant=name)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["kd", "aug", "eval"])
def test_optimized_step(benchmark, harnesses, size, kind):
    _timed_step(benchmark, harnesses(size), kind, default_variant("cpu"), "optimized")


@pytest.mark.parametrize("size", SIZES)
def test_naive_kd_step(benchmark, harnesses, size):
    _timed_step(benchmark, harnesses(size), "kd", NAIVE, "naive")
