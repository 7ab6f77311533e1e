"""Which student text positions are distilled, and against which teacher positions (reference §2.3, "A_ij").

The reference (`get_align`, `run_vqa_student.py:52-136`) re-derives the whole 178-slot selection for every example
at every step. Here the selection is split into its parts, each computed once and kept as index pairs:

- CLS: student 0 <-> teacher 0 (component 0);
- image slots: all `max_regions` slots, padded ones included, are implicit and added by the collate function
  (component 1);
- tags: the first `[SEP]` plus the position-wise equal tag subwords, found by `tag_alignment` (component 2);
- code-mix: whole-word string matches in the code-mixed question (`cvil.inputs.codemix`, component 3).

Positions here are *text-relative* (index into `[CLS] q [SEP] tags [SEP]`); `cvil.inputs.collate` turns them into
absolute positions of the padded batch.

Reference bug kept by default: in the tag walk, a student continuation piece `##x` at offset k of a word is compared
with `teacher[t + k]` without checking that `t + k` is still inside the teacher's current word. When the teacher
splits the word into fewer pieces than the student, the comparison runs into the *next* teacher word and can match one
of its continuation pieces (e.g. teacher `a | b ##c`, student `a ##x ##c`: student `##c` is paired with the teacher's
`##c` of word `b`). This is rare (it needs a shorter teacher split plus an equal continuation right after) and is what
the released code distilled, so `fix_continuation_overrun=False` reproduces it; `True` bounds k to the teacher word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from cvil.inputs.encoding import MAX_TEXT_LEN, SEP

COMPONENT_CLS, COMPONENT_IMAGE, COMPONENT_TAG, COMPONENT_CODEMIX = 0, 1, 2, 3
# The KD loss components by id, spelled once (the batch carries the ids; `cvil.distill.kd_losses` reports per name).
COMPONENT_NAMES = ("cls", "image", "tag", "codemix")


@dataclass(frozen=True)
class KDSelection:
    """Which position groups enter the KD loss (the reference's `--no_cls/--no_images/--no_tags/--codemix`).

    `tags=False` also drops the first `[SEP]`, as in the reference. `codemix=True` both code-mixes the student's
    question (train split) and distills the code-mix matches. `fix_continuation_overrun` see the module docstring.
    `codemix_rate`/`codemix_unit`: how many words a code-mix draw replaces (`cvil.inputs.codemix.CodeMixer`).
    """

    cls: bool = True
    image: bool = True
    tags: bool = True
    codemix: bool = False
    fix_continuation_overrun: bool = False
    codemix_rate: float = 0.15
    codemix_unit: str = "subwords"


Pair = tuple[int, int]  # (student position, teacher position), text-relative


def tag_alignment(
    teacher_tokens: Sequence[str],
    student_tokens: Sequence[str],
    *,
    max_len: int = MAX_TEXT_LEN,
    fix_continuation_overrun: bool = False,
) -> list[Pair]:
    """Tag alignment A as the released code walks it: `[(student_pos, teacher_pos), ...]`, text-relative.

    Both token lists are full texts (`[CLS] q [SEP] tags [SEP]`, or `[CLS] q [SEP]` without tags; unpadded). The first `[SEP]` of each is matched,
    then the tag words are walked in parallel (`_walk_tags`), bounded by `min(max_len, len(tokens))`.
    """
    t0, s0 = list(teacher_tokens).index(SEP), list(student_tokens).index(SEP)
    t_len, s_len = min(max_len, len(teacher_tokens)), min(max_len, len(student_tokens))
    rel = _walk_tags(tuple(teacher_tokens[t0:t_len]), tuple(student_tokens[s0:s_len]), fix_continuation_overrun)
    return [(s0 + ds, t0 + dt) for ds, dt in rel]


@lru_cache(maxsize=1 << 18)
def _walk_tags(teacher: tuple[str, ...], student: tuple[str, ...], fix: bool) -> tuple[Pair, ...]:
    """The walk on the two tag suffixes (each starting at its first `[SEP]`), relative to that `[SEP]`.

    Cached: the walk depends only on the tag pieces, and the questions of one image share their tags, so most
    examples (and every code-mix redraw, which only shifts the offsets) are a dictionary hit.
    """
    pairs: list[Pair] = [(0, 0)]  # the first [SEP] is distilled as part of the tags
    s_len, t_len = len(student), len(teacher)
    s = t = 1
    while s < s_len and t < t_len:
        if teacher[t] == student[s]:  # first piece of the word
            pairs.append((s, t))
        t_end = t_len
        if fix:  # stop at the end of the teacher's current word
            t_end = t + 1
            while t_end < t_len and teacher[t_end].startswith("##"):
                t_end += 1
        k = 1
        while s + k < s_len and student[s + k].startswith("##"):  # the student's continuation pieces
            if t + k < t_end and teacher[t + k] == student[s + k]:
                pairs.append((s + k, t + k))
            k += 1
        s += k
        t += 1
        while t < t_len and teacher[t].startswith("##"):  # skip the teacher's continuation pieces
            t += 1
    return tuple(pairs)


def clear_walk_cache() -> None:
    """Free the tag walks cached by construction (millions of small objects for a 600k-row split); only the
    per-example path (`VQADataset.__getitem__`) reads the cache later, and it refills what it needs."""
    _walk_tags.cache_clear()


def select_pairs(
    selection: KDSelection,
    tag_pairs: Iterable[Pair] = (),
    codemix_pairs: Iterable[Pair] = (),
) -> list[tuple[int, int, int]]:
    """The selected text pairs of one example as `(student_pos, teacher_pos, component)` rows.

    Image pairs are not listed: they are all `max_regions` slots and the collate function adds them.
    """
    rows: list[tuple[int, int, int]] = []
    if selection.cls:
        rows.append((0, 0, COMPONENT_CLS))
    if selection.codemix:
        rows.extend((s, t, COMPONENT_CODEMIX) for s, t in codemix_pairs)
    if selection.tags:
        rows.extend((s, t, COMPONENT_TAG) for s, t in tag_pairs)
    return rows


def text_pairs(
    selection: KDSelection,
    tag_pairs: Iterable[Pair] = (),
    codemix_pairs: Iterable[Pair] = (),
) -> torch.Tensor:
    """`select_pairs` as a LongTensor `[P, 3]` (what an example carries as `kd_text_pairs`)."""
    return pairs_tensor(select_pairs(selection, tag_pairs, codemix_pairs))


def pairs_tensor(rows: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """`(student_pos, teacher_pos, component)` rows as a LongTensor `[P, 3]` (`[0, 3]` when there are none)."""
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
