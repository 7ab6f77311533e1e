"""Examples -> a batch of tensors, the layout of docs/architecture.md §2.

Text is padded to the longest text of the batch (dynamic; questions are short, so this roughly halves the sequence
length against the reference's fixed 128), or to `fixed_text_len` for the reference layout. Image slots always have
the full `max_regions` length, after the text: `attention_mask = text mask ⊕ region mask`, region mask 1 for the first
`n_regions` slots. Student and teacher texts are padded separately (their tokenizers give different lengths).

KD pairs arrive per example as text-relative `(student_pos, teacher_pos, component)` rows; here they become flat,
absolute indices into the padded layouts: text positions are unchanged (text starts at 0), image slot r is added as
student `T_s + r` and teacher `T_t + r` for every slot, padded ones included, as the reference distills them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from cvil.data.alignment import COMPONENT_IMAGE


class SparseLabels(NamedTuple):
    """Soft targets as (label ids, scores); densified by `collate` (`target[ids[k]] = scores[k]`, as the reference)."""

    ids: torch.Tensor
    scores: torch.Tensor
    num_labels: int


def _pad(seqs: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    out = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def _text_length(seqs: Sequence[torch.Tensor], fixed: int | None, what: str) -> int:
    longest = max(len(s) for s in seqs)
    if fixed is None:
        return longest
    if longest > fixed:
        raise ValueError(f"{what} text of {longest} tokens does not fit fixed_text_len={fixed}")
    return fixed


def _attention_mask(text_lens: torch.Tensor, t: int, n_regions: torch.Tensor, r: int) -> torch.Tensor:
    text = torch.arange(t)[None, :] < text_lens[:, None]
    regions = torch.arange(r)[None, :] < n_regions[:, None]
    return torch.cat([text, regions], dim=1).long()


def dense_labels(labels: Sequence[SparseLabels | torch.Tensor]) -> torch.Tensor:
    """Stack dense label vectors, or fill them from sparse ones."""
    if isinstance(labels[0], torch.Tensor):
        return torch.stack(list(labels)).float()
    out = torch.zeros((len(labels), labels[0].num_labels), dtype=torch.float32)
    for i, lab in enumerate(labels):
        out[i, lab.ids] = lab.scores.float()
    return out


def collate(examples: Sequence[dict], *, fixed_text_len: int | None = None) -> dict[str, torch.Tensor]:
    """Batch `VQADataset` examples (see that class for the example keys)."""
    ids = [e["input_ids"] for e in examples]
    t_s = _text_length(ids, fixed_text_len, "student")
    img_feats = torch.stack([e["img_feats"] for e in examples])
    r = img_feats.shape[1]
    n_regions = torch.tensor([int(e["n_regions"]) for e in examples], dtype=torch.long)
    batch: dict[str, torch.Tensor] = {
        "input_ids": _pad(ids, t_s),
        "token_type_ids": _pad([e["token_type_ids"] for e in examples], t_s),
        "img_feats": img_feats,
        "attention_mask": _attention_mask(torch.tensor([len(s) for s in ids]), t_s, n_regions, r),
        "labels": dense_labels([e["labels"] for e in examples]),
        "question_ids": torch.tensor([int(e["question_id"]) for e in examples], dtype=torch.long),
    }
    if "teacher_input_ids" in examples[0]:
        batch.update(_teacher_and_pairs(examples, fixed_text_len, t_s, r, n_regions))
    return batch


def _teacher_and_pairs(
    examples: Sequence[dict], fixed_text_len: int | None, t_s: int, r: int, n_regions: torch.Tensor
) -> dict[str, torch.Tensor]:
    t_ids = [e["teacher_input_ids"] for e in examples]
    t_t = _text_length(t_ids, fixed_text_len, "teacher")
    slots = torch.arange(r)
    image = torch.stack([t_s + slots, t_t + slots, torch.full_like(slots, COMPONENT_IMAGE)], dim=1)
    parts, owners = [], []
    for b, e in enumerate(examples):
        rows = e["kd_text_pairs"]
        if e.get("kd_image", False):
            rows = torch.cat([rows, image])
        parts.append(rows)
        owners.append(torch.full((len(rows),), b, dtype=torch.long))
    pairs = torch.cat(parts)
    return {
        "teacher_input_ids": _pad(t_ids, t_t),
        "teacher_token_type_ids": _pad([e["teacher_token_type_ids"] for e in examples], t_t),
        "teacher_attention_mask": _attention_mask(torch.tensor([len(s) for s in t_ids]), t_t, n_regions, r),
        "kd_batch": torch.cat(owners),
        "kd_student_pos": pairs[:, 0].contiguous(),
        "kd_teacher_pos": pairs[:, 1].contiguous(),
        "kd_component": pairs[:, 2].contiguous(),
    }


def model_inputs(batch: dict[str, torch.Tensor], *, side: str = "student") -> tuple[torch.Tensor, ...]:
    """The positional inputs of `OscarVQA.forward` for one side of a batch: `(input_ids, token_type_ids,
    attention_mask, img_feats)`; `side="teacher"` reads the teacher's text (`teacher_*`), same image."""
    prefix = "teacher_" if side == "teacher" else ""
    return (batch[prefix + "input_ids"], batch[prefix + "token_type_ids"], batch[prefix + "attention_mask"],
            batch["img_feats"])
