"""A torch `Dataset` over QLA rows that yields encoded examples (the reference's `VQADataset`, minus its per-step work).

Everything that does not change between steps is computed once, at construction: the student (and teacher) text
encodings, with batched fast-tokenizer calls, and the KD text pairs (CLS, tag alignment A). It is stored in flat
numpy arrays rather than per-example Python objects, so a 600k-question split stays small and forked DataLoader
workers share it copy-on-write. Per `__getitem__` only the feature lookup and, with code-mixing on, one code-mix
draw happen (a fresh sentence, its tokenisation, alignment B and a cached tag walk).

Example keys: `input_ids`, `token_type_ids` (1-D LongTensors, unpadded), `img_feats` `[R, D]`, `n_regions`,
`labels` (`SparseLabels`), `question_id`; with `kd`: `teacher_input_ids`, `teacher_token_type_ids`, `kd_text_pairs`
`[P, 3]` (student_pos, teacher_pos, component), `kd_image` (whether the collate adds the image slots).

Code-mix draws depend on (seed, epoch, index) only: call `set_epoch` before iterating an epoch (with persistent
DataLoader workers, recreate the iterator so the workers see the new epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cvil.data.collate import SparseLabels
from cvil.data.encoding import MAX_TEXT_LEN, SEP, EncodedText, assemble, tokenize_batch, tokenize_pairs
from cvil.distill.alignment import KDSelection, tag_alignment, text_pairs
from cvil.distill.codemix import CodeMixer, codemix_alignment, draw, draw_rng


class FeatureLookup(Protocol):
    """What the dataset needs from a feature store (`PackedFeatureStore` has it)."""

    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]: ...


class _Ragged:
    """Variable-length rows of a fixed dtype (and optional trailing width) in one flat array plus offsets."""

    def __init__(self, rows: Sequence[Any], dtype: type, width: int | None = None) -> None:
        shape = (0,) if width is None else (0, width)
        arrays = [np.asarray(r, dtype=dtype).reshape((-1,) + shape[1:]) for r in rows]
        self.offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=self.offsets[1:])
        self.flat = np.concatenate(arrays) if arrays else np.zeros(shape, dtype=dtype)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]


def _question(row, lang: str) -> str:
    try:
        return row.questions[lang]
    except KeyError:
        raise KeyError(f"question q_id={row.q_id} has no {lang!r} question (has {sorted(row.questions)})") from None


def _segments(length: int, first_sep: int) -> torch.Tensor:
    """0 up to and including the first `[SEP]`, 1 after it (the layout `assemble` builds)."""
    return (torch.arange(length) > first_sep).long()


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
    ) -> None:
        if kd is not None and teacher_tokenizer is None:
            raise ValueError("a KD dataset needs the teacher's tokenizer")
        self.student, self.teacher, self.features = student_tokenizer, teacher_tokenizer, features
        self.label_count, self.lang, self.max_regions, self.kd = label_count, lang, max_regions, kd
        self.seed, self.epoch, self.max_text_len = seed, 0, max_text_len
        self.question_ids = np.array([row.q_id for row in rows], dtype=np.int64)
        self.img_ids = np.array([row.img_id for row in rows], dtype=np.int64)
        self._label_ids = _Ragged([row.answer_ids for row in rows], np.int64)
        self._label_scores = _Ragged([row.scores for row in rows], np.float32)

        tags = [row.tags for row in rows]
        q_pieces, tag_keys, tag_pieces = tokenize_pairs(student_tokenizer, [_question(r, lang) for r in rows], tags)
        student = [self._assemble(student_tokenizer, *q, *tag_pieces[k]) for q, k in zip(q_pieces, tag_keys)]
        self._ids, self._sep = self._pack(student)
        if kd is None:
            return

        english = [_question(r, "en") for r in rows]
        t_q, t_keys, t_tags = tokenize_pairs(teacher_tokenizer, english, tags)
        teacher = [self._assemble(teacher_tokenizer, *q, *t_tags[k]) for q, k in zip(t_q, t_keys)]
        self._t_ids, self._t_sep = self._pack(teacher)
        self._pairs = _Ragged([self._text_pairs(t.tokens, s.tokens) for t, s in zip(teacher, student)], np.int64, 3)
        if kd.codemix:
            # untruncated student tags per distinct tag text: a code-mixed question changes the truncation
            position = {k: i for i, k in enumerate(tag_pieces)}
            self._tag_index = np.array([position[k] for k in tag_keys], np.int64)
            self._tag_ids = _Ragged([ids for _, ids in tag_pieces.values()], np.int64)
            self._plans = CodeMixer(teacher_tokenizer, student_tokenizer, lang).plan_many(
                [r.alignments.get(lang) for r in rows], english, [len(p) for p, _ in q_pieces], self.question_ids
            )

    # -- construction helpers -------------------------------------------------------------------------------------
    def _assemble(self, tokenizer, q_tokens, q_ids, t_tokens, t_ids) -> EncodedText:
        return assemble(q_tokens, q_ids, t_tokens, t_ids, tokenizer.cls_token_id, tokenizer.sep_token_id,
                        self.max_text_len)

    @staticmethod
    def _pack(encoded: Sequence[EncodedText]) -> tuple[_Ragged, np.ndarray]:
        first_sep = np.array([e.tokens.index(SEP) for e in encoded], dtype=np.int64)
        return _Ragged([e.input_ids for e in encoded], np.int64), first_sep

    def _text_pairs(self, teacher_tokens, student_tokens, codemix_pairs=()) -> torch.Tensor:
        kd = self.kd
        tags = tag_alignment(teacher_tokens, student_tokens, max_len=self.max_text_len,
                             fix_continuation_overrun=kd.fix_continuation_overrun) if kd.tags else ()
        return text_pairs(kd, tags, codemix_pairs)

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
            example.update(teacher_input_ids=t_ids, teacher_token_type_ids=_segments(len(t_ids), int(self._t_sep[index])),
                           kd_image=self.kd.image)
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
        tag_ids = self._tag_ids[int(self._tag_index[index])].tolist()
        enc = self._assemble(self.student, q_tokens, q_ids, self.student.convert_ids_to_tokens(tag_ids), tag_ids)
        teacher_tokens = self.teacher.convert_ids_to_tokens(self._t_ids[index].tolist())
        s_sep, t_sep = enc.tokens.index(SEP), int(self._t_sep[index])
        cm = codemix_alignment(enc.tokens[1:s_sep], teacher_tokens[1:t_sep])
        return {
            "input_ids": torch.tensor(enc.input_ids, dtype=torch.long),
            "token_type_ids": torch.tensor(enc.token_type_ids, dtype=torch.long),
            "kd_text_pairs": self._text_pairs(teacher_tokens, enc.tokens, cm),
        }
