"""The released code's per-example, per-step KD position selection (`get_align`, reference §2.3), for benchmarks.

Kept as the *naive* reference the throughput harness (`bench/throughput/harness.py`) and the alignment benchmark
(`tests/benchmarks/test_alignment_speed.py`) time against `cvil.inputs.alignment`'s precomputed pairs: a Python walk
over 178-slot (`text` + regions) arrays, run for every example at every step. No code-mix part (alignment B).
"""

from __future__ import annotations

import torch

TEXT_SLOTS, TOTAL_SLOTS = 128, 178


def reference_get_align(teacher: list[str], student: list[str], total: int = TOTAL_SLOTS, text: int = TEXT_SLOTS):
    """`(apply bool[total], align long[total])`: CLS, every image slot `text..total-1`, the first [SEP] and the tag walk.

    `teacher` and `student` are the unpadded token strings `[CLS] q [SEP] tags [SEP]`; student position `s` with
    `apply[s]` is distilled against teacher position `align[s]` in the same `text + regions` layout.
    """
    apply, align = [False] * total, [0] * total
    apply[0] = True
    for i in range(text, total):
        apply[i], align[i] = True, i
    t, s = teacher.index("[SEP]"), student.index("[SEP]")
    apply[s], align[s] = True, t
    s, t = s + 1, t + 1
    s_len, t_len = min(text, len(student)), min(text, len(teacher))
    while s < s_len and t < t_len:
        if teacher[t] == student[s]:
            apply[s], align[s] = True, t
        k = 1
        while s + k < s_len and student[s + k].startswith("##"):
            if t + k < t_len and teacher[t + k] == student[s + k]:
                apply[s + k], align[s + k] = True, t + k
            k += 1
        s, t = s + k, t + 1
        while t < t_len and teacher[t].startswith("##"):
            t += 1
    return torch.tensor(apply), torch.tensor(align)
