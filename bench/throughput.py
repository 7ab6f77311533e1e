"""Throughput of the KD, AUG and eval steps, and of data loading, each beside the naive reference step.

`cvil-bench throughput [--size tiny|small|base] [--steps N] [--device cpu|cuda] [--precision ...] [--compile]
[--json OUT]` times, in one process and on one thread (CPU), every *variant* of a step over the same batches,
alternating the variants round by round (the order is reversed every round) and reporting medians: absolute times
on a shared machine are noisy, ratios measured side by side are what to trust (docs: shared ENV notes).

Steps (batches come from the real data path: a synthetic world's QLA rows -> `VQADataset` over a packed feature
store -> `collate`, so dynamic padding and the precomputed alignment are what they are in training):
- `kd`: the frozen teacher online under `no_grad` + the student's forward/backward + the KD loss + clip + AdamW step,
  through the real `Trainer._loss_step` / `Trainer._optimizer_step` (objective `kd`, as the released KD stage);
- `aug`: the same with the task loss only (AUG and baseline stages);
- `eval`: forward only under `no_grad`, plus the argmax score (what in-loop evaluation does per batch);
- `loading`: a DataLoader pass (KD dataset with code-mixing, as the KD stage's train loader) over the packed store with
  0 or 2 workers (+ pinned memory on CUDA), beside per-image `.pt` files (the reference's layout).

Variants: `optimized` is the default training configuration for the device (SDPA, dynamic padding, precomputed
alignment, foreach AdamW on CPU / fused on CUDA, fp32 on CPU / bf16 on capable GPUs, no compile); `naive` is the
reference step: eager attention, fp32, text padded to 128, the per-example Python alignment walk inside the step
(re-tokenise both texts + the released `get_align` walk, `bench.reference_align`), the released masked 178-slot KD
loss, plain for-loop AdamW. Every other variant flips ONE feature of `optimized` (`eager`, `fixed128`, `walk`,
`adamw_plain`, `compile`, `bf16`, ...), so the table says what each feature is worth. `×naive` = samples/s of the
variant / samples/s of `naive`, measured in the same process.

Figures: samples/s; tokens/s (the student's real tokens: unpadded text + valid regions); median and min ms per step;
peak memory of the step (CPU: the resident-set high-water mark during the step minus the RSS before it, via
/proc/self/status VmHWM reset with /proc/self/clear_refs; CUDA: `torch.cuda.max_memory_allocated` minus the
allocation before the step, plus the absolute peak); on CUDA the MFU (`bench.flops`: model FLOPs / step time / peak).

Sizes (`SIZES`): `tiny` (hidden 64 x 4 layers, 64-d regions, 12 slots) is the CI / unit-test size; `small` (hidden
128 x 4 layers, 50 slots of 2054-d VinVL-sized regions) keeps the real input layout (50 region slots, 128 text slots for
the naive step) with a CPU-sized encoder, so the padding share is the real one; `base` is BERT-base (768 x 12) with
mBERT's (105,879) and BERT's (30,522) vocabularies and VQA's 3,129 labels: only sensible on a GPU.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .flops import ModelShape, mfu, peak_flops, step_flops
from .reference_align import reference_get_align

STEP_KINDS = ("kd", "aug", "eval")
ALL_KINDS = (*STEP_KINDS, "loading")
FIXED_TEXT = 128  # the reference's text slots
LANG = "ja"


# ------------------------------------------------------------------------------------------------------ sizes
@dataclass(frozen=True)
class BenchSize:
    """A model size: student and teacher share the encoder shape (the paper: both BERT-base)."""

    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    img_dim: int
    max_regions: int
    batch_size: int = 32
    student_vocab: int = 0  # 0 = the synthetic student tokenizer's vocabulary
    teacher_vocab: int = 0  # 0 = the synthetic teacher tokenizer's vocabulary
    num_labels: int = 0  # 0 = the synthetic world's label count
    note: str = ""

    def shape(self, num_labels: int) -> ModelShape:
        return ModelShape(self.hidden, self.layers, self.intermediate, self.img_dim, num_labels)


SIZES: dict[str, BenchSize] = {
    "tiny": BenchSize("tiny", 64, 4, 4, 256, 64, 12, note="CI and unit tests: seconds on one CPU thread"),
    "small": BenchSize("small", 128, 4, 4, 512, 2054, 50,
                       note="real input layout (50 slots of 2054-d regions) with a CPU-sized encoder"),
    "base": BenchSize("base", 768, 12, 12, 3072, 2054, 50, student_vocab=105_879, teacher_vocab=30_522,
                      num_labels=3129, note="BERT-base / mBERT shapes, VQA label set: GPU only"),
}


# --------------------------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One combination of the speed features."""

    attn: str = "sdpa"  # sdpa | eager
    padding: str = "dynamic"  # dynamic | fixed (text padded to 128)
    optimizer: str = "foreach"  # fused | foreach | plain (build_optimizer's optimizer_impl)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 with GradScaler, CUDA only)
    compile: bool = False  # torch.compile on student and teacher
    alignment: str = "precomputed"  # precomputed (dataset) | walk (re-tokenise + get_align walk inside the step)
    reference_loss: bool = False  # the released masked 178-slot KD loss instead of the index-pair loss


NAIVE = Variant(attn="eager", padding="fixed", optimizer="plain", precision="fp32", alignment="walk",
                reference_loss=True)


def default_variant(device: torch.device | str, precision: str = "auto") -> Variant:
    """The fastest correct combination for the device: what `train.*` / `model.*` defaults resolve to."""
    from cvil.train.precision import resolve_precision

    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    return Variant(optimizer="fused" if device.type == "cuda" else "foreach", precision=resolved)


def variants_for(kind: str, device: torch.device | str, *, precision: str = "auto",
                 compile: bool = False) -> dict[str, Variant]:
    """`optimized`, `naive`, and one variant per speed feature flipped off (or on, for compile / other dtypes)."""
    device = torch.device(device)
    best = default_variant(device, precision)
    naive = NAIVE if kind == "kd" else replace(NAIVE, alignment="precomputed", reference_loss=False)
    out = {"optimized": best, "naive": naive, "eager": replace(best, attn="eager"),
           "fixed128": replace(best, padding="fixed")}
    if kind == "kd":
        out["walk"] = replace(best, alignment="walk")
    if kind != "eval":
        for impl in ("fused", "foreach", "plain"):
            if impl != best.optimizer:
                out[f"adamw_{impl}"] = replace(best, optimizer=impl)
    if compile:
        out["compile"] = replace(best, compile=True)
    others = ("fp32", "bf16", "fp16") if device.type == "cuda" else (("fp32",) if best.precision != "fp32" else ())
    for p in others:
        if p != best.precision and (p != "bf16" or device.type != "cuda" or torch.cuda.is_bf16_supported()):
            out[p] = replace(best, precision=p)
    return out


# ------------------------------------------------------------------------------------------------------ world
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
        array = self.source.get(img_id)
        n = min(len(array), max_regions)
        out = torch.zeros(max_regions, array.shape[1])
        out[:n] = torch.from_numpy(array[:n])
        return out, n


def make_world(img_dim: int, root: str | Path | None = None, seed: int = 0) -> BenchWorld:
    """The tiny synthetic world (generated once into `root`, a temp dir by default), with region features of
    `img_dim` dims: the world's region count per image, random non-negative values (as detector features)."""
    from cvil.data.feature_store import PackedFeatureStore, pack_features
    from cvil.data.label_maps import load_label_maps
    from cvil.data.layout import feature_dir, qla_path
    from cvil.data.qla import read_qla
    from cvil.data.region_features import PtDirSource
    from cvil.data.synth.writer import generate
    from cvil.train.data_setup import load_tokenizer

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


# ---------------------------------------------------------------------------------------------------- harness
def reference_kd_loss(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
                      apply: torch.Tensor, align: torch.Tensor, layers: tuple[int, ...] = (3, 6, 9, 12)) -> torch.Tensor:
    """The released code's loss: per KD layer, one MSE over the `apply`-selected rows of the 178-slot layout, the
    teacher's rows gathered by `align` (`modeling_bert.py:118-243`); layers summed."""
    from cvil.distill.kd_losses import map_layers

    s_layers = map_layers(layers, len(student_hidden) - 1)
    t_layers = map_layers(layers, len(teacher_hidden) - 1)
    index = align.unsqueeze(-1).expand(-1, -1, student_hidden[-1].shape[-1])
    total = torch.zeros((), device=student_hidden[-1].device)
    for sl, tl in zip(s_layers, t_layers):
        gathered = teacher_hidden[tl].gather(1, index)
        total = total + F.mse_loss(student_hidden[sl][apply].float(), gathered[apply].float())
    return total


def walk_to_pairs(apply: torch.Tensor, align: torch.Tensor, text_slots: int, student_text: int,
                  teacher_text: int) -> dict[str, torch.Tensor]:
    """The walk's `(apply, align)` arrays (`[B, text_slots + R]`) as the collate's flat KD index tensors for a batch
    whose texts are padded to `student_text` / `teacher_text` (region slot r -> `T + r` on each side)."""
    b, pos = apply.nonzero(as_tuple=True)
    teacher = align[b, pos]
    image = pos >= text_slots
    s_abs = torch.where(image, pos - text_slots + student_text, pos)
    t_abs = torch.where(image, teacher - text_slots + teacher_text, teacher)
    component = torch.where(image, 1, torch.where(pos == 0, 0, 2))
    return {"kd_batch": b, "kd_student_pos": s_abs, "kd_teacher_pos": t_abs, "kd_component": component}


@dataclass
class _Runner:
    """One variant of one step, ready to time: `step(i)` runs a step on batch `i` (synchronised on CUDA)."""

    name: str
    variant: Variant
    step: Callable[[int], None]


@dataclass
class Row:
    """One line of the report."""

    step: str
    variant: str
    samples_per_s: float
    tokens_per_s: float
    ms_median: float
    ms_min: float
    rounds: int
    peak_mem_mb: float | None = None
    peak_mem_abs_mb: float | None = None
    vs_naive: float | None = None
    vs_optimized: float | None = None
    mfu: float | None = None
    model_gflop_per_step: float | None = None
    settings: dict = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)  # every timed step, in round order (paired across variants)


class Harness:
    """Builds the world, datasets, batches and models of one size once; times any variant of any step."""

    def __init__(self, size: BenchSize | str, *, device: str | torch.device = "cpu", world: BenchWorld | None = None,
                 world_root: str | Path | None = None, n_batches: int = 4, batch_size: int | None = None,
                 seed: int = 0, peak: float | None = None) -> None:
        from cvil.data.collate import collate
        from cvil.data.vqa_dataset import VQADataset
        from cvil.distill.alignment import KDSelection

        self.size = SIZES[size] if isinstance(size, str) else size
        self.device = torch.device(device)
        self.world = world or make_world(self.size.img_dim, world_root, seed)
        self.batch_size = batch_size or self.size.batch_size
        self.num_labels = self.size.num_labels or self.world.num_labels
        self.seed = seed
        w, r = self.world, self.size.max_regions
        self.dataset = VQADataset(w.rows, w.student_tokenizer, w.store, self.num_labels, LANG, r,
                                  teacher_tokenizer=w.teacher_tokenizer, kd=KDSelection())
        order = np.random.default_rng(seed).permutation(len(self.dataset)).tolist()
        need = n_batches * self.batch_size
        if need > len(order):
            order = (order * (need // len(order) + 1))[:need]
        self.groups = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(n_batches)]
        examples = [[self.dataset[i] for i in g] for g in self.groups]
        self.batches = {"dynamic": [collate(e) for e in examples],
                        "fixed": [collate(e, fixed_text_len=FIXED_TEXT) for e in examples]}
        self.tokens = [int(b["attention_mask"].sum()) for b in self.batches["dynamic"]]
        self.student_lens = [[len(e["input_ids"]) for e in ex] for ex in examples]
        self.teacher_lens = [[len(e["teacher_input_ids"]) for e in ex] for ex in examples]
        shape = self.size.shape(self.num_labels)
        self.flops = {kind: [step_flops(kind, shape, s, r, shape, t) for s, t in zip(self.student_lens, self.teacher_lens)]
                      for kind in STEP_KINDS}
        self.peak = peak
        if peak is None and self.device.type == "cuda":
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
            self.peak_by_precision = {p: peak_flops(torch.cuda.get_device_name(self.device), p, tf32=tf32)
                                      for p in ("fp32", "bf16", "fp16")}
        else:
            self.peak_by_precision = {p: peak for p in ("fp32", "bf16", "fp16")}
        torch.manual_seed(seed)
        self._student_state = self._build("student", "sdpa").state_dict()
        self._teacher_state = self._build("teacher", "sdpa").state_dict()
        self._teachers: dict[tuple[str, bool, str], Any] = {}

    @property
    def n_batches(self) -> int:
        return len(self.groups)

    # -- models -------------------------------------------------------------------------------------------------
    def _build(self, role: str, attn: str):
        from cvil.models import OscarVQA, oscar_config

        s = self.size
        tokenizer = self.world.student_tokenizer if role == "student" else self.world.teacher_tokenizer
        vocab = (s.student_vocab if role == "student" else s.teacher_vocab) or len(tokenizer)
        config = oscar_config(img_feature_dim=s.img_dim, num_labels=self.num_labels, vocab_size=vocab,
                              hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                              intermediate_size=s.intermediate, max_position_embeddings=512,
                              hidden_dropout_prob=0.3 if role == "student" else 0.1,
                              attention_probs_dropout_prob=0.1, attn_implementation=attn)
        return OscarVQA(config)

    def student(self, variant: Variant):
        model = self._build("student", variant.attn)
        model.load_state_dict(self._student_state)
        model = model.to(self.device).train()
        return torch.compile(model) if variant.compile else model

    def teacher(self, variant: Variant):
        from cvil.distill.teacher import FrozenTeacher

        key = (variant.attn, variant.compile, variant.precision)
        if key not in self._teachers:
            model = self._build("teacher", variant.attn)
            model.load_state_dict(self._teacher_state)
            model = model.to(self.device).eval()
            if variant.compile:
                model = torch.compile(model)
            self._teachers[key] = FrozenTeacher(model, precision=variant.precision)
        return self._teachers[key]

    def _trainer(self, model, teacher, variant: Variant):
        """A `Trainer` carrying only what `_loss_step`, `objective` and `_optimizer_step` read: the real step code."""
        from cvil.config import KDConfig, RunConfig, TrainConfig
        from cvil.train.distributed import DistInfo
        from cvil.train.precision import grad_scaler
        from cvil.train.trainer import Trainer

        trainer = Trainer.__new__(Trainer)
        trainer.cfg = RunConfig(train=TrainConfig(precision=variant.precision, optimizer_impl=variant.optimizer),
                                kd=KDConfig(codemix=False))
        trainer.dist = DistInfo(device=self.device)
        trainer.precision = variant.precision
        trainer.scaler = grad_scaler(variant.precision, self.device)
        trainer.teacher, trainer.model = teacher, model
        return trainer

    # -- per-step alignment (naive) -----------------------------------------------------------------------------
    def walk(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-tokenise both texts of every example of batch `i` and walk them (the reference's per-step path)."""
        from cvil.data.encoding import encode_text

        w, total = self.world, FIXED_TEXT + self.size.max_regions
        applies, aligns = [], []
        for index in self.groups[i]:
            row = w.rows[index]
            teacher = encode_text(w.teacher_tokenizer, row.questions["en"], row.tags).tokens
            student = encode_text(w.student_tokenizer, row.questions[LANG], row.tags).tokens
            apply, align = reference_get_align(teacher, student, total=total, text=FIXED_TEXT)
            applies.append(apply)
            aligns.append(align)
        return torch.stack(applies), torch.stack(aligns)

    # -- runners ------------------------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def runner(self, kind: str, name: str, variant: Variant) -> _Runner:
        from cvil.config import StageConfig
        from cvil.train.data_setup import to_device
        from cvil.train.optim import build_optimizer, build_scheduler
        from cvil.train.precision import autocast

        if variant.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device")
        batches = self.batches[variant.padding]
        if kind != "kd":  # task steps do not move the teacher's half of the batch
            batches = [{k: v for k, v in b.items() if not k.startswith(("teacher_", "kd_"))} for b in batches]
        model = self.student(variant)
        device = self.device

        if kind == "eval":
            def eval_step(i: int) -> None:
                batch = to_device(batches[i], device)
                model.eval()
                with torch.no_grad(), autocast(variant.precision, device):
                    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                                batch["img_feats"], labels=batch["labels"])
                    picked = batch["labels"].gather(1, out.logits.argmax(dim=1, keepdim=True)).sum()
                float(picked)
                self._sync()

            return _Runner(name, variant, eval_step)

        teacher = self.teacher(variant) if kind == "kd" else None
        trainer = self._trainer(model, teacher, variant)
        optimizer = build_optimizer(model, 5e-5, trainer.cfg.train, device)
        scheduler = build_scheduler(optimizer, 10**9, 0.0)
        stage = StageConfig(objective="kd" if kind == "kd" else "task")

        def train_step(i: int) -> None:
            batch = batches[i]
            apply = align = None
            if kind == "kd" and variant.alignment == "walk":
                apply, align = self.walk(i)
                if not variant.reference_loss:
                    batch = {**batch, **walk_to_pairs(apply, align, FIXED_TEXT, batch["input_ids"].shape[1],
                                                      batch["teacher_input_ids"].shape[1])}
            batch = to_device(batch, device)
            model.train()
            if variant.reference_loss:
                if variant.padding != "fixed" or batch["input_ids"].shape[1] != FIXED_TEXT:
                    raise ValueError("the reference KD loss needs the fixed 128 + regions layout")
                with autocast(variant.precision, device):
                    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                                batch["img_feats"], output_hidden_states=True)
                teacher_out = teacher(batch)
                apply, align = apply.to(device), align.to(device)
                loss = reference_kd_loss(out.hidden_states, teacher_out.hidden_states, apply, align,
                                         trainer.cfg.kd.layers)
                trainer.scaler.scale(loss).backward()
            else:
                trainer._loss_step(model, batch, stage, False)
            trainer._optimizer_step(optimizer, scheduler)
            self._sync()

        return _Runner(name, variant, train_step)

    # -- measurement --------------------------------------------------------------------------------------------
    def measure(self, kind: str, variants: dict[str, Variant], rounds: int, warmup: int | None = None) -> list[Row]:
        """Time every variant `rounds` times, alternating (order reversed each round), after `warmup` rounds."""
        runners = [self.runner(kind, name, v) for name, v in variants.items()]
        if warmup is None:
            warmup = self.n_batches * (3 if any(v.compile for v in variants.values()) else 1)
        for w in range(warmup):
            for r in runners:
                r.step(w % self.n_batches)
        times: dict[str, list[float]] = {r.name: [] for r in runners}
        used: list[int] = []
        for k in range(rounds):
            i = k % self.n_batches
            used.append(i)
            for r in (runners if k % 2 == 0 else runners[::-1]):
                self._sync()
                start = time.perf_counter()
                r.step(i)
                times[r.name].append(time.perf_counter() - start)
        # memory from one extra, untimed step per variant on the longest batch (the probe's trim would slow timing)
        probe, longest = _MemoryProbe(self.device), max(range(self.n_batches), key=self.tokens.__getitem__)
        mems: dict[str, tuple] = {}
        for r in runners:
            probe.start()
            r.step(longest)
            mems[r.name] = probe.stop()
        rows = []
        tokens = statistics.mean(self.tokens[i] for i in used)
        flops = statistics.mean(self.flops[kind][i] for i in used)
        for r in runners:
            median = statistics.median(times[r.name])
            delta, absolute = mems[r.name]
            peak = self.peak_by_precision.get(r.variant.precision) if self.device.type == "cuda" or self.peak else None
            rows.append(Row(step=kind, variant=r.name, samples_per_s=self.batch_size / median,
                            tokens_per_s=tokens / median, ms_median=1e3 * median, ms_min=1e3 * min(times[r.name]),
                            rounds=rounds, peak_mem_mb=delta, peak_mem_abs_mb=absolute, mfu=mfu(flops, median, peak),
                            model_gflop_per_step=flops / 1e9, settings=asdict(r.variant),
                            times_ms=[1e3 * t for t in times[r.name]]))
        _add_ratios(rows)
        return rows

    def measure_loading(self, rounds: int, workers: Sequence[int] = (0, 2), warmup: int = 1) -> list[Row]:
        """DataLoader throughput over the KD dataset with code-mixing (the KD stage's train loader)."""
        from torch.utils.data import DataLoader

        from cvil.data.collate import collate
        from cvil.data.vqa_dataset import VQADataset
        from cvil.distill.alignment import KDSelection

        w, r = self.world, self.size.max_regions
        cuda = self.device.type == "cuda"
        configs: dict[str, tuple[Any, int, bool, bool]] = {}  # name -> (features, workers, pin, fixed)
        for n in workers:
            configs[f"packed_w{n}"] = (w.store, n, False, False)
            if cuda:
                configs[f"packed_w{n}_pin"] = (w.store, n, True, False)
        configs["naive"] = (_PtFeatures(w.pt_dir), 0, False, True)
        loaders = {}
        for name, (features, n, pin, fixed) in configs.items():
            ds = VQADataset(w.rows, w.student_tokenizer, features, self.num_labels, LANG, r,
                            teacher_tokenizer=w.teacher_tokenizer, kd=KDSelection(codemix=True), seed=self.seed)
            fn = (lambda ex: collate(ex, fixed_text_len=FIXED_TEXT)) if fixed else collate
            loaders[name] = DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=n, pin_memory=pin,
                                       collate_fn=fn, persistent_workers=n > 0, drop_last=True)
        n_samples = (len(self.dataset) // self.batch_size) * self.batch_size
        times: dict[str, list[float]] = {name: [] for name in loaders}

        def one_pass(loader) -> None:
            for batch in loader:
                if cuda:
                    batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                             for k, v in batch.items()}
            self._sync()

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
                            tokens_per_s=float("nan"), ms_median=1e3 * median / (n_samples / self.batch_size),
                            ms_min=1e3 * min(times[name]) / (n_samples / self.batch_size), rounds=rounds,
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


# ------------------------------------------------------------------------------------------------------ report
@contextlib.contextmanager
def num_threads(n: int):
    """Run with `n` intra-op threads (0 = leave torch's setting)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


REPORT_KEYS = ("size", "device", "device_name", "threads", "torch", "batch_size", "text_len_mean", "regions",
               "rounds", "seconds", "rows", "summary")
ROW_KEYS = tuple(Row.__dataclass_fields__)


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec)


def format_table(report: dict) -> str:
    """A markdown table of the report."""
    mfu_col = any(r.get("mfu") is not None for r in report["rows"])
    head = ["step", "variant", "samples/s", "tokens/s", "ms/step (median)", "peak MiB (step)", "×naive", "×optimized"]
    if mfu_col:
        head.append("MFU")
    lines = [f"size {report['size']['name']} on {report['device']} ({report['device_name']}), "
             f"{report['threads']} thread(s), batch {report['batch_size']}, mean text {report['text_len_mean']:.1f} "
             f"tokens + {report['regions']} region slots, {report['rounds']} rounds, torch {report['torch']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [r["step"], r["variant"], _fmt(r["samples_per_s"], ".1f"), _fmt(r["tokens_per_s"], ".0f"),
                 _fmt(r["ms_median"], ".1f"), _fmt(r["peak_mem_mb"], ".0f"), _fmt(r["vs_naive"], ".2f"),
                 _fmt(r["vs_optimized"], ".2f")]
        if mfu_col:
            cells.append(_fmt(r["mfu"] and 100 * r["mfu"], ".1f") + ("%" if r["mfu"] is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("throughput", help="time the KD / AUG / eval steps and data loading against the naive step",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--steps", type=int, default=5, help="timed rounds; each round runs every variant once (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default: one per batch shape)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="precision of the optimized variant (auto: bf16 on capable GPUs, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile variant (≈1 min per model on CPU)")
    p.add_argument("--only", default=",".join(ALL_KINDS), help=f"comma list of {','.join(ALL_KINDS)}")
    p.add_argument("--variants", default="", help="comma list of variant names to keep (default all)")
    p.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1; 0 = torch's default)")
    p.add_argument("--batch-size", type=int, default=None)
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
