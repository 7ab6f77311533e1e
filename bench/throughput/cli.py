"""Throughput of the KD, AUG and eval steps, and of data loading, each beside the naive reference step.

`cvil-bench throughput [--size tiny|small|base] [--steps N] [--device cpu|cuda] [--precision ...] [--compile]
[--json OUT]` times, in one process and on one thread (CPU), every *variant* of a step over the same batches,
alternating the variants round by round (the order is reversed every round) and reporting medians: absolute times
on a shared machine are noisy, ratios measured side by side are what to trust (docs: shared ENV notes).

Steps (batches come from the real data path: a synthetic world's QLA rows -> `VQADataset` over a packed feature
store -> `collate`, so dynamic padding and the precomputed alignment are what they are in training):
- `kd`: the frozen teacher online under `no_grad` + the student's forward/backward + the KD loss + clip + AdamW step,
  through the real `cvil.train.step.loss_step` / `optimizer_step` (objective `kd`, as the released KD stage);
- `aug`: the same with the task loss only (AUG and baseline stages);
- `eval`: forward only under `no_grad`, plus the argmax score (what in-loop evaluation does per batch);
- `loading`: a DataLoader pass (KD dataset with code-mixing, as the KD stage's train loader) over the packed store with
  0 or 2 workers (+ pinned memory on CUDA), beside per-image `.pt` files (the reference's layout).

Variants: `optimized` is the default training configuration for the device (SDPA, dynamic padding, precomputed
alignment, foreach AdamW on CPU / fused on CUDA, fp32 on CPU / bf16 on capable GPUs, no compile); `naive` is the
reference step: eager attention, fp32, text padded to 128, the per-example Python alignment walk inside the step
(re-tokenise both texts + the released `get_align` walk, `reference_align`), the released masked 178-slot KD
loss, plain for-loop AdamW. Every other variant flips ONE feature of `optimized` (`eager`, `fixed128`, `walk`,
`adamw_plain`, `compile`, `bf16`, ...), so the table says what each feature is worth. `×naive` = samples/s of the
variant / samples/s of `naive`, measured in the same process.

Figures: samples/s; tokens/s (the student's real tokens: unpadded text + valid regions); median and min ms per step;
peak memory of the step (CPU: the resident-set high-water mark during the step minus the RSS before it, via
/proc/self/status VmHWM reset with /proc/self/clear_refs; CUDA: `torch.cuda.max_memory_allocated` minus the
allocation before the step, plus the absolute peak); on CUDA the MFU (`flops`: model FLOPs / step time / peak).

Sizes (`SIZES`): `tiny` (hidden 64 x 4 layers, 64-d regions, 12 slots) is the CI / unit-test size; `small` (hidden
128 x 4 layers, 50 slots of 2054-d VinVL-sized regions) keeps the real input layout (50 region slots, 128 text slots for
the naive step) with a CPU-sized encoder, so the padding share is the real one; `base` is BERT-base (768 x 12) with
mBERT's (105,879) and BERT's (30,522) vocabularies and VQA's 3,129 labels: only sensible on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

# the harness is split by concern (the package's modules: variants, world, steps, measurement, report); this module
# is the command over them
from .harness import Harness, num_threads
from .report import Row, format_table
from .variants import ALL_KINDS, SIZES, variants_for


def run_benchmark(size: str = "tiny", *, steps: int = 5, device: str | None = None, precision: str = "auto",
                  compile: bool = False, kinds: Sequence[str] = ALL_KINDS, variants: Sequence[str] | None = None,
                  threads: int = 1, batch_size: int | None = None, world_root: str | Path | None = None,
                  warmup: int | None = None, peak: float | None = None, log: Callable[[str], None] | None = None,
                  harness: Harness | None = None) -> dict:
    """Measure the requested step kinds; returns the report dict (see `REPORT_KEYS`, `Row`)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown:
        raise ValueError(f"unknown step kinds {sorted(unknown)}; expected some of {ALL_KINDS}")
    log = log or (lambda msg: None)
    with num_threads(threads if device == "cpu" else 0):
        started = time.perf_counter()
        harness = harness or Harness(size, device=device, world_root=world_root, batch_size=batch_size, peak=peak)
        rows: list[Row] = []
        for kind in kinds:
            if kind == "loading":
                log(f"timing data loading ({steps} passes per variant)")
                rows.extend(harness.measure_loading(steps))
                continue
            chosen = variants_for(kind, device, precision=precision, compile=compile)
            if variants:
                missing = [v for v in variants if v not in chosen]
                if missing:
                    raise ValueError(f"unknown variants {missing} for step {kind}; known: {sorted(chosen)}")
                chosen = {k: v for k, v in chosen.items() if k in variants}
            log(f"timing the {kind} step: {len(chosen)} variants x {steps} rounds")
            rows.extend(harness.measure(kind, chosen, steps, warmup))
        report = {
            "size": asdict(harness.size),
            "device": device,
            "device_name": torch.cuda.get_device_name(harness.device) if device == "cuda" else platform.processor()
            or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "batch_size": harness.batch_size,
            "text_len_mean": statistics.mean(statistics.mean(lens) for lens in harness.student_lens),
            "regions": harness.size.max_regions,
            "rounds": steps,
            "seconds": time.perf_counter() - started,
            "rows": [asdict(row) for row in rows],
        }
    report["summary"] = {f"{r['step']}_speedup_vs_naive": r["vs_naive"] for r in report["rows"]
                         if r["variant"] in ("optimized", "packed_w0") and r["vs_naive"] is not None}
    return report



# --------------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("throughput", help="time the KD / AUG / eval steps and data loading against the naive step",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="tiny",
                   help="model and world size: tiny (hidden 64), small (128), base (768) (default tiny)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds; each round runs every variant once (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default: one per batch shape)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="precision of the optimized variant (auto: bf16 on capable GPUs, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile variant (≈1 min per model on CPU)")
    p.add_argument("--only", default=",".join(ALL_KINDS), help=f"comma list of {','.join(ALL_KINDS)}")
    p.add_argument("--variants", default="", help="comma list of variant names to keep (default all)")
    p.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1; 0 = torch's default)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the size's own, 32)")
    p.add_argument("--world", type=Path, default=None, help="folder for the synthetic world (reused if present)")
    p.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s for the MFU (default: table by GPU)")
    p.add_argument("--json", type=Path, default=None, dest="json_out", help="write the report as JSON")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    kinds = [k for k in args.only.split(",") if k]
    variants = [v for v in args.variants.split(",") if v] or None
    try:
        report = run_benchmark(args.size, steps=args.steps, device=args.device, precision=args.precision,
                               compile=args.compile, kinds=kinds, variants=variants, threads=args.threads,
                               batch_size=args.batch_size, world_root=args.world, warmup=args.warmup,
                               peak=args.peak_flops, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, RuntimeError) as exc:
        print(f"cvil-bench throughput: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
