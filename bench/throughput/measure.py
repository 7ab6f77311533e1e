"""Throughput benchmark, the measurement loop: variants timed side by side, alternating, and their peak memory.

It times whatever runners it is given (`Runner`: a name, a variant and a `step(i)` on batch `i`) and knows nothing
of how they were built: `bench.throughput.harness.Harness` builds them and passes its batches' figures in.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .flops import mfu
from .report import Row
from .variants import FIXED_TEXT, LANG, Variant
from .world import BenchWorld, _PtFeatures


@dataclass
class Runner:
    """One variant of one step, ready to time: `step(i)` runs a step on batch `i` (synchronised on CUDA)."""

    name: str
    variant: Variant
    step: Callable[[int], None]


# ---------------------------------------------------------------------------------------------------- memory
def _status_kb(field_name: str) -> int | None:
    try:
        match = re.search(rf"^{field_name}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _MemoryProbe:
    """Peak memory a step adds: CUDA allocator peak, or the RSS high-water mark (reset per step) on Linux."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_ok = device.type == "cpu" and _status_kb("VmHWM") is not None and self._reset_hwm()
        self.before = 0

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset the peak RSS to the current RSS
            return True
        except OSError:
            return False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        elif self.cpu_ok:
            _malloc_trim()  # hand freed heap pages back, so the step's allocations show up as new resident pages
            self._reset_hwm()
            self.before = (_status_kb("VmRSS") or 0) * 1024

    def stop(self) -> tuple[float | None, float | None]:
        """(peak added by the step, absolute peak) in MiB; None where not measurable."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            return (peak - self.before) / 2**20, peak / 2**20
        if self.cpu_ok:
            peak = (_status_kb("VmHWM") or 0) * 1024
            return max(0, peak - self.before) / 2**20, peak / 2**20
        return None, None



def measure_steps(kind: str, runners: Sequence[Runner], rounds: int, warmup: int | None = None, *,
                  device: torch.device, sync: Callable[[], None], batch_size: int, tokens: Sequence[int],
                  flops: Sequence[float], peak_flops: dict[str, float | None]) -> list[Row]:
    """Time every runner `rounds` times, alternating (order reversed each round), after `warmup` rounds.

    Per batch `i` of the runners: `tokens[i]` (the student's real tokens) and `flops[i]` (model FLOPs of one step);
    `peak_flops`: the device's peak FLOP/s by precision for the MFU (empty: no MFU); `sync` waits for the device.
    """
    n_batches = len(tokens)
    if warmup is None:
        warmup = n_batches * (3 if any(r.variant.compile for r in runners) else 1)
    for w in range(warmup):
        for r in runners:
            r.step(w % n_batches)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    used: list[int] = []
    for k in range(rounds):
        i = k % n_batches
        used.append(i)
        for r in (runners if k % 2 == 0 else runners[::-1]):
            sync()
            start = time.perf_counter()
            r.step(i)
            times[r.name].append(time.perf_counter() - start)
    # memory from one extra, untimed step per variant on the longest batch (the probe's trim would slow timing)
    probe, longest = _MemoryProbe(device), max(range(n_batches), key=tokens.__getitem__)
    mems: dict[str, tuple] = {}
    for r in runners:
        probe.start()
        r.step(longest)
        mems[r.name] = probe.stop()
    rows = []
    mean_tokens = statistics.mean(tokens[i] for i in used)
    mean_flops = statistics.mean(flops[i] for i in used)
    for r in runners:
        median = statistics.median(times[r.name])
        delta, absolute = mems[r.name]
        rows.append(Row(step=kind, variant=r.name, samples_per_s=batch_size / median,
                        tokens_per_s=mean_tokens / median, ms_median=1e3 * median, ms_min=1e3 * min(times[r.name]),
                        rounds=rounds, peak_mem_mb=delta, peak_mem_abs_mb=absolute, mfu=mfu(mean_flops, median, peak_flops.get(r.variant.precision)),
                        model_gflop_per_step=mean_flops / 1e9, settings=asdict(r.variant),
                        times_ms=[1e3 * t for t in times[r.name]]))
    _add_ratios(rows)
    return rows


def measure_loading(world: BenchWorld, rounds: int, workers: Sequence[int] = (0, 2), warmup: int = 1, *,
                    device: torch.device, sync: Callable[[], None], batch_size: int, max_regions: int,
                    num_labels: int, seed: int) -> list[Row]:
    """DataLoader throughput over the KD dataset with code-mixing (the KD stage's train loader) of `world`."""
    from cvil.inputs.collate import collate
    from cvil.inputs.loader import FeatureLoader
    from cvil.inputs.dataset import VQADataset
    from cvil.inputs.alignment import KDSelection

    w, r = world, max_regions
    cuda = device.type == "cuda"
    configs: dict[str, tuple[Any, int, bool, bool]] = {}  # name -> (features, workers, pin, fixed)
    for n in workers:
        configs[f"packed_w{n}"] = (w.store, n, False, False)
        if cuda:
            configs[f"packed_w{n}_pin"] = (w.store, n, True, False)
    configs["naive"] = (_PtFeatures(w.pt_dir), 0, False, True)
    loaders = {}
    for name, (features, n, pin, fixed) in configs.items():
        ds = VQADataset(w.rows, w.student_tokenizer, features, num_labels, LANG, r,
                        teacher_tokenizer=w.teacher_tokenizer, kd=KDSelection(codemix=True), seed=seed)
        fn = (lambda ex: collate(ex, fixed_text_len=FIXED_TEXT)) if fixed else collate
        loaders[name] = FeatureLoader(ds, batch_size=batch_size, shuffle=False, num_workers=n, pin_memory=pin,
                                   collate_fn=fn, persistent_workers=n > 0, drop_last=True)
    n_samples = (len(ds) // batch_size) * batch_size
    times: dict[str, list[float]] = {name: [] for name in loaders}

    def one_pass(loader) -> None:
        for batch in loader:
            if cuda:
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                         for k, v in batch.items()}
        sync()

    names = list(loaders)
    for _ in range(warmup):
        for name in names:
            one_pass(loaders[name])
    for k in range(rounds):
        for name in (names if k % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            one_pass(loaders[name])
            times[name].append(time.perf_counter() - start)
    rows = []
    for name in names:
        median = statistics.median(times[name])
        features, n, pin, fixed = configs[name]
        rows.append(Row(step="loading", variant=name, samples_per_s=n_samples / median,
                        tokens_per_s=float("nan"), ms_median=1e3 * median / (n_samples / batch_size),
                        ms_min=1e3 * min(times[name]) / (n_samples / batch_size), rounds=rounds,
                        settings={"features": "pt_files" if isinstance(features, _PtFeatures) else "packed",
                                  "num_workers": n, "pin_memory": pin,
                                  "padding": "fixed" if fixed else "dynamic"},
                        times_ms=[1e3 * t for t in times[name]]))
    del loaders  # stops persistent workers
    best = next(row for row in rows if row.variant == "packed_w0")
    naive = next(row for row in rows if row.variant == "naive")
    for row in rows:
        row.vs_naive = row.samples_per_s / naive.samples_per_s
        row.vs_optimized = row.samples_per_s / best.samples_per_s
    return rows



def _add_ratios(rows: list[Row]) -> None:
    by_name = {row.variant: row for row in rows}
    for row in rows:
        if "naive" in by_name:
            row.vs_naive = row.samples_per_s / by_name["naive"].samples_per_s
        if "optimized" in by_name:
            row.vs_optimized = row.samples_per_s / by_name["optimized"].samples_per_s
