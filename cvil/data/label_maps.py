"""The answer vocabulary: `trainval_ans2label.pkl` (answer -> id) and `trainval_label2ans.pkl` (id -> answer).

The reference stores both as pickles of builtins; we read them through the restricted unpickler (never plain
`pickle.load`) and check that the two agree, because a silent off-by-one between them corrupts every prediction
file without any loss going wrong.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cvil.data import layout
from cvil.data.errors import DataFormatError
from cvil.data.safe_pickle import load_restricted_pickle
from cvil.fileio import atomic_write


@dataclass(frozen=True)
class LabelMaps:
    """The label set; ids are 0..N-1 and `label2ans[ans2label[a]] == a` for every answer."""

    ans2label: dict[str, int]
    label2ans: list[str]

    def __len__(self) -> int:
        return len(self.label2ans)

    @property
    def num_labels(self) -> int:
        return len(self.label2ans)


def _read_ans2label(path: Path) -> dict[str, int]:
    value = load_restricted_pickle(path)
    if not isinstance(value, dict):
        raise DataFormatError(path, "top level", "a dict {answer: label id}", type(value).__name__)
    for answer, label in value.items():
        if not isinstance(answer, str) or type(label) is not int:
            raise DataFormatError(path, f"key {answer!r}", "str answer -> int label id", f"{answer!r}: {label!r}")
    return value


def _read_label2ans(path: Path) -> list[str]:
    value = load_restricted_pickle(path)
    if isinstance(value, dict):  # the reference also accepts {id: answer}
        if any(type(k) is not int for k in value) or sorted(value) != list(range(len(value))):
            raise DataFormatError(path, "keys", f"int label ids 0..{len(value) - 1}", sorted(map(repr, value))[:5])
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, list):
        raise DataFormatError(path, "top level", "a list of answers (or a dict {id: answer})", type(value).__name__)
    for label, answer in enumerate(value):
        if not isinstance(answer, str):
            raise DataFormatError(path, f"label {label}", "a str answer", repr(answer))
    return value


def load_label_maps(folder: str | Path) -> LabelMaps:
    """Read and cross-check both label files of a dataset folder.

    `trainval_label2ans.pkl` is optional (the reference needs it only to write predictions); when absent it is
    the inverse of `trainval_ans2label.pkl`.
    """
    folder = Path(folder)
    a2l_path, l2a_path = folder / layout.ANS2LABEL, folder / layout.LABEL2ANS
    if not a2l_path.is_file():
        raise DataFormatError(a2l_path, "file", "a label map pickle", "no such file")
    ans2label = _read_ans2label(a2l_path)
    if sorted(ans2label.values()) != list(range(len(ans2label))):
        raise DataFormatError(a2l_path, "values", f"distinct label ids 0..{len(ans2label) - 1}", "gaps or duplicates")
    if l2a_path.is_file():
        label2ans = _read_label2ans(l2a_path)
        if len(label2ans) != len(ans2label):
            raise DataFormatError(l2a_path, "length", f"{len(ans2label)} answers (as {a2l_path.name})", len(label2ans))
        for answer, label in ans2label.items():
            if label2ans[label] != answer:
                raise DataFormatError(l2a_path, f"label {label}", f"{answer!r} (as {a2l_path.name})", repr(label2ans[label]))
    else:
        label2ans = [""] * len(ans2label)
        for answer, label in ans2label.items():
            label2ans[label] = answer
    return LabelMaps(ans2label=ans2label, label2ans=label2ans)


def _dump(path: Path, value: object) -> None:
    atomic_write(path, pickle.dumps(value, protocol=4))


def save_label_maps(folder: str | Path, answers: Sequence[str]) -> LabelMaps:
    """Write both label pickles (plain builtins, as the reference's files); the answer at position i gets id i."""
    answers = list(answers)
    seen: set[str] = set()
    for label, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise TypeError(f"answer {label} is {type(answer).__name__}, expected str")
        if answer in seen:
            raise ValueError(f"duplicate answer {answer!r} at label {label}")
        seen.add(answer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    maps = LabelMaps(ans2label={a: i for i, a in enumerate(answers)}, label2ans=answers)
    _dump(folder / layout.ANS2LABEL, maps.ans2label)
    _dump(folder / layout.LABEL2ANS, maps.label2ans)
    return maps
