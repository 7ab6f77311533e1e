"""The teacher and student WordPiece tokenisers of the synthetic world, trained offline with `tokenizers`.

- teacher: English uncased, like bert-base-uncased (BertNormalizer lowercase + strip accents), trained on the English
  questions, tags and answers;
- student: multilingual uncased with accents stripped, like bert-base-multilingual-uncased
  (`BertNormalizer(lowercase=True, strip_accents=True, handle_chinese_chars=True)`: every kanji becomes its own
  token, Japanese dakuten and Devanagari vowel signs are stripped (です -> てす) — intended, that is what mBERT does),
  trained on English + Japanese + Hindi questions, tags and answers with a smaller share of English, so that some
  tag words split differently in the two vocabularies and others identically (what the tag and code-mix
  alignments of §2.3–2.5 of the reference notes have to cope with).

Both are saved as ordinary HF folders (`tokenizer.json`, `vocab.txt`, `tokenizer_config.json`,
`special_tokens_map.json`) loadable with `transformers.AutoTokenizer.from_pretrained`. Special tokens: [PAD]=0,
[UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(corpus: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                                        show_progress=False, continuing_subword_prefix="##")
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return tok


def save_hf_folder(tok: Tokenizer, folder: Path, *, max_length: int = 512) -> None:
    """Write `tok` as a BERT tokenizer folder (fast `tokenizer.json` plus `vocab.txt` for slow loaders)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"), pretty=False)
    vocab = tok.get_vocab()
    with open(folder / "vocab.txt", "w", encoding="utf-8") as f:
        for word, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
            f.write(word + "\n")
    config = {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "strip_accents": None,
        "tokenize_chinese_chars": True, "model_max_length": max_length, "clean_up_tokenization_spaces": True,
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json",
                {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                 "mask_token": "[MASK]"})


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def build_tokenizers(root: Path, english: list[str], multilingual: list[str], preset) -> dict:
    """Train and save both tokenisers under `root/tokenizers/`; return a small summary for world.json."""
    teacher = train_wordpiece(english, preset.teacher_vocab)
    student = train_wordpiece(multilingual, preset.student_vocab)
    save_hf_folder(teacher, root / "tokenizers" / "teacher")
    save_hf_folder(student, root / "tokenizers" / "student")
    return {"teacher_vocab": teacher.get_vocab_size(), "student_vocab": student.get_vocab_size()}
