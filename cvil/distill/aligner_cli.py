"""`cvil align`: write the `{lang}-en` word alignments of a QLA file with an embedding aligner, and score them.

The rows are read and written as plain JSON (not through `read_qla`), so every other field survives unchanged.
Target words: the words of an existing `{lang}-en` field when the row has one (so its indices, and gold pairs made
against it, stay valid), else `segment_words` (character-class runs for ja, whitespace for hi). English words are
`english_words(en)`, which `en_idx` indexes.

`--gold FIELD` scores against gold pairs `[[tgt_word_idx, en_word_idx], ...]` stored in that field (rows without it
are skipped): precision, recall and AER (sure = possible = gold), over all word links the aligner extracted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cvil.distill.aligner import METHODS, EmbeddingAligner, alignment_scores, segment_words


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("align", help="word-align target questions to English (writes the {lang}-en field)")
    p.add_argument("--input", required=True, type=Path, help="QLA JSON file")
    p.add_argument("--lang", required=True, help="target language field (ja, hi, ...)")
    p.add_argument("--model", required=True, help="HF encoder folder (model + tokenizer), e.g. mBERT")
    p.add_argument("--out", type=Path, help="output QLA JSON (default: do not write; useful with --gold)")
    p.add_argument("--method", choices=METHODS, default="argmax")
    p.add_argument("--layer", type=int, default=8, help="hidden_states index (0 = embeddings); awesome-align: 8")
    p.add_argument("--threshold", type=float, default=1e-3, help="softmax threshold (method softmax)")
    p.add_argument("--similarity", choices=("cosine", "dot"), help="default: cosine for argmax, dot for softmax")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gold", metavar="FIELD", help="score against gold [tgt_idx, en_idx] pairs in this field")
    p.set_defaults(func=run)


def _words(row: dict, lang: str, where: str) -> tuple[list[str], list[str]]:
    if lang not in row:
        raise SystemExit(f"{where}: no {lang!r} question field")
    english = row.get("en", row.get("q"))
    if english is None:
        raise SystemExit(f"{where}: no English question ('en' or 'q')")
    existing = row.get(f"{lang}-en")
    tgt = [str(e[0]) for e in existing] if existing else segment_words(row[lang], lang)
    return tgt, segment_words(english, "en")


def run(args: argparse.Namespace) -> int:
    rows = json.loads(args.input.read_text(encoding="utf-8"))
    words = [_words(row, args.lang, f"{args.input} row {i} (q_id {row.get('q_id')})") for i, row in enumerate(rows)]
    try:
        aligner = EmbeddingAligner(args.model, layer=args.layer, method=args.method, threshold=args.threshold,
                                   similarity=args.similarity, batch_size=args.batch_size, device=args.device)
    except ValueError as exc:  # a wrong --layer/--similarity: a message, not a traceback
        raise SystemExit(f"cvil align: {exc}") from None
    alignments = aligner.align_many(words)
    for row, (tgt, en), al in zip(rows, words, alignments):
        row[f"{args.lang}-en"] = al.entries(tgt, en)
    print(f"aligned {len(rows)} questions ({args.method}, layer {args.layer})")
    if args.gold:
        scored = [(al.links, row[args.gold]) for row, al in zip(rows, alignments) if args.gold in row]
        s = alignment_scores([p for p, _ in scored], [g for _, g in scored])
        print(f"gold {args.gold!r} on {len(scored)} questions: precision {s.precision:.4f} recall {s.recall:.4f} "
              f"AER {s.aer:.4f} ({s.n_predicted} predicted, {s.n_gold} gold links)")
    if args.out:
        args.out.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0
