"""Model FLOPs of the training and eval steps, and the model FLOPs utilisation (MFU) on a GPU.

The count is nanoGPT's `estimate_mfu` (`flops_per_token = 6*N + 12*L*H*Q*T`) applied to Oscar's layout, with a
teacher-forward term for KD. Per example with a sequence of `S = text + R` tokens (`R` = region slots):

    forward(S)  = 2 * N_layer * L * S          # the encoder's matmuls: N_layer = 4*h^2 + 2*h*i weights per layer
                + 4 * L * h * S^2              # attention scores QK^T and the weighted sum AV (2 matmuls, 2 FLOP/MAC)
                + 2 * img_dim * h * R          # region projection (`bert.img_embedding`) over every region slot
                + 2 * (h^2 + h * num_labels)   # pooler + classifier, on the CLS row only
    train step  = 3 * forward(S_student)                        # forward + backward (backward = 2 x forward)
    KD step     = 3 * forward(S_student) + forward(S_teacher)   # the frozen teacher only runs forward
    eval step   = forward(S_student)

Embedding lookups, biases, LayerNorm, softmax, GELU, dropout and the optimiser are not counted (standard practice;
they are a few per cent). "Model" FLOPs count the *useful* work: each example's real text length (no padding) plus
all `R` region slots (the model's layout always carries them, and the reference distills even the padded ones). A
variant that pads text to 128 therefore does more arithmetic for the same model FLOPs, and its MFU is lower: MFU
ratios between variants equal their throughput ratios.

Check (the shared anchors' back-of-envelope, BERT-base teacher and student, 128 + 50 tokens): N_layer * L = 84.9M,
student 6 * 84.9M * 178 + 12 * 12 * 768 * 178^2 = 94.2 GFLOP, teacher 31.4 GFLOP, plus the 2054-d region
projection: ≈ 126.3 GFLOP per KD sample.

Peak FLOP/s are dense (no sparsity) datasheet figures per GPU and precision; `fp32` is the CUDA-core peak, used when
TF32 matmuls are off (PyTorch's default), `tf32` when `torch.backends.cuda.matmul.allow_tf32` is on. They are not
measured here: pass `peak_flops` explicitly for a GPU the table lacks or to override.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """The sizes that enter the FLOPs count (a student or a teacher)."""

    hidden: int
    layers: int
    intermediate: int
    img_dim: int
    num_labels: int

    @property
    def layer_matmul_params(self) -> int:
        """Weights of one encoder layer's matmuls: Q, K, V, output (4 h^2) and the two FFN matrices (2 h i)."""
        return 4 * self.hidden * self.hidden + 2 * self.hidden * self.intermediate

    @property
    def encoder_matmul_params(self) -> int:
        return self.layers * self.layer_matmul_params


def forward_flops(shape: ModelShape, text_len: int, regions: int) -> int:
    """FLOPs of one example's forward pass with `text_len` text tokens and `regions` region slots."""
    seq = text_len + regions
    h, layers = shape.hidden, shape.layers
    return (2 * shape.encoder_matmul_params * seq
            + 4 * layers * h * seq * seq
            + 2 * shape.img_dim * h * regions
            + 2 * (h * h + h * shape.num_labels))


def step_flops(kind: str, student: ModelShape, student_text_lens: Iterable[int], regions: int,
               teacher: ModelShape | None = None, teacher_text_lens: Iterable[int] = ()) -> int:
    """Model FLOPs of one step over a batch: `kind` is `kd`, `aug` (= any task-loss training step) or `eval`.

    `student_text_lens` (and, for `kd`, `teacher_text_lens`) are the real, unpadded text lengths of the examples.
    """
    s_lens = list(student_text_lens)
    student_fwd = sum(forward_flops(student, n, regions) for n in s_lens)
    if kind == "eval":
        return student_fwd
    if kind == "aug":
        return 3 * student_fwd
    if kind == "kd":
        if teacher is None:
            raise ValueError("a KD step needs the teacher's shape")
        t_lens = list(teacher_text_lens)
        if len(t_lens) != len(s_lens):
            raise ValueError(f"{len(s_lens)} student but {len(t_lens)} teacher text lengths")
        return 3 * student_fwd + sum(forward_flops(teacher, n, regions) for n in t_lens)
    raise ValueError(f"unknown step kind {kind!r}; expected kd, aug or eval")


# Dense peak FLOP/s per GPU (datasheet figures, unverified here). Matched by substring of
# `torch.cuda.get_device_name()`, first match wins: keep the more specific names (H100 PCIe) first.
PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12}),
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51e12}),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12}),
    ("A100", {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    ("L40S", {"bf16": 362e12, "fp16": 362e12, "tf32": 183e12, "fp32": 91.6e12}),
    ("L4", {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
    ("V100", {"fp16": 125e12, "fp32": 15.7e12}),
)


def peak_flops(device_name: str, precision: str, *, tf32: bool = False) -> float | None:
    """The dense peak for `device_name` at `precision` (fp32 / bf16 / fp16), or None when the table lacks it."""
    key = "tf32" if precision == "fp32" and tf32 else precision
    for name, peaks in PEAK_FLOPS:
        if name.lower() in device_name.lower():
            return peaks.get(key)
    return None


def mfu(flops_per_step: float, seconds_per_step: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak (None without a peak)."""
    if not peak or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / peak
