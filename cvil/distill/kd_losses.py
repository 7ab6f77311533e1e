"""The cViL distillation objective: MSE between student and teacher hidden states at aligned positions.

The selected positions arrive as flat index tensors built by the collate function (docs/architecture.md §2):
`kd_batch`, `kd_student_pos`, `kd_teacher_pos`, `kd_component` (0 CLS, 1 image, 2 object tags — matrix A,
3 code-mixed words — matrix B). Two reductions, never silently swapped:

- `pooled` (default, what the released code ran): per layer, ONE mean squared error over the union of every
  selected position in the batch (all elements of all selected rows), then a λ-weighted sum over layers. The 50
  image slots per example therefore dominate.
- `per_component` (the paper's Eq. 2–6): per example, L_CLS = MSE of the CLS row; L_img = mean over the image
  rows; L_tag = Σ A_ij MSE / t² with t the example's object-tag token count; L_CM = Σ B_ij MSE / n² with n its
  question token count; the four are summed, averaged over the batch, and λ-weighted over layers.

  The `[SEP]` rows: the tag walk (`cvil.inputs.alignment.tag_alignment`) puts the first `[SEP]` into component 2 on
  purpose (`pairs = [(0, 0)]`, as the released code distilled it) and pairs the final `[SEP]` too whenever the walk
  reaches it in step (`[SEP] == [SEP]`). Neither is an object-tag token, and Eq. 4 sums only over the t tag tokens,
  so `per_component` leaves every component-2 pair whose *student* position is a `[SEP]` (the last segment-0 token,
  or the last real text token) out of L_tag: L_tag = (1/t²) Σ_{i,j ∈ tags} A_ij MSE(O_i^S, O_j^T), with t counted
  over the same tag tokens (segment 1 without the final `[SEP]`). `pooled` keeps the `[SEP]` rows, as the release.

All maths runs in fp32 whatever the autocast dtype. An empty selection contributes 0 (with a warning), never NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from cvil.inputs.alignment import COMPONENT_NAMES


def map_layers(reference_layers: tuple[int, ...], depth: int, reference_depth: int = 12) -> list[int]:
    """Map layer numbers given for a 12-layer model (3, 6, 9, 12) onto a model of `depth` layers, proportionally.

    HF `hidden_states` numbering: layer m is the output of the m-th encoder layer (1-based), so 12 is the last.
    Identity when depth == 12 (the paper's BERT-base teacher and student).

    Rule: round half up, `max(1, floor(m * depth / reference_depth + 1/2))`, computed in integers (no float ties and
    no banker's rounding): 6 layers -> (2, 3, 5, 6), 4 layers -> (1, 2, 3, 4). Two layers landing on the same
    layer is an error, never a silent merge.
    """
    mapped = []
    for m in reference_layers:
        if not 1 <= m <= reference_depth:
            raise ValueError(f"KD layer {m} is outside 1..{reference_depth} (HF hidden_states numbering)")
        mapped.append(max(1, (2 * m * depth + reference_depth) // (2 * reference_depth)))
    if len(set(mapped)) != len(mapped):
        raise ValueError(f"KD layers {reference_layers} collapse to {mapped} on a {depth}-layer model")
    return mapped


@dataclass
class KDLoss:
    """The total distillation loss and its parts (detached), for logging per layer and component."""

    total: torch.Tensor
    per_layer: dict[int, float] = field(default_factory=dict)
    per_component: dict[str, float] = field(default_factory=dict)  # keys like "l12.image"
    n_pairs: int = 0


def distillation_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    batch: dict[str, torch.Tensor],
    *,
    layers: tuple[int, ...] = (3, 6, 9, 12),
    weights: tuple[float, ...] = (),
    reduction: str = "pooled",
    detail: bool = True,
    projection: torch.nn.Module | None = None,
) -> KDLoss:
    """Hidden-state distillation over the selected (student, teacher) position pairs of `batch`.

    `projection` (`kd.projection: linear`) maps the selected student rows into the teacher's hidden size first.

    `detail=False` skips the per-layer / per-component breakdown: each of its numbers is a host sync on a GPU, so
    the training loop asks for it only on logging steps.
    """
    if reduction not in ("pooled", "per_component"):
        raise ValueError(f"unknown KD reduction {reduction!r}; expected 'pooled' or 'per_component'")
    weights = tuple(weights) or (1.0,) * len(layers)
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} KD layer weights for {len(layers)} layers {layers}")
    t_layers = map_layers(layers, len(teacher_hidden) - 1)
    s_layers = map_layers(layers, len(student_hidden) - 1)
    b, s_pos, t_pos, comp = (batch[k] for k in ("kd_batch", "kd_student_pos", "kd_teacher_pos", "kd_component"))
    device = student_hidden[-1].device
    total = torch.zeros((), device=device, dtype=torch.float32)
    out = KDLoss(total=total, n_pairs=int(b.numel()))
    if b.numel() == 0:
        warnings.warn("KD selection is empty for this batch: distillation loss is 0", RuntimeWarning, stacklevel=2)
        return out
    if reduction == "per_component":
        norms = _component_norms(batch)
        in_loss = _per_component_mask(batch, b, s_pos, comp)
    else:
        norms = in_loss = None
    for ref, sl, tl, w in zip(layers, s_layers, t_layers, weights):
        student_rows = student_hidden[sl][b, s_pos].float()
        if projection is not None:
            student_rows = projection(student_rows).float()
        teacher_rows = teacher_hidden[tl][b, t_pos].float()
        per_pair = (student_rows - teacher_rows).pow(2).mean(dim=-1)  # [P]: MSE of each aligned row
        if reduction == "pooled":
            layer_loss = per_pair.mean()
        else:
            layer_loss = _per_component_loss(per_pair, b, comp, norms, in_loss,
                                             batch_size=batch["input_ids"].shape[0])
        total = total + w * layer_loss
        if not detail:
            continue
        out.per_layer[ref] = float(layer_loss.detach())
        with torch.no_grad():
            sums = torch.zeros(len(COMPONENT_NAMES), device=device).index_add_(0, comp, per_pair.detach())
            counts = torch.bincount(comp, minlength=len(COMPONENT_NAMES))
            for i, name in enumerate(COMPONENT_NAMES):
                if counts[i] > 0:
                    out.per_component[f"l{ref}.{name}"] = float(sums[i] / counts[i])
    out.total = total
    return out


def _component_norms(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per example and component, the divisor of Eq. 2–5: 1 (CLS), p (image slots), t² (tag tokens), n² (words).

    t counts the student's object-tag tokens (segment 1, without the final [SEP]); n its question tokens (segment 0,
    without [CLS] and the first [SEP]). Both are read off the student batch itself.
    """
    text_len = batch["input_ids"].shape[1]
    real = batch["attention_mask"][:, :text_len].bool()
    segment = batch["token_type_ids"]
    tags = ((segment == 1) & real).sum(1).clamp(min=2) - 1
    words = ((segment == 0) & real).sum(1).clamp(min=3) - 2
    image = torch.full_like(tags, batch["img_feats"].shape[1])
    return torch.stack([torch.ones_like(tags), image, tags.pow(2), words.pow(2)], dim=1).float()  # [B, 4]


def _per_component_mask(batch: dict[str, torch.Tensor], b, s_pos, comp) -> torch.Tensor:
    """Which pairs enter the `per_component` loss: all but the tag (component 2) pairs on a student `[SEP]`.

    The student's `[SEP]`s are its last segment-0 token (the first `[SEP]`) and its last real text token (the final
    `[SEP]`, or the first one again when the text has no tags); see `cvil.inputs.encoding.assemble`.
    """
    text_len = batch["input_ids"].shape[1]
    real = batch["attention_mask"][:, :text_len].bool()
    first_sep = ((batch["token_type_ids"] == 0) & real).sum(1) - 1
    last_sep = real.sum(1) - 1
    on_sep = (s_pos == first_sep[b]) | (s_pos == last_sep[b])
    return ~((comp == 2) & on_sep)


def _per_component_loss(per_pair, b, comp, norms, in_loss, *, batch_size: int) -> torch.Tensor:
    """Σ over examples and components of (Σ pair MSE / norm), divided by the batch size (Eq. 2–6).

    Pairs outside `in_loss` (the tag `[SEP]` rows) contribute exactly 0.
    """
    weighted = torch.where(in_loss, per_pair / norms[b, comp], torch.zeros((), device=per_pair.device))
    return weighted.sum() / batch_size


def teacher_logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """BCE of the student's logits against the teacher's sigmoid probabilities, × num_labels like the task loss.

    The released code had this term switched off (`LOGIT_LOSS = False`) and fed raw teacher logits as BCE targets;
    we use probabilities, which are valid targets.
    """
    targets = torch.sigmoid(teacher_logits.float())
    loss = torch.nn.functional.binary_cross_entropy_with_logits(student_logits.float(), targets)
    return loss * student_logits.shape[1]
