"""A torch `Dataset` over QLA rows that yields encoded examples (the reference's `VQADataset`, minus its per-step work).

Everything that does not change between steps is computed once, at construction: the student (and teacher) text
encodings, with batched fast-tokenizer calls, and the KD text pairs (CLS, tag alignment A). It is stored in flat
numpy arrays rather than per-example Python objects, so a 600k-question split stays small and forked DataLoader
workers share it copy-on-write. Per `__getitem__` only the feature lookup and, with code-mixing on, one code-mix
draw happen (a fresh sentence, its tokenisation, alignment B and a cached tag walk).

Example keys: `input_ids`, `token_type_ids` (1-D LongTensors, unpadded), `img_feats` `[R, D]`, `n_regions`,
`labels` (`SparseLabels`), `question_id` (the row's key in its split, `QLARow.key`: its q_id, or its position in the
file where the file has no unique q_ids; `row_identity` says which, e.g. `position@<digest>`); with `kd`: `teacher_input_ids`, `teacher_token_type_ids`, `kd_text_pairs`
`[P, 3]` (student_pos, teacher_pos, component), `kd_image` (whether the collate adds the image slots).

Code-mix draws depend on (seed, epoch, index) only: call `set_epoch` before iterating an epoch (with persistent
DataLoader workers, recreate the iterator so the workers see the new epoch).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cvil.data.collate import SparseLabels
from cvil.data.encoding import MAX_TEXT_LEN, SEP, EncodedText, assemble, tokenize_batch, tokenize_pairs
from cvil.data.alignment import KDSelection, select_pairs, tag_alignment
from cvil.data.codemix import CodeMixer, codemix_alignment, draw, draw_rng


class FeatureLookup(Protocol):
    """What the dataset needs from a feature store (`PackedFeatureStore` has it)."""

    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]: ...


class _Ragged:
    """Variable-length rows of a fixed dtype (and optional trailing width) in one flat array plus offsets."""

    def __init__(self, rows: Sequence[Sequence[Any]], dtype: type, width: int | None = None) -> None:
        self.offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, rows), np.int64, len(rows)), out=self.offsets[1:])
        values = chain.from_iterable(rows)
        if width is not None:  # rows of `width`-tuples
            values = chain.from_iterable(values)
        count = int(self.offsets[-1]) * (width or 1)
        self.flat = np.fromiter(values, dtype, count)
        if width is not None:
            self.flat = self.flat.reshape(-1, width)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]


@contextmanager
def _gc_paused():
    """Construction allocates millions of small objects that all survive until it ends; the cyclic collector's
    repeated full passes over them cost about as much as the work itself, and there are no cycles to find."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _question(row, lang: str) -> str:
    try:
        return row.questions[lang]
    except KeyError:
        raise KeyError(f"question {row.key} has no {lang!r} question (has {sorted(row.questions)})") from None


def _segments(length: int, first_sep: int) -> torch.Tensor:
    """0 up to and including the first `[SEP]`, 1 after it (the layout `assemble` builds)."""
    return (torch.arange(length) > first_sep).long()


def _pairs_tensor(rows: list[tuple[int, int, int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 3)


class VQADataset(Dataset):
    """Encoded VQA examples for one language; a KD dataset when `kd` is given (needs `teacher_tokenizer`)."""

    def __init__(
        self,
        rows: Sequence,
        student_tokenizer,
        features: FeatureLookup,
        label_count: int,
        lang: str,
        max_regions: int,
        *,
        teacher_tokenizer=None,
        kd: KDSelection | None = None,
        seed: int = 0,
        max_text_len: int = MAX_TEXT_LEN,
        row_identity: str = "q_id",
    ) -> None:
        if kd is not None and teacher_tokenizer is None:
            raise ValueError("a KD dataset needs the teacher's tokenizer")
        self.student, self.teacher, self.features = student_tokenizer, teacher_tokenizer, features
        self.label_count, self.lang, self.max_regions, self.kd = label_count, lang, max_regions, kd
        self.seed, self.epoch, self.max_text_len = seed, 0, max_text_len
        self.row_identity = row_identity  # QLAFile.key_description of the rows' file: what `question_ids` mean
        # ([CLS], [SEP]) ids, read once: the tokenizer's attribute lookup costs more than assembling a text
        self._s_special = (student_tokenizer.cls_token_id, student_tokenizer.sep_token_id)
        if teacher_tokenizer is not None:
            self._t_special = (teacher_tokenizer.cls_token_id, teacher_tokenizer.sep_token_id)
        with _gc_paused():
            self._precompute(rows)

    def _precompute(self, rows: Sequence) -> None:
        """Encode every example (student, and teacher for KD), its KD text pairs and its code-mix plan."""
        lang, kd = self.lang, self.kd
        self.question_ids = np.array([row.key for row in rows], dtype=np.int64)
        self.img_ids = np.array([row.img_id for row in rows], dtype=np.int64)
        self._label_ids = _Ragged([row.answer_ids for row in rows], np.int64)
        self._label_scores = _Ragged([row.scores for row in rows], np.float32)

        tags = [row.tags for row in rows]
        q_pieces, tag_keys, tag_pieces = tokenize_pairs(self.student, [_question(r, lang) for r in rows], tags)
        student = [self._assemble(self._s_special, *q, *tag_pieces[k], bool(k)) for q, k in zip(q_pieces, tag_keys)]
        self._ids, self._sep = self._pack(student)
        if kd is None:
            return

        english = [_question(r, "en") for r in rows]
        t_q, t_keys, t_tags = tokenize_pairs(self.teacher, english, tags)
        teacher = [self._assemble(self._t_special, *q, *t_tags[k], bool(k)) for q, k in zip(t_q, t_keys)]
        self._t_ids, self._t_sep = self._pack(teacher)
        # with code-mixing these are not served, but computing them fills the tag-walk cache that every draw hits
        self._pairs = _Ragged([self._text_pairs(t.tokens, s.tokens) for t, s in zip(teacher, student)], np.int64, 3)
        if kd.codemix:
            # untruncated student tags per distinct tag text: a code-mixed question changes the truncation
            position = {k: i for i, k in enumerate(tag_pieces)}
            self._tag_index = np.array([position[k] for k in tag_keys], np.int64)
            self._tag_ids = _Ragged([ids for _, ids in tag_pieces.values()], np.int64)
            self._tag_text = np.array([bool(k) for k in tag_pieces], bool)  # raw tag text non-empty (the budget)
            self._plans = CodeMixer(self.teacher, self.student, lang, rate=kd.codemix_rate,
                                    unit=kd.codemix_unit).plan_many(
                [r.alignments.get(lang) for r in rows], english, [len(p) for p, _ in q_pieces], self.question_ids
            )

    # -- construction helpers -------------------------------------------------------------------------------------
    def _assemble(self, special: tuple[int, int], q_tokens, q_ids, t_tokens, t_ids, has_tag_text: bool) -> EncodedText:
        return assemble(q_tokens, q_ids, t_tokens, t_ids, *special, self.max_text_len, has_tag_text)

    @staticmethod
    def _pack(encoded: Sequence[EncodedText]) -> tuple[_Ragged, np.ndarray]:
        first_sep = np.array([e.tokens.index(SEP) for e in encoded], dtype=np.int64)
        return _Ragged([e.input_ids for e in encoded], np.int64), first_sep

    def _text_pairs(self, teacher_tokens, student_tokens, codemix_pairs=()) -> list[tuple[int, int, int]]:
        kd = self.kd
        tags = tag_alignment(teacher_tokens, student_tokens, max_len=self.max_text_len,
                             fix_continuation_overrun=kd.fix_continuation_overrun) if kd.tags else ()
        return select_pairs(kd, tags, codemix_pairs)

    # -- per step ---------------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the code-mix draws of `epoch` (a pure function of (seed, epoch, index))."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.question_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        feats, n = self.features.get(int(self.img_ids[index]), self.max_regions)
        example: dict[str, Any] = {
            "img_feats": feats,
            "n_regions": int(n),
            "labels": SparseLabels(torch.from_numpy(self._label_ids[index].copy()),
                                   torch.from_numpy(self._label_scores[index].copy()), self.label_count),
            "question_id": int(self.question_ids[index]),
        }
        if self.kd is not None and self.kd.codemix:
            example.update(self._codemixed(index))
        else:
            ids = torch.from_numpy(self._ids[index].copy())
            example.update(input_ids=ids, token_type_ids=_segments(len(ids), int(self._sep[index])))
        if self.kd is not None:
            t_ids = torch.from_numpy(self._t_ids[index].copy())
            example.update(teacher_input_ids=t_ids, kd_image=self.kd.image,
                           teacher_token_type_ids=_segments(len(t_ids), int(self._t_sep[index])))
            if "kd_text_pairs" not in example:
                example["kd_text_pairs"] = torch.from_numpy(self._pairs[index].copy())
        return example

    def codemixed_question(self, index: int, epoch: int | None = None) -> str:
        """The code-mixed question of example `index` in `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        return draw(self._plans[index], draw_rng(self.seed, epoch, index))

    def _codemixed(self, index: int) -> dict[str, torch.Tensor]:
        """The student text with a code-mixed question, its tag pairs (cached walk) and code-mix pairs (B).

        Alignment B is matched within the questions *as the models see them* (after truncation); the reference matched
        the untruncated ones, which differs only for questions long enough to be truncated, where its positions would
        point past the question.
        """
        (q_tokens, q_ids), = tokenize_batch(self.student, [self.codemixed_question(index)])
        tag = int(self._tag_index[index])
        tag_ids = self._tag_ids[tag].tolist()
        enc = self._assemble(self._s_special, q_tokens, q_ids, self.student.convert_ids_to_tokens(tag_ids), tag_ids,
                             bool(self._tag_text[tag]))
        teacher_tokens = self.teacher.convert_ids_to_tokens(self._t_ids[index].tolist())
        s_sep, t_sep = enc.tokens.index(SEP), int(self._t_sep[index])
        cm = codemix_alignment(enc.tokens[1:s_sep], teacher_tokens[1:t_sep])
        return {
            "input_ids": torch.tensor(enc.input_ids, dtype=torch.long),
            "token_type_ids": torch.tensor(enc.token_type_ids, dtype=torch.long),
            "kd_text_pairs": _pairs_tensor(self._text_pairs(teacher_tokens, enc.tokens, cm)),
        }
