"""Examples -> a batch of tensors, the layout of docs/architecture.md §2.

Text is padded to the longest text of the batch (dynamic; questions are short, so this roughly halves the sequence
length against the reference's fixed 128), or to `fixed_text_len` for the reference layout. Image slots always have
the full `max_regions` length, after the text: `attention_mask = text mask ⊕ region mask`, region mask 1 for the first
`n_regions` slots. Student and teacher texts are padded separately (their tokenizers give different lengths).

KD pairs arrive per example as text-relative `(student_pos, teacher_pos, component)` rows; here they become flat,
absolute indices into the padded layouts: text positions are unchanged (text starts at 0), image slot r is added as
student `T_s + r` and teacher `T_t + r` for every slot, padded ones included, as the reference distills them.

Two inputs, one output: a list of example dicts (`VQADataset.__getitem__`), or an `ExampleBatch`
(`VQADataset.__getitems__`, which the DataLoader calls with a whole batch of indices), the same examples gathered
as arrays, with the region features already stacked by one batched read of the store and kept in the store's
fp16 until the device (`cvil.train.data_setup.to_device` widens them; the values are the store's, so the model
sees exactly what the fp32 per-example path gives it). Both give equal tensors (tested), apart from that dtype.
In a `cvil.inputs.loader.FeatureLoader`'s workers the batch's `img_feats` is a `PendingFeatures` instead (which
images, no tensor): the loader reads them from the packed store in the main process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from cvil.inputs.alignment import COMPONENT_IMAGE


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


_PACK_LIMIT = 1 << 20  # tensors of at least this many bytes (the region features) travel on their own


class Batch(dict):
    """A collated batch (`collate` of an `ExampleBatch`): a dict of tensors that leaves a DataLoader worker as at most
    two shared-memory buffers, the region features and everything else packed into one, instead of one buffer per
    tensor (each costs the main process a file-descriptor hand-over, ~0.2 ms, in the training loop's thread); one
    buffer from a `FeatureLoader`'s workers, which leave the features out (`PendingFeatures`). It arrives as a plain
    dict of tensors (views into the packed buffer); in-process it is used as it is."""

    def __copy__(self) -> "Batch":  # `copy.copy` (the DataLoader's pin_memory) would otherwise pack and unpack
        return Batch(self)

    def __reduce__(self):
        meta, small, other = [], [], {}
        offset = 0
        for key, value in self.items():
            if torch.is_tensor(value) and value.device.type == "cpu" and 0 < value.nbytes < _PACK_LIMIT:
                offset = -(-offset // 8) * 8  # aligned for any dtype's view
                meta.append((key, value.dtype, tuple(value.shape), offset))
                small.append((offset, value))
                offset += value.nbytes
            else:
                other[key] = value
        packed = torch.empty(offset, dtype=torch.uint8)
        for start, value in small:
            packed[start : start + value.nbytes] = value.contiguous().view(-1).view(torch.uint8)
        return _unpack_batch, (packed, meta, other, list(self))


def _unpack_batch(packed: torch.Tensor, meta: list, other: dict, order: list) -> dict:
    values = dict(other)
    for key, dtype, shape, offset in meta:
        size = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        values[key] = packed[offset : offset + size].view(dtype).view(shape)
    return {key: values[key] for key in order}


@dataclass(frozen=True)
class PendingFeatures:
    """Region features not read yet: a batch's image ids, which `cvil.inputs.loader.FeatureLoader` reads from the
    packed store in the main process (a worker that filled a fresh shared-memory tensor spent more time on its page
    faults and its hand-over than on everything else of the batch)."""

    img_ids: list[int]
    max_regions: int


@dataclass(eq=False)
class ExampleBatch(Sequence):
    """The examples of one batch as arrays (`VQADataset.__getitems__`): ragged fields as one integer array per example,
    the region features stacked `[B, R, D]` (the store's dtype). Indexing it gives the example dict
    `VQADataset.__getitem__` would, so a collate function written for lists of examples still works."""

    input_ids: list[np.ndarray]
    first_sep: np.ndarray  # [B] position of the first [SEP] (segment 0 up to and including it)
    img_feats: torch.Tensor | PendingFeatures  # [B, R, D], or read later (`PendingFeatures`)
    n_regions: np.ndarray  # [B]
    label_ids: list[np.ndarray]
    label_scores: list[np.ndarray]  # float32
    num_labels: int
    question_ids: np.ndarray  # [B]
    teacher_input_ids: list[np.ndarray] | None = None
    teacher_first_sep: np.ndarray | None = None
    kd_text_pairs: list[np.ndarray] | None = None  # [P, 3] each
    kd_image: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, b: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= b < len(self):
            raise IndexError(b)
        ids = torch.from_numpy(self.input_ids[b].astype(np.int64))
        example: dict[str, Any] = {
            "img_feats": self.img_feats[b].float(),
            "n_regions": int(self.n_regions[b]),
            "labels": SparseLabels(torch.from_numpy(self.label_ids[b].astype(np.int64)),
                                   torch.from_numpy(self.label_scores[b].copy()), self.num_labels),
            "question_id": int(self.question_ids[b]),
            "input_ids": ids,
            "token_type_ids": (torch.arange(len(ids)) > int(self.first_sep[b])).long(),
        }
        if self.teacher_input_ids is not None:
            t_ids = torch.from_numpy(self.teacher_input_ids[b].astype(np.int64))
            example.update(teacher_input_ids=t_ids, kd_image=self.kd_image,
                           teacher_token_type_ids=(torch.arange(len(t_ids)) > int(self.teacher_first_sep[b])).long(),
                           kd_text_pairs=torch.from_numpy(self.kd_text_pairs[b].astype(np.int64)))
        return example


def _pad_arrays(seqs: Sequence[np.ndarray], lengths: np.ndarray, length: int) -> np.ndarray:
    """Right-pad 1-D int64 arrays with zeros to `length`, in one masked write."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    out[np.arange(length)[None, :] < lengths[:, None]] = np.concatenate(seqs) if len(seqs) else ()
    return out


def _length_of(lengths: np.ndarray, fixed: int | None, what: str) -> int:
    longest = int(lengths.max())
    if fixed is None:
        return longest
    if longest > fixed:
        raise ValueError(f"{what} text of {longest} tokens does not fit fixed_text_len={fixed}")
    return fixed


def _segments_padded(first_sep: np.ndarray, lengths: np.ndarray, length: int) -> np.ndarray:
    pos = np.arange(length)[None, :]
    return ((pos > first_sep[:, None]) & (pos < lengths[:, None])).astype(np.int64)


def _mask(lengths: np.ndarray, t: int, n_regions: np.ndarray, r: int) -> torch.Tensor:
    text = np.arange(t)[None, :] < lengths[:, None]
    regions = np.arange(r)[None, :] < n_regions[:, None]
    return torch.from_numpy(np.concatenate([text, regions], axis=1).astype(np.int64))


def _collate_batch(eb: ExampleBatch, fixed_text_len: int | None) -> dict[str, torch.Tensor]:
    """`collate` of an `ExampleBatch`: the same tensors, built with whole-batch array operations."""
    lens = np.fromiter(map(len, eb.input_ids), np.int64, len(eb))
    t_s = _length_of(lens, fixed_text_len, "student")
    r = eb.img_feats.max_regions if isinstance(eb.img_feats, PendingFeatures) else eb.img_feats.shape[1]
    n_regions = np.asarray(eb.n_regions, dtype=np.int64)
    label_lens = np.fromiter(map(len, eb.label_ids), np.int64, len(eb))
    labels = torch.zeros((len(eb), eb.num_labels), dtype=torch.float32)
    if label_lens.sum():  # row-major flat writes in example order: a repeated id keeps its last score, as before
        flat = np.repeat(np.arange(len(eb)), label_lens) * eb.num_labels + np.concatenate(eb.label_ids)
        labels.view(-1)[torch.from_numpy(flat)] = torch.from_numpy(np.concatenate(eb.label_scores)).float()
    batch: dict[str, torch.Tensor] = Batch({
        "input_ids": torch.from_numpy(_pad_arrays(eb.input_ids, lens, t_s)),
        "token_type_ids": torch.from_numpy(_segments_padded(np.asarray(eb.first_sep), lens, t_s)),
        "img_feats": eb.img_feats,
        "attention_mask": _mask(lens, t_s, n_regions, r),
        "labels": labels,
        "question_ids": torch.from_numpy(np.asarray(eb.question_ids, dtype=np.int64).copy()),
    })
    if eb.teacher_input_ids is None:
        return batch
    t_lens = np.fromiter(map(len, eb.teacher_input_ids), np.int64, len(eb))
    t_t = _length_of(t_lens, fixed_text_len, "teacher")
    parts = eb.kd_text_pairs
    counts = np.fromiter(map(len, parts), np.int64, len(eb))
    if eb.kd_image:
        slots = np.arange(r)
        image = np.stack([t_s + slots, t_t + slots, np.full(r, COMPONENT_IMAGE)], axis=1)
        parts = [x for p in parts for x in (p, image)]
        counts = counts + r
    pairs = np.concatenate(parts).reshape(-1, 3) if len(parts) else np.zeros((0, 3), np.int64)
    batch.update({
        "teacher_input_ids": torch.from_numpy(_pad_arrays(eb.teacher_input_ids, t_lens, t_t)),
        "teacher_token_type_ids": torch.from_numpy(_segments_padded(np.asarray(eb.teacher_first_sep), t_lens, t_t)),
        "teacher_attention_mask": _mask(t_lens, t_t, n_regions, r),
        "kd_batch": torch.from_numpy(np.repeat(np.arange(len(eb), dtype=np.int64), counts)),
        "kd_student_pos": torch.from_numpy(np.ascontiguousarray(pairs[:, 0], dtype=np.int64)),
        "kd_teacher_pos": torch.from_numpy(np.ascontiguousarray(pairs[:, 1], dtype=np.int64)),
        "kd_component": torch.from_numpy(np.ascontiguousarray(pairs[:, 2], dtype=np.int64)),
    })
    return batch


def collate(examples: Sequence[dict] | ExampleBatch, *, fixed_text_len: int | None = None) -> dict[str, torch.Tensor]:
    """Batch `VQADataset` examples (see that class for the example keys), or an `ExampleBatch`."""
    if isinstance(examples, ExampleBatch):
        return _collate_batch(examples, fixed_text_len)
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
