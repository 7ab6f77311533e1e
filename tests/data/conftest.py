"""Tiny teacher/student tokenizers, QLA rows and a dict-backed feature store for the input-pipeline tests.

The vocabularies are chosen so that the interesting cases occur: tags split differently by the two tokenizers
(`racket`, `skateboard`), identically split words (`play ##ing`, `cat ##s`), Japanese kanji split into characters and
kana runs WordPiece'd, Hindi words (accents stripped as in uncased mBERT) and the ASCII `?` shared by both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast

from cvil.data.qla import QLARow

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ENGLISH = ("what color is the cat dog ? how many are there on a table man person red bus two 2 tennis . , "
           "play ##ing ##s in".split())
TEACHER_ONLY = ["skate", "##board", "rack", "##et", "umbrella"]
STUDENT_ONLY = ["skat", "##eb", "##oard", "racket", "umb", "##rella"]
JAPANESE = ["猫", "犬", "は", "何", "色", "机", "の", "上", "に", "い", "て", "##す", "##か", "##る", "##ま", "人", "が"]
HINDI_WORDS = "बिल्ली किस रंग की है कुत्ता मेज पर क्या".split()


def _normalised_words(tok: BertTokenizerFast, text: str) -> list[str]:
    backend = tok.backend_tokenizer
    return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]


def _make(path: Path, pieces: list[str], multilingual: bool) -> BertTokenizerFast:
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    kwargs = dict(do_lower_case=True, tokenize_chinese_chars=True, strip_accents=True) if multilingual else dict(
        do_lower_case=True)
    vocab.write_text("\n".join(SPECIALS + pieces) + "\n", encoding="utf-8")
    if multilingual:  # Hindi words as the uncased normaliser leaves them (combining marks stripped)
        probe = BertTokenizerFast(str(vocab), **kwargs)
        extra = [w for w in dict.fromkeys(_normalised_words(probe, " ".join(HINDI_WORDS))) if w not in pieces]
        vocab.write_text("\n".join(SPECIALS + pieces + extra) + "\n", encoding="utf-8")
    return BertTokenizerFast(str(vocab), **kwargs)


@pytest.fixture(scope="session")
def teacher_tok(tmp_path_factory) -> BertTokenizerFast:
    return _make(tmp_path_factory.mktemp("teacher"), ENGLISH + TEACHER_ONLY, multilingual=False)


@pytest.fixture(scope="session")
def student_tok(tmp_path_factory) -> BertTokenizerFast:
    return _make(tmp_path_factory.mktemp("student"), ENGLISH + STUDENT_ONLY + JAPANESE, multilingual=True)


class DictFeatures:
    """A feature store backed by a dict `{img_id: float32 [n, D]}`, with `PackedFeatureStore.get`'s contract."""

    def __init__(self, feats: dict[int, torch.Tensor]) -> None:
        self.feats = feats

    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]:
        x = self.feats[img_id]
        n = min(len(x), max_regions)
        out = torch.zeros(max_regions, x.shape[1])
        out[:n] = x[:n]
        return out, n


@pytest.fixture
def features() -> DictFeatures:
    g = torch.Generator().manual_seed(0)
    return DictFeatures({i: torch.rand(n, 6, generator=g) for i, n in ((1, 3), (2, 7), (3, 5))})


def _row(q_id, img_id, en, tags, an, s, **questions_and_alignments) -> QLARow:
    questions = {"en": en, **{k: v for k, v in questions_and_alignments.items() if not k.endswith("_en")}}
    alignments = {k[:-3]: v for k, v in questions_and_alignments.items() if k.endswith("_en")}
    return QLARow(questions=questions, tags=tags, answer_ids=tuple(an), scores=tuple(s), img_id=img_id, q_id=q_id,
                  alignments=alignments)


@pytest.fixture
def ja_rows() -> list[QLARow]:
    """Japanese rows with alignments: a unique candidate, a duplicate English target, an unaligned word."""
    return [
        _row(101, 1, "What color is the cat?", "cat;table;tennis racket", [0, 2], [1.0, 0.3],
             ja="猫は何色ですか", ja_en=[["猫", "cat", 4], ["は"], ["何", "What", "0"], ["色", "color", 1], ["ですか"]]),
        _row(102, 2, "How many dogs are there?", "dog;skateboard;man", [1], [0.6],
             ja="犬は何いますか", ja_en=[["犬", "dogs", 2], ["は"], ["何", "How", 0], ["いますか", "are", 3]]),
        _row(103, 3, "Is the cat on the table?", "cat;table;umbrella;person", [3], [0.9],
             ja="猫は机の上にいますか", ja_en=[["猫", "cat", 2], ["は"], ["机", "table", 5], ["の", "table", 5],
                                            ["上", "on", 3], ["に"], ["いますか", "Is", 0]]),
        _row(104, 1, "What is on the table?", "cat;table;tennis racket", [], [],
             ja="机の上に何", ja_en=[["机", "table", 4], ["の"], ["上", "on", 2], ["に"], ["何", "What", 0]]),
    ]


@pytest.fixture
def hi_rows() -> list[QLARow]:
    return [
        _row(201, 1, "What color is the cat ?", "cat;table", [0], [1.0],
             hi="बिल्ली किस रंग की है ?", hi_en=[["बिल्ली", "cat", 4], ["किस", "What", 0], ["रंग", "color", 1],
                                             ["की"], ["है", "is", 2], ["?", "?", 5]]),
        _row(202, 2, "Is the dog on the table ?", "dog;table", [1], [1.0],
             hi="क्या कुत्ता मेज पर है ?", hi_en=[["क्या", "Is", 0], ["कुत्ता", "dog", 2], ["मेज", "table", 5],
                                              ["पर", "on", 3], ["है", "Is", 0], ["?", "?", 6]]),
    ]
