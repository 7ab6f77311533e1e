"""Throughput benchmark, what is measured: the model sizes and the step variants (each flips one speed feature)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .flops import ModelShape

STEP_KINDS = ("kd", "aug", "eval")
ALL_KINDS = (*STEP_KINDS, "loading")
FIXED_TEXT = 128  # the reference's text slots
LANG = "ja"  # lang-default: the measured steps are the paper's main setting, Japanese questions (cvil/languages/ja.yaml)


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
    from cvil.precision import resolve_precision

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

