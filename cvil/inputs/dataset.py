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

Code-mix draws depend on (seed, epoch, index) only: call `set_epoch` before iterating an epoch. The epoch lives in
memory shared with DataLoader workers (an anonymous shared map that forked workers inherit; a shared torch tensor
once the dataset is pickled for spawned ones), so persistent workers see it: set it, then start the epoch's
iterator (the workers' stale prefetches of the previous iterator are discarded when it is reset).

Two ways to read examples, giving equal batches (tested): `__getitem__` (one example, as above) and `__getitems__`
(a batch of indices; the DataLoader calls it when the dataset has it), which returns a `cvil.inputs.collate.ExampleBatch`
built per batch: all code-mixed questions of the batch tokenised in one fast-tokenizer call, pieces read from a
cached vocabulary list instead of `convert_ids_to_tokens`, the tag walk of the unmixed text reused whenever the
code-mixed text keeps the same tags, and the region features read with the store's batch reader (`get_batch`) and
left in the store's fp16 (widened on the device by `cvil.train.data_setup.to_device`). In the workers of a
`cvil.inputs.loader.FeatureLoader` (`features_in_main`) they are not read at all: the batch names its images
(`PendingFeatures`) and the loader reads them in the main process (`read_features`).

Code-mix plans are columns too (word ids into one string table, candidate (word index, English word id) pairs, n),
not one `CodeMixPlan` object per row; `_plans[i]` rebuilds row i's plan. Ids are stored as int32, positions as int16
(served as int64 tensors).

The columns can be saved to a folder of `.npy` files (`save_columns`) and opened memory-mapped (`from_columns`): the
pages are then the OS's file cache, shared by every rank and DataLoader worker that opens them, instead of each
process's own copy (`cvil.train.data_setup` keeps such a cache per split and settings in the dataset folder).
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import random
import shutil
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cvil.data.tokenizers import tokenize_batch
from cvil.inputs.alignment import (COMPONENT_CLS, COMPONENT_CODEMIX, COMPONENT_TAG, KDSelection, _walk_tags,
                                   pairs_tensor, select_pairs, tag_alignment)
from cvil.inputs.codemix import JOINERS, CodeMixer, CodeMixPlan, codemix_alignment, draw_rng, mix
from cvil.inputs.collate import ExampleBatch, PendingFeatures, SparseLabels
from cvil.inputs.encoding import MAX_TEXT_LEN, SEP, EncodedText, assemble, tokenize_pairs, truncated_lengths


class FeatureLookup(Protocol):
    """What the dataset needs from a feature store (`PackedFeatureStore` has it). A store may also offer
    `get_batch(img_ids, max_regions, dtype=..., out=...)` -> `([B, R, D], n_regions)` and
    `region_counts(img_ids, max_regions)` (the packed store does): batches are then read with it, in fp16, and may be
    read in the main process (`features_in_main`); otherwise they stack `get`."""

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
        if i < 0:  # offsets[-1 + 1] would be offsets[0]: an empty row
            i += len(self.offsets) - 1
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def of(cls, offsets: np.ndarray, flat: np.ndarray) -> "_Ragged":
        out = cls.__new__(cls)
        out.offsets, out.flat = offsets, flat
        return out


def _mapped(path: Path) -> np.ndarray:
    """A saved array, memory-mapped read-only (an empty one is read: there is nothing to map)."""
    try:  # a plain ndarray view of the map: slicing a np.memmap costs ~10 µs of subclass bookkeeping per slice
        return np.load(path, mmap_mode="r").view(np.ndarray)
    except ValueError:
        return np.load(path)


_NO_DRAW = random.Random(0)  # stands in for a draw's RNG where the draw uses none (`random.shuffle` of < 2 items)


def _long(array: np.ndarray) -> torch.Tensor:
    """A fresh int64 tensor of a stored (int16/int32, possibly memory-mapped) slice."""
    return torch.from_numpy(array.astype(np.int64))


class _EpochCell:
    """An int shared with DataLoader workers: an anonymous shared map (inherited by forked workers, no file
    descriptor), and once pickled (spawned workers) a shared-memory torch tensor both sides read."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 8)
        self._tensor: torch.Tensor | None = None

    def get(self) -> int:
        if self._tensor is not None:
            return int(self._tensor[0])
        return int.from_bytes(self._map[:8], "little", signed=True)

    def set(self, value: int) -> None:
        if self._map is not None:
            self._map[:8] = int(value).to_bytes(8, "little", signed=True)
        if self._tensor is not None:
            self._tensor[0] = int(value)

    def __getstate__(self) -> dict:
        if self._tensor is None:  # from now on the owner writes both (torch's pickler shares the tensor's memory)
            self._tensor = torch.tensor([self.get()], dtype=torch.int64).share_memory_()
        return {"_tensor": self._tensor}

    def __setstate__(self, state: dict) -> None:
        self._map, self._tensor = None, state["_tensor"]


class _Plans(Sequence):
    """`CodeMixPlan` of row i, rebuilt from the dataset's plan columns (for tests and `codemixed_question`)."""

    def __init__(self, ds: "VQADataset") -> None:
        self._ds = ds

    def __len__(self) -> int:
        return len(self._ds._cm_n)

    def __getitem__(self, i: int) -> CodeMixPlan:  # type: ignore[override]
        words, cands = self._ds._plan_parts(i)
        return CodeMixPlan(tuple(words), tuple(cands), int(self._ds._cm_n[i]), self._ds._joiner)


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


COLUMNS_FORMAT = 1  # bump when what the columns hold changes (a cache of another format is rebuilt)
_COLUMNS = ("question_ids", "img_ids", "_label_ids", "_label_scores", "_ids", "_sep", "_t_ids", "_t_sep", "_pairs",
            "_tag_len", "_tag_walk", "_tag_index", "_tag_ids", "_tag_text", "_cm_words", "_cm_cands", "_cm_n")
_META = "columns.json"


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
        # set in the workers of a `cvil.inputs.loader.FeatureLoader` only: batches then leave their features to it
        self.features_in_main = False
        self._epoch = _EpochCell()
        self.seed, self.epoch, self.max_text_len = seed, 0, max_text_len
        self.row_identity = row_identity  # QLAFile.key_description of the rows' file: what `question_ids` mean
        # ([CLS], [SEP]) ids, read once: the tokenizer's attribute lookup costs more than assembling a text
        self._s_special = (student_tokenizer.cls_token_id, student_tokenizer.sep_token_id)
        if teacher_tokenizer is not None:
            self._t_special = (teacher_tokenizer.cls_token_id, teacher_tokenizer.sep_token_id)
        if rows is None:  # `from_columns` fills the columns
            return
        with _gc_paused():
            self._precompute(rows)

    # -- columns on disk ------------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What the columns depend on besides the rows and the tokenizers (part of a cache key)."""
        return {"format": COLUMNS_FORMAT, "lang": self.lang, "max_text_len": self.max_text_len,
                "kd": None if self.kd is None else asdict(self.kd)}

    def save_columns(self, folder: str | Path, extra: dict | None = None) -> None:
        """Write the columns as `.npy` files plus `columns.json` into `folder` (created; written under a temporary
        name and renamed, so a reader never sees half a folder; an existing folder is kept as it is). `extra`: any
        JSON the caller wants kept with them (`columns.json`'s `extra`)."""
        folder = Path(folder)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            names = []
            for name in _COLUMNS:
                value = self.__dict__.get(name)
                if isinstance(value, _Ragged):
                    np.save(tmp / f"{name}.offsets.npy", value.offsets)
                    np.save(tmp / f"{name}.flat.npy", value.flat)
                elif isinstance(value, np.ndarray):
                    np.save(tmp / f"{name}.npy", value)
                else:
                    continue
                names.append([name, isinstance(value, _Ragged)])
            strings = self.__dict__.get("_strings")
            if strings is not None:
                encoded = [w.encode("utf-8") for w in strings]
                np.save(tmp / "_strings.offsets.npy",
                        np.concatenate([[0], np.cumsum([len(b) for b in encoded], dtype=np.int64)]).astype(np.int64))
                np.save(tmp / "_strings.flat.npy", np.frombuffer(b"".join(encoded), dtype=np.uint8))
            meta = {**self.settings(), "rows": len(self), "columns": names, "strings": strings is not None,
                    "row_identity": self.row_identity, "extra": extra}
            (tmp / _META).write_text(json.dumps(meta), encoding="utf-8")
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / _META).is_file():  # not another process's finished copy: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_columns(cls, folder: str | Path, student_tokenizer, features: FeatureLookup, label_count: int, lang: str,
                     max_regions: int, *, teacher_tokenizer=None, kd: KDSelection | None = None, seed: int = 0,
                     max_text_len: int = MAX_TEXT_LEN, row_identity: str | None = None) -> "VQADataset":
        """The dataset whose columns `save_columns` wrote to `folder`, memory-mapped (read-only, shared pages).
        The settings must be the ones it was saved with (checked)."""
        folder = Path(folder)
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        ds = cls(None, student_tokenizer, features, label_count, lang, max_regions, teacher_tokenizer=teacher_tokenizer,
                 kd=kd, seed=seed, max_text_len=max_text_len,
                 row_identity=meta.get("row_identity", "q_id") if row_identity is None else row_identity)
        wanted = ds.settings()
        if {k: meta.get(k) for k in wanted} != wanted:
            raise ValueError(f"the columns in {folder} were saved with {({k: meta.get(k) for k in wanted})}, "
                             f"not {wanted}")
        for name, ragged in meta["columns"]:
            if ragged:
                value = _Ragged.of(_mapped(folder / f"{name}.offsets.npy"), _mapped(folder / f"{name}.flat.npy"))
            else:
                value = _mapped(folder / f"{name}.npy")
            setattr(ds, name, value)
        if meta.get("strings"):
            offsets = np.load(folder / "_strings.offsets.npy").tolist()
            data = np.load(folder / "_strings.flat.npy").tobytes()
            ds._strings = [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
            ds._joiner = JOINERS[lang]
        if len(ds) != meta["rows"]:
            raise ValueError(f"{folder}: {len(ds)} rows in the columns, {meta['rows']} in {_META}")
        return ds

    def _precompute(self, rows: Sequence) -> None:
        """Encode every example (student, and teacher for KD), its KD text pairs and its code-mix plan."""
        lang, kd = self.lang, self.kd
        self.question_ids = np.array([row.key for row in rows], dtype=np.int64)
        self.img_ids = np.array([row.img_id for row in rows], dtype=np.int64)
        self._label_ids = _Ragged([row.answer_ids for row in rows], np.int32)
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
        if not kd.codemix:
            self._pairs = _Ragged([self._text_pairs(t.tokens, s.tokens) for t, s in zip(teacher, student)],
                                  np.int16, 3)
            return
        # the tag walk of the unmixed text, relative to the first [SEP]s, and its tag length: a code-mixed text
        # with the same tag length (all but long questions) has the same walk
        self._tag_len = np.array([max(0, len(s.tokens) - s.tokens.index(SEP) - 2) for s in student], np.int16)
        if kd.tags:
            self._tag_walk = _Ragged([self._relative_walk(t.tokens, s.tokens) for t, s in zip(teacher, student)],
                                     np.int16, 2)
        # untruncated student tags per distinct tag text: a code-mixed question changes the truncation
        position = {k: i for i, k in enumerate(tag_pieces)}
        self._tag_index = np.array([position[k] for k in tag_keys], np.int32)
        self._tag_ids = _Ragged([ids for _, ids in tag_pieces.values()], np.int32)
        self._tag_text = np.array([bool(k) for k in tag_pieces], bool)  # raw tag text non-empty (the budget)
        plans = CodeMixer(self.teacher, self.student, lang, rate=kd.codemix_rate, unit=kd.codemix_unit).plan_many(
            [r.alignments.get(lang) for r in rows], english, [len(p) for p, _ in q_pieces], self.question_ids
        )
        self._set_plan_columns(plans)

    def _set_plan_columns(self, plans: Sequence[CodeMixPlan]) -> None:
        """The plans as columns: word ids into one string table, (word index, English word id) candidates, n."""
        table: dict[str, int] = {}
        intern = table.setdefault
        self._cm_words = _Ragged([[intern(w, len(table)) for w in p.words] for p in plans], np.int32)
        self._cm_cands = _Ragged([[(i, intern(e, len(table))) for i, e in p.candidates] for p in plans], np.int32, 2)
        self._cm_n = np.array([p.n for p in plans], np.int32)
        self._strings = list(table)
        self._joiner = JOINERS[self.lang]

    def _plan_parts(self, i: int) -> tuple[list[str], list[tuple[int, str]]]:
        strings = self._strings
        words = [strings[w] for w in self._cm_words[i].tolist()]
        cands = [(k, strings[e]) for k, e in self._cm_cands[i].tolist()]
        return words, cands

    @property
    def _plans(self) -> Sequence[CodeMixPlan]:
        return _Plans(self)

    def _relative_walk(self, teacher_tokens, student_tokens) -> list[tuple[int, int]]:
        kd = self.kd
        t0, s0 = teacher_tokens.index(SEP), student_tokens.index(SEP)
        return [(s - s0, t - t0) for s, t in tag_alignment(teacher_tokens, student_tokens, max_len=self.max_text_len,
                                                           fix_continuation_overrun=kd.fix_continuation_overrun)]

    # -- construction helpers -------------------------------------------------------------------------------------
    def _assemble(self, special: tuple[int, int], q_tokens, q_ids, t_tokens, t_ids, has_tag_text: bool) -> EncodedText:
        return assemble(q_tokens, q_ids, t_tokens, t_ids, *special, self.max_text_len, has_tag_text)

    @staticmethod
    def _pack(encoded: Sequence[EncodedText]) -> tuple[_Ragged, np.ndarray]:
        first_sep = np.array([e.tokens.index(SEP) for e in encoded], dtype=np.int16)
        return _Ragged([e.input_ids for e in encoded], np.int32), first_sep

    def _text_pairs(self, teacher_tokens, student_tokens, codemix_pairs=()) -> list[tuple[int, int, int]]:
        kd = self.kd
        tags = tag_alignment(teacher_tokens, student_tokens, max_len=self.max_text_len,
                             fix_continuation_overrun=kd.fix_continuation_overrun) if kd.tags else ()
        return select_pairs(kd, tags, codemix_pairs)

    # -- per step ---------------------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch.get()

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.set(int(value))

    def set_epoch(self, epoch: int) -> None:
        """Select the code-mix draws of `epoch` (a pure function of (seed, epoch, index)); reaches DataLoader
        workers, persistent ones included, for the iterators started after the call."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.question_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        feats, n = self.features.get(int(self.img_ids[index]), self.max_regions)
        example: dict[str, Any] = {
            "img_feats": feats,
            "n_regions": int(n),
            "labels": SparseLabels(_long(self._label_ids[index]),
                                   torch.from_numpy(self._label_scores[index].copy()), self.label_count),
            "question_id": int(self.question_ids[index]),
        }
        if self.kd is not None and self.kd.codemix:
            example.update(self._codemixed(index))
        else:
            ids = _long(self._ids[index])
            example.update(input_ids=ids, token_type_ids=_segments(len(ids), int(self._sep[index])))
        if self.kd is not None:
            t_ids = _long(self._t_ids[index])
            example.update(teacher_input_ids=t_ids, kd_image=self.kd.image,
                           teacher_token_type_ids=_segments(len(t_ids), int(self._t_sep[index])))
            if "kd_text_pairs" not in example:
                example["kd_text_pairs"] = _long(self._pairs[index])
        return example

    def codemixed_question(self, index: int, epoch: int | None = None) -> str:
        """The code-mixed question of example `index` in `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        words, cands = self._plan_parts(index)
        return mix(words, cands, int(self._cm_n[index]), self._joiner, draw_rng(self.seed, epoch, index))

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
            "kd_text_pairs": pairs_tensor(self._text_pairs(teacher_tokens, enc.tokens, cm)),
        }

    # -- per batch (the DataLoader's path) --------------------------------------------------------------------------
    def __getitems__(self, indices: Sequence[int]) -> ExampleBatch:
        """The examples `indices` as one `ExampleBatch` (equal to `[self[i] for i in indices]` once collated)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and not (-len(self) <= idx.min() and idx.max() < len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} examples")
        idx = idx % max(1, len(self))  # negative indices, as numpy indexing takes them in __getitem__
        feats, n_regions = self._features_batch(idx)
        kd = self.kd
        rows = idx.tolist()
        if kd is not None and kd.codemix:
            input_ids, first_sep, pairs = self._codemixed_batch(rows)
        else:
            input_ids, first_sep, pairs = [self._ids[i] for i in rows], self._sep[idx], None
            if kd is not None:
                pairs = [self._pairs[i] for i in rows]
        batch = ExampleBatch(
            input_ids=input_ids, first_sep=first_sep, img_feats=feats, n_regions=n_regions,
            label_ids=[self._label_ids[i] for i in rows], label_scores=[self._label_scores[i] for i in rows],
            num_labels=self.label_count, question_ids=self.question_ids[idx],
        )
        if kd is not None:
            batch.teacher_input_ids = [self._t_ids[i] for i in rows]
            batch.teacher_first_sep, batch.kd_text_pairs, batch.kd_image = self._t_sep[idx], pairs, kd.image
        return batch

    @property
    def reads_batches(self) -> bool:
        """Whether the store has the batch reader (the packed store): only then can a batch's features be read apart
        from the batch, in the main process (`features_in_main`, `read_features`)."""
        return hasattr(self.features, "get_batch")

    def read_features(self, img_ids: list[int], *, pin_memory: bool = False) -> tuple[torch.Tensor, np.ndarray]:
        """fp16 `[B, max_regions, D]` features of `img_ids` from the batch reader, and their `n_regions`;
        `pin_memory`: read straight into pinned memory (one copy, not a read plus the DataLoader's pinned copy)."""
        out = None
        if pin_memory:
            out = torch.empty((len(img_ids), self.max_regions, self.features.dim), dtype=torch.float16,
                              pin_memory=True)
        feats, n = self.features.get_batch(img_ids, self.max_regions, dtype=torch.float16, out=out)
        return feats, np.asarray(n, dtype=np.int64)

    def _features_batch(self, idx: np.ndarray) -> tuple[torch.Tensor | PendingFeatures, np.ndarray]:
        img_ids = self.img_ids[idx].tolist()
        if self.reads_batches and self.features_in_main:  # a FeatureLoader's worker: only the counts (the mask)
            n = self.features.region_counts(img_ids, self.max_regions)
            return PendingFeatures(img_ids, self.max_regions), np.asarray(n, dtype=np.int64)
        if self.reads_batches:
            return self.read_features(img_ids)
        got = [self.features.get(i, self.max_regions) for i in img_ids]
        if not got:
            return torch.zeros(0, self.max_regions, 0), np.zeros(0, np.int64)
        return torch.stack([f for f, _ in got]), np.array([int(n) for _, n in got], np.int64)

    def _vocab(self, side: str) -> list[str]:
        """The tokenizer's pieces by id (`convert_ids_to_tokens` of every id, once per process)."""
        name = f"_{side}_vocab"
        vocab = self.__dict__.get(name)
        if vocab is None:
            tok = self.student if side == "student" else self.teacher
            vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
            setattr(self, name, vocab)
        return vocab

    def _codemixed_batch(self, rows: list[int]) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        """`_codemixed` for a batch: one tokenizer call for all its code-mixed questions."""
        kd, epoch, seed = self.kd, self.epoch, self.seed
        sentences = []
        for i in rows:
            words, cands = self._plan_parts(i)
            # fewer than two candidates: the shuffle draws nothing, so the sentence does not depend on the RNG
            rng = draw_rng(seed, epoch, i) if len(cands) > 1 else _NO_DRAW
            sentences.append(mix(words, cands, int(self._cm_n[i]), self._joiner, rng))
        enc = self.student(sentences, add_special_tokens=False, return_attention_mask=False,
                           return_token_type_ids=False)["input_ids"]
        s_vocab, t_vocab = self._vocab("student"), self._vocab("teacher")
        cls_id, sep_id = self._s_special
        budget = self.max_text_len
        ids_out, seps, pairs_out = [], np.zeros(len(rows), np.int64), []
        for b, (i, q_ids) in enumerate(zip(rows, enc)):
            tag = int(self._tag_index[i])
            tag_ids = self._tag_ids[tag]
            if self._tag_text[tag]:
                la, lb = truncated_lengths(len(q_ids), len(tag_ids), budget - 3)
            else:
                la, lb = min(len(q_ids), budget - 2), 0
            ids = np.empty(la + 2 + (lb + 1 if lb else 0), np.int64)
            ids[0], ids[1 : la + 1], ids[la + 1] = cls_id, q_ids[:la], sep_id
            if lb:
                ids[la + 2 : -1], ids[-1] = tag_ids[:lb], sep_id
            s0, t_ids, t0 = la + 1, self._t_ids[i], int(self._t_sep[i])
            parts = []
            if kd.cls:
                parts.append(np.array([[0, 0, COMPONENT_CLS]], np.int64))
            teacher_q = [t_vocab[x] for x in t_ids[1:t0].tolist()]
            cm = codemix_alignment([s_vocab[x] for x in q_ids[:la]], teacher_q)
            if cm:
                block = np.full((len(cm), 3), COMPONENT_CODEMIX, np.int64)
                block[:, :2] = cm
                parts.append(block)
            if kd.tags:
                if lb == self._tag_len[i]:
                    rel = self._tag_walk[i]
                else:  # the code-mixed question changed how many tag pieces fit: walk these
                    s_suffix = [SEP, *(s_vocab[x] for x in tag_ids[:lb].tolist()), *([SEP] if lb else [])]
                    t_suffix = [t_vocab[x] for x in t_ids[t0:].tolist()]
                    rel = np.array(_walk_tags(tuple(t_suffix), tuple(s_suffix), kd.fix_continuation_overrun),
                                   np.int64).reshape(-1, 2)
                block = np.full((len(rel), 3), COMPONENT_TAG, np.int64)
                block[:, 0], block[:, 1] = rel[:, 0] + s0, rel[:, 1] + t0
                parts.append(block)
            ids_out.append(ids)
            seps[b] = s0
            pairs_out.append(np.concatenate(parts) if parts else np.zeros((0, 3), np.int64))
        return ids_out, seps, pairs_out
