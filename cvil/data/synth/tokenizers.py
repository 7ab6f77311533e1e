"""The teacher and student WordPiece tokenisers of the synthetic world, trained offline with `tokenizers`.

- teacher: English uncased, like bert-base-uncased (BertNormalizer lowercase + strip accents), trained on the English
  questions, tags and answers;
- student: multilingual uncased with accents stripped, like bert-base-multilingual-uncased
  (`BertNormalizer(lowercase=True, strip_accents=True, handle_chinese_chars=True)`: every kanji becomes its own
  token, Japanese dakuten and Devanagari vowel signs are stripped (です -> てす) — intended, that is what mBERT does),
  trained on English + Japanese + Hindi questions, tags and answers with a smaller share of English, so that some
  tag words split differently in the two vocabularies and others identically (what the tag and code-mix
  alignments of §2.3–2.5 of the reference notes have to cope with).

The vocabularies are learnt with the WordPiece trainer's algorithm but deterministic tie-breaking
(`learn_vocabulary`), then wrapped in `tokenizers`' WordPiece model with the BERT normaliser and pre-tokeniser.
Both are saved as ordinary HF folders (`tokenizer.json`, `vocab.txt`, `tokenizer_config.json`,
`special_tokens_map.json`) loadable with `transformers.AutoTokenizer.from_pretrained`. Special tokens: [PAD]=0,
[UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _normalizer():
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True)


def learn_vocabulary(corpus: list[str], max_size: int) -> list[str]:
    """WordPiece vocabulary learnt the way `tokenizers`' WordPieceTrainer does it (BPE merges over the words of the
    BERT normaliser + pre-tokeniser, continuation pieces prefixed with ##), with ties broken lexicographically.

    `tokenizers`' own trainer breaks ties between equally frequent merges in hash-map order, which changes from
    process to process, so the same corpus gave different vocabularies; this learner is deterministic. The result
    is ordered: special tokens, the alphabet (sorted), then the merged tokens in merge order — so its first N
    entries are the vocabulary that training with `vocab_size=N` would give.
    """
    norm, pre = _normalizer(), pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in corpus:
        for word, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            counts[word] += 1
    words = sorted(counts)
    freq = [counts[w] for w in words]
    seqs = [[w[0]] + ["##" + c for c in w[1:]] for w in words]
    vocab = list(SPECIAL_TOKENS) + sorted({sym for seq in seqs for sym in seq} - set(SPECIAL_TOKENS))
    known = set(vocab)
    pair_count: Counter = Counter()
    where: dict[tuple, set] = {}
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pair_count[pair] += freq[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-n, pair) for pair, n in pair_count.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < max_size:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or -neg <= 0:
            continue                                        # stale entry
        merged = pair[0] + pair[1][2:]
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        changed: set = set()
        for i in sorted(where.pop(pair, ())):
            seq = seqs[i]
            for p in zip(seq, seq[1:]):
                pair_count[p] -= freq[i]
                changed.add(p)
            out, k = [], 0
            while k < len(seq):
                if k + 1 < len(seq) and (seq[k], seq[k + 1]) == pair:
                    out.append(merged)
                    k += 2
                else:
                    out.append(seq[k])
                    k += 1
            seqs[i] = out
            for p in zip(out, out[1:]):
                pair_count[p] += freq[i]
                where.setdefault(p, set()).add(i)
                changed.add(p)
        for p in sorted(changed):
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
            else:
                pair_count.pop(p, None)
                where.pop(p, None)
    return vocab


def build_tokenizer(vocab: list[str]) -> Tokenizer:
    """A BERT WordPiece tokenizer (normaliser, pre-tokeniser, [CLS]/[SEP] template, decoder) over `vocab`."""
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    return tok


def train_wordpiece(corpus: list[str], vocab_size: int) -> Tokenizer:
    return build_tokenizer(learn_vocabulary(corpus, vocab_size))


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


def _split_share(tok: Tokenizer, words: list[str]) -> float:
    return sum(len(tok.encode(w, add_special_tokens=False).tokens) > 1 for w in words) / len(words)


def build_tokenizers(root: Path, english: list[str], multilingual: list[str], tag_words: list[str], preset) -> dict:
    """Train and save both tokenisers under `root/tokenizers/`; return a small summary for world.json.

    The teacher keeps every English word whole (vocabulary capped at `preset.teacher_vocab`). The student's
    vocabulary size is the largest (≤ `preset.student_vocab`) at which at least `preset.student_split_share` of the
    tag words are split into several pieces — found by bisection, deterministic — so some tag words are tokenised
    differently by the two tokenisers and the others identically.
    """
    teacher = train_wordpiece(english, preset.teacher_vocab)
    full = learn_vocabulary(multilingual, preset.student_vocab)
    lo, hi, best = len(SPECIAL_TOKENS) + 1, len(full), None
    while lo <= hi:                       # largest size with enough split tag words (vocab[:n] = training to n)
        mid = (lo + hi) // 2
        if _split_share(build_tokenizer(full[:mid]), tag_words) >= preset.student_split_share:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    student = build_tokenizer(full[:best] if best is not None else full)
    save_hf_folder(teacher, root / "tokenizers" / "teacher")
    save_hf_folder(student, root / "tokenizers" / "student")
    split_diff = sorted(w for w in tag_words if teacher.encode(w, add_special_tokens=False).tokens
                        != student.encode(w, add_special_tokens=False).tokens)
    return {"teacher_vocab": teacher.get_vocab_size(), "student_vocab": student.get_vocab_size(),
            "tag_words_split_differently": split_diff}
