"""`cvil data pack`, `validate`, `prepare-jvg`, `add-language`, `hindi-classes`: build, pack and check dataset
folders before training on them; `cvil align`: write (and score) the `{lang}-en` word alignments of a QLA file."""

from __future__ import annotations

import argparse
import json
import sys

from cvil.data.region_features import SOURCES


def _pack(args: argparse.Namespace) -> int:
    """Bad input raises a `CvilError` (`DataFormatError`, `UsageError`), which the dispatcher reports: one line, exit 2."""
    from cvil.data.feature_store import pack_features, source_fingerprint
    from cvil.data.region_features import open_feature_source

    from cvil.errors import UsageError

    if args.max_regions < 0:
        raise UsageError(f"--max-regions must be >= 1 (or 0: keep every region), got {args.max_regions}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1 and args.source != "pt-dir":
        raise UsageError(f"--workers reads per-image files in parallel: it applies to --source pt-dir, not "
                         f"{args.source!r} (one file, read in order)")
    source = open_feature_source(args.source, args.input, args.offset_map, args.dim)
    ids = _ids_from(args.ids_from) if args.ids_from else None
    key = source_fingerprint(args.input) if args.source == "pt-dir" else None  # lets training detect edits
    store = pack_features(source, args.out, ids=ids, dim=args.dim, source_key=key,
                          max_regions=args.max_regions or None, workers=args.workers)
    kept = f"first {store.max_regions} per image" if store.max_regions else "all"
    print(f"packed {len(store)} images, {store.total_regions} regions ({kept}) x {store.dim} (float16) into {args.out}")
    return 0


def _ids_from(paths: list[str]) -> list[int]:
    """The distinct img_ids of QLA files (test: the `.unknown` file, which lists every test row)."""
    from cvil.data.qla import read_qla

    return sorted({row.img_id for path in paths for row in read_qla(path, drop_empty=False).rows})


def _print_report(report: dict) -> None:
    print(json.dumps(report, ensure_ascii=False, sort_keys=True, indent=2))


def _prepare_jvg(args: argparse.Namespace) -> int:
    from cvil.data.prepare.jvg import prepare_jvg

    _print_report(prepare_jvg(qa=args.qa, tags=args.tags, out=args.out, splits=args.splits, top_k=args.top_k,
                              ans2label=args.ans2label, min_conf=args.min_conf, seed=args.seed,
                              features=args.features or (), allow_empty_splits=args.allow_empty_splits))
    return 0


def _add_language(args: argparse.Namespace) -> int:
    from cvil.data.prepare.add_language import add_language, write_aligner_input
    from cvil.languages import add_paths, get_language

    add_paths(args.language_file)
    get_language(args.lang)  # refused on one line, with the closest codes, before any translation or file is written
    if args.aligner:  # before the translation step, which can take hours
        from cvil.data.prepare.encoder_folder import check_encoder

        check_encoder(args.aligner, layer=args.layer, method=args.method, option="--aligner")
    if args.mt_model:
        from cvil.data.prepare.translate import translate_qla

        n = translate_qla(qla=args.qla, out_tsv=args.translations, model_dir=args.mt_model,
                          batch_size=args.batch_size, num_beams=args.num_beams, device=args.device,
                          forced_bos_token=args.forced_bos_token)
        print(f"translated {n} distinct questions into {args.translations}", file=sys.stderr)
    if args.write_aligner_input:
        n = write_aligner_input(translations=args.translations, lang=args.lang, out=args.write_aligner_input)
        print(f"wrote {n} 'english ||| target' lines to {args.write_aligner_input}", file=sys.stderr)
    if not (args.alignments or args.aligner) and (args.mt_model or args.write_aligner_input):
        return 0  # a first step only: translate and/or write the external aligner's input
    if not args.out:
        from cvil.errors import UsageError

        raise UsageError("--out is required to write the QLA file with the new language")
    options = {"layer": args.layer, "method": args.method, "batch_size": args.batch_size, "device": args.device}
    _print_report(add_language(qla=args.qla, lang=args.lang, translations=args.translations, out=args.out,
                               alignments=args.alignments, alignment_order=args.alignment_order,
                               aligner=args.aligner, aligner_options=options, allow_missing=args.allow_missing))
    return 0


def _hindi_classes(args: argparse.Namespace) -> int:
    from cvil.data.prepare.hindi_classes import build_hindi_classes

    if args.mt_model:
        from cvil.data.prepare.translate import translate_answers

        n = translate_answers(ans2label=args.ans2label, out_tsv=args.translations, model_dir=args.mt_model,
                              batch_size=args.batch_size, num_beams=args.num_beams, device=args.device,
                              forced_bos_token=args.forced_bos_token)
        print(f"translated {n} answers into {args.translations}", file=sys.stderr)
    report = build_hindi_classes(ans2label=args.ans2label, translations=args.translations, out=args.out,
                                 allow_missing=args.allow_missing)
    _print_report({k: v for k, v in report.items() if k != "merges"} | {"merged_classes": len(report["merges"])})
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cvil.data.validate import dataset_folders, format_report, validate_dataset

    failed = False
    for folder in dataset_folders(args.dir):
        report = validate_dataset(folder)
        text = format_report(report)
        if report.ok:  # JVG-like folders (those with a `.unknown` file): the answer lengths, before the verdict
            from cvil.data.answer_stats import folder_answer_lengths

            lengths = folder_answer_lengths(folder)
            if lengths is not None:
                body, _, verdict = text.rpartition("\n")
                text = f"{body}\n  {lengths.format()}\n{verdict}"
        print(text)
        failed |= not report.ok
    return 1 if failed else 0


def _align(args: argparse.Namespace) -> int:
    from cvil.data.prepare.encoder_folder import check_encoder

    check_encoder(args.model, layer=args.layer, method=args.method, similarity=args.similarity)  # before torch
    from cvil.data.prepare.aligner import align_qla

    result = align_qla(qla=args.input, lang=args.lang, model=args.model, out=args.out, method=args.method,
                       layer=args.layer, threshold=args.threshold, similarity=args.similarity,
                       batch_size=args.batch_size, device=args.device, gold=args.gold)
    print(f"aligned {result['rows']} questions ({args.method}, layer {args.layer})")
    if args.gold:
        s = result["gold"]
        print(f"gold {args.gold!r} on {result['gold_rows']} questions: precision {s.precision:.4f} recall "
              f"{s.recall:.4f} AER {s.aer:.4f} ({s.n_predicted} predicted, {s.n_gold} gold links)")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _register_align(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("align", help="word-align target questions to English (writes the {lang}-en field)",
                              description="Write the {lang}-en field of every row with cvil's embedding aligner "
                                          "(cvil.data.prepare.aligner); --gold scores the links.")
    p.add_argument("--input", required=True, help="QLA JSON file")
    p.add_argument("--lang", required=True, help="target language field (ja, hi, ...)")
    p.add_argument("--model", required=True, help="HF encoder folder (model + tokenizer), e.g. mBERT")
    p.add_argument("--out", help="output QLA JSON (default: do not write; useful with --gold)")
    p.add_argument("--method", default="argmax", choices=("argmax", "softmax"),
                   help="argmax (SimAlign) or softmax (awesome-align)")
    p.add_argument("--layer", type=int, default=8,
                   help="hidden_states index, 0..the model's num_hidden_layers (0 = embeddings; default 8, "
                        "awesome-align's for 12-layer models)")
    p.add_argument("--threshold", type=float, default=1e-3, help="softmax threshold (method softmax)")
    p.add_argument("--similarity", choices=("cosine", "dot"), help="default: cosine for argmax, dot for softmax")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per encoder batch (default 32)")
    p.add_argument("--device", default="cpu", help="torch device of the encoder (default cpu)")
    p.add_argument("--gold", metavar="FIELD", help="score against gold [tgt_idx, en_idx] pairs in this field "
                   "(rows without it are skipped): precision, recall, AER (sure = possible = gold)")
    p.set_defaults(func=_align)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_align(subparsers)
    parser = subparsers.add_parser("data", help="prepare dataset folders from public downloads; pack features; validate")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    pack = commands.add_parser("pack", help="pack region features into a memory-mapped fp16 store")
    pack.add_argument("--source", required=True, choices=sorted(SOURCES),
                      help="pt-dir: folder of {img_id}.pt; vinvl-pt: one {img_id: tensor} .pt; tsv: VinVL feature TSV")
    pack.add_argument("--input", required=True, help="the folder or file to read")
    pack.add_argument("--offset-map", help="tsv only: JSON {img_id: byte offset} (else the TSV is scanned once)")
    pack.add_argument("--out", required=True, help="output folder (e.g. ROOT/vg/packed/train)")
    pack.add_argument("--dim", type=int, help="expected feature dim (default: taken from the first image)")
    pack.add_argument("--ids-from", action="append", metavar="QLA",
                      help="pack only the img_ids of this QLA file (repeatable); e.g. one split of a GQA/VG TSV")
    pack.add_argument("--max-regions", type=int, default=50, metavar="N",
                      help="keep each image's first N regions, what training reads (default 50, every config's "
                           "data.max_regions; 0 keeps all); training refuses a store packed with fewer than its "
                           "data.max_regions")
    pack.add_argument("--workers", type=int, default=1, metavar="N",
                      help="processes reading the per-image files (--source pt-dir; default 1)")
    pack.set_defaults(func=_pack)

    validate = commands.add_parser("validate", help="check a dataset folder end to end and print its counts")
    validate.add_argument("dir", help="a dataset folder (ROOT/vg, ROOT/vqa) or a ROOT holding vqa/ and vg/")
    validate.set_defaults(func=_validate)

    jvg = commands.add_parser("prepare-jvg", help="Japanese Visual Genome VQA + VinVL tags -> the vg/ dataset folder",
                              description="Writes the QLA files, label maps, the .unknown test file and "
                                          "prepare_report.json in the layout the release reads (cvil.data.prepare.jvg).")
    jvg.add_argument("--qa", required=True, help="question_answers.json (Visual Genome layout, Japanese QAs)")
    jvg.add_argument("--tags", required=True, help="image_labels.tsv: img_id \\t {\"objects\": [{class, rect, conf}]}")
    jvg.add_argument("--out", required=True, help="dataset folder to write, e.g. ROOT/vg")
    jvg.add_argument("--splits", help="folder with train.txt, val.txt, test.txt image ids (default: seeded split "
                                      "with the paper's proportions 59,550/1,984/37,674)")
    jvg.add_argument("--top-k", type=int, help="answer classes: the K most frequent train answers (default 3000)")
    jvg.add_argument("--ans2label", metavar="FILE",
                     help="answer classes from a file instead of --top-k: a JSON object {answer: id} with ids 0..N-1 "
                          "(UC2's misc/ans2label_ja.json) or a JSON list of answers")
    jvg.add_argument("--min-conf", type=float, help="keep detections with conf >= this as tags (default: all)")
    jvg.add_argument("--seed", type=int, default=0, help="seed of the split when --splits is not given")
    jvg.add_argument("--features", action="append", metavar="TSV|OFFSET_MAP",
                     help="feature TSV or its offset map JSON: report images without features (repeatable)")
    jvg.add_argument("--allow-empty-splits", action="store_true",
                     help="write a split with no images or no questions, with a warning, instead of refusing "
                          "(training selects checkpoints on val and scores test)")
    jvg.set_defaults(func=_prepare_jvg)

    lang = commands.add_parser("add-language", help="add a translated question + {lang}-en alignment to a QLA file",
                               description="Pharaoh alignments are read as English-target pairs i-j "
                                           "(english ||| target input); see cvil.data.prepare.add_language.")
    lang.add_argument("--qla", required=True, help="English QLA JSON (rows with 'en' or 'q')")
    lang.add_argument("--lang", required=True, help="language code of the new field (ja, hi, zh, ... : a language "
                      "file of cvil/languages, of --language-file or of $CVIL_LANGUAGES)")
    lang.add_argument("--language-file", action="append", default=[], metavar="PATH",
                      help="a language file (or a folder of them) declaring --lang (README \"Adding a language\"); "
                           "repeatable")
    lang.add_argument("--translations", required=True,
                      help="TSV 'english question \\t translation' (written first when --mt-model is given)")
    src = lang.add_mutually_exclusive_group()
    src.add_argument("--alignments", help="Pharaoh file, one line per translations line (fast_align, awesome-align)")
    src.add_argument("--aligner", metavar="MODEL", help="HF encoder folder for cvil's embedding aligner")
    lang.add_argument("--alignment-order", choices=("en-tgt", "tgt-en"), default="en-tgt",
                      help="en-tgt: pair i-j = English word i, target word j (english ||| target input)")
    lang.add_argument("--write-aligner-input", metavar="FILE",
                      help="write 'english words ||| target words' lines for an external aligner")
    lang.add_argument("--allow-missing", action="store_true", help="drop rows without a translation (reported)")
    lang.add_argument("--out", help="output QLA JSON (a report is written beside it as OUT.report.json)")
    lang.add_argument("--mt-model", metavar="DIR", help="translate with this HF seq2seq folder (MarianMT, NLLB)")
    lang.add_argument("--forced-bos-token", help="--mt-model: target language token (NLLB: jpn_Jpan, hin_Deva)")
    lang.add_argument("--num-beams", type=int, default=1, help="--mt-model: beam size (1 = greedy)")
    lang.add_argument("--method", choices=("argmax", "softmax"), default="argmax", help="--aligner extraction")
    lang.add_argument("--layer", type=int, default=8,
                      help="--aligner hidden_states index, 0..the model's num_hidden_layers (default 8)")
    lang.add_argument("--batch-size", type=int, default=32, help="--mt-model / --aligner batch size (default 32)")
    lang.add_argument("--device", default="cpu", help="torch device of --mt-model / --aligner (default cpu)")
    lang.set_defaults(func=_add_language)

    hi = commands.add_parser("hindi-classes", help="merge English answers with the same Hindi translation",
                             description="Writes hi_ans2label.json, hi_trainval_*.pkl and hindi_classes_report.json.")
    hi.add_argument("--ans2label", required=True, help="trainval_ans2label.pkl (English answers)")
    hi.add_argument("--translations", required=True, help="TSV 'english answer \\t hindi'")
    hi.add_argument("--out", required=True, help="output folder (the vqa/ dataset folder to train on them)")
    hi.add_argument("--allow-missing", action="store_true", help="an untranslated answer stays its own class")
    hi.add_argument("--mt-model", metavar="DIR", help="first translate the answers with this HF seq2seq folder")
    hi.add_argument("--forced-bos-token", help="--mt-model: target language token (NLLB: hin_Deva)")
    hi.add_argument("--num-beams", type=int, default=1, help="--mt-model: beam size (1 = greedy)")
    hi.add_argument("--batch-size", type=int, default=64, help="--mt-model batch size (default 64)")
    hi.add_argument("--device", default="cpu", help="torch device of --mt-model (default cpu)")
    hi.set_defaults(func=_hindi_classes)
