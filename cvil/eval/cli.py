"""``cvil eval``: score an EvalAI results file.

``eval`` is pure: it reads ground-truth files and an EvalAI results file and never touches a model. Producing one
from a trained checkpoint is ``cvil predict`` (registered by :mod:`cvil.train.cli`, beside the code it runs).

Bad input raises a ``CvilError`` (``DataFormatError``, ``ResultsFormatError``, ``UsageError``), which the ``cvil``
dispatcher reports in one line with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json
from cvil.errors import UsageError


def _print_table(title: str, summary: dict[str, float], extra: dict[str, Any] | None = None) -> None:
    width = max([len(k) for k in summary] + [len(k) for k in (extra or {})] + [6])
    print(title)
    print("-" * (width + 12))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value:>9.2f}")
    for key, value in (extra or {}).items():
        print(f"{key:<{width}}  {value!s:>9}")


def _write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)


def _annotations(path: str, questions_path: str | None) -> list[dict[str, Any]]:
    """Official annotations, checked against the questions file when given (same question ids)."""
    data = load_json(path, "a VQA annotations file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataFormatError(path, "top level", "an object with an 'annotations' list", type(data).__name__)
    anns = data["annotations"]
    if questions_path is not None:
        qdata = load_json(questions_path, "a VQA questions file")
        if not isinstance(qdata, dict) or not isinstance(qdata.get("questions"), list):
            raise DataFormatError(questions_path, "top level", "an object with a 'questions' list", type(qdata).__name__)
        q_ids = {int(q["question_id"]) for q in qdata["questions"]}
        a_ids = {int(a["question_id"]) for a in anns}
        if q_ids != a_ids:
            diff = sorted(q_ids ^ a_ids)
            raise DataFormatError(questions_path, f"question_id {diff[0]}",
                                  f"the question ids of {path}", f"{len(diff)} ids in one file only")
    return anns


def _run_vqa(args: argparse.Namespace) -> int:
    from cvil.eval.evaluate import evaluate_predictions
    from cvil.eval.results_io import read_results, write_per_question

    anns = _annotations(args.annotations, args.questions)
    preds = read_results(args.results, [int(a["question_id"]) for a in anns])
    result = evaluate_predictions("vqa", anns, preds, evaluator=args.evaluator)
    official = result.report["official"]
    _print_table("VQA accuracy (official rules, percent)", {"overall": official["overall"]} | official["perAnswerType"],
                 {"questions": len(anns), "evaluator": result.report["evaluator"]})
    if args.out:
        _write_json(args.out, official | {"evaluator": result.report["evaluator"]})
    if args.per_question:
        write_per_question(args.per_question, result.per_question)
    return 0


def _run_hindi(args: argparse.Namespace) -> int:
    from cvil.eval.evaluate import evaluate_predictions
    from cvil.eval.hindi import load_hindi_classes
    from cvil.eval.results_io import read_results, write_per_question

    anns = _annotations(args.annotations, args.questions)
    preds = read_results(args.results, [int(a["question_id"]) for a in anns])
    result = evaluate_predictions("hindi", anns, preds, classes=load_hindi_classes(args.classes),
                                  evaluator=args.evaluator)
    _print_table("Hindi VQA accuracy (percent; accuracy_en = English classes)", result.summary,
                 {"questions": len(anns), "evaluator": result.report["evaluator"]})
    if args.out:
        _write_json(args.out, result.report)
    if args.per_question:
        write_per_question(args.per_question, result.per_question)
    return 0


def _run_jvg(args: argparse.Namespace) -> int:
    from cvil.eval.evaluate import evaluate_predictions
    from cvil.eval.jvg import load_unknown
    from cvil.eval.results_io import read_results, write_per_question

    if args.qla:  # labelled rows: the truth is label2ans[an[0]] from the label map beside the file
        from cvil.eval.jvg_truth import qla_ground_truth

        gt, _ = qla_ground_truth(args.qla)
    else:
        gt = load_unknown(args.unknown)
    preds = read_results(args.results, list(gt["question_id"]))
    from cvil.eval.jvg import FROM_LANGUAGE

    tokenizer = {None: FROM_LANGUAGE, "none": None}.get(args.bleu_tokenizer, args.bleu_tokenizer)
    result = evaluate_predictions("jvg", gt, preds, bleu_tokenizer=tokenizer, lang=args.lang, **_bleu_options(args))
    counts = result.report["counts"]
    extra: dict[str, Any] = {k: counts[k] for k in ("n", "n_covered", "correct_uncovered")}
    if "bleu" in result.report:
        extra["bleu signature"] = result.report["bleu"]["signature_str"]
    _print_table("JVG evaluation (percent)", result.summary, extra)
    if args.out:
        _write_json(args.out, {"summary": result.summary} | result.report)
    if args.per_question:
        write_per_question(args.per_question, result.per_question)
    return 0


def _add_bleu_options(parser: argparse.ArgumentParser) -> None:
    from cvil.eval.bleu import JVG_PRESET, LEVELS, PRESETS, SMOOTHINGS

    g = parser.add_argument_group("BLEU (fugashi + NLTK; docs/metrics.md)")
    g.add_argument("--bleu-preset", choices=sorted(PRESETS), default=None,
                   help=f"named setting (default {JVG_PRESET}); the options below override it")
    g.add_argument("--bleu-level", choices=LEVELS, default=None, help="corpus_bleu or the mean of sentence_bleu")
    g.add_argument("--bleu-smoothing", choices=SMOOTHINGS, default=None, help="NLTK SmoothingFunction method")
    g.add_argument("--bleu-weights", default=None, help="comma-separated n-gram weights, e.g. 1 or 0.5,0.5")
    g.add_argument("--bleu-auto-reweigh", action="store_true", default=None, help="NLTK auto_reweigh")


def _bleu_options(args: argparse.Namespace) -> dict[str, Any]:
    """The BLEU flags that were given (None = the preset's value)."""
    weights = None
    if args.bleu_weights is not None:
        try:
            weights = tuple(float(w) for w in args.bleu_weights.split(","))
        except ValueError:
            raise UsageError(f"--bleu-weights: expected comma-separated numbers, got {args.bleu_weights!r}") from None
    given = {"preset": args.bleu_preset, "level": args.bleu_level, "smoothing": args.bleu_smoothing,
             "weights": weights, "auto_reweigh": args.bleu_auto_reweigh}
    return {k: v for k, v in given.items() if v is not None}


def _add_evaluator(parser: argparse.ArgumentParser) -> None:
    from cvil.eval.vqa_official import DEFAULT_EVALUATOR, EVALUATORS

    parser.add_argument("--evaluator", default=DEFAULT_EVALUATOR, choices=EVALUATORS,
                        help="which GT-Vision-Lab vqaEval.py to reproduce: current master (a013f00, default) or "
                             "legacy-2017 (the file before a013f00, used by older ports)")


def register(subparsers: Any) -> None:
    """Add ``eval`` (with ``vqa``, ``jvg``, ``hindi``)."""
    ev = subparsers.add_parser("eval", help="score an EvalAI results file (VQA official, JVG, Hindi)")
    sub = ev.add_subparsers(dest="eval_kind", metavar="KIND", required=True)

    vqa = sub.add_parser("vqa", help="official VQA accuracy from the official question/annotation files")
    vqa.add_argument("--questions", help="v2_OpenEnded_mscoco_*_questions.json (checked against the annotations)")
    vqa.add_argument("--annotations", required=True, help="v2_mscoco_*_annotations.json")
    vqa.add_argument("--results", required=True, help='results JSON: [{"question_id", "answer"}]')
    vqa.add_argument("--out", help="write the official accuracy dict here (JSON)")
    vqa.add_argument("--per-question", help="write the per-question CSV here")
    _add_evaluator(vqa)
    vqa.set_defaults(func=_run_vqa)

    hi = sub.add_parser("hindi", help="accuracy over merged Hindi classes and English classes")
    hi.add_argument("--questions", help="v2_OpenEnded_mscoco_*_questions.json (checked against the annotations)")
    hi.add_argument("--annotations", required=True, help="v2_mscoco_*_annotations.json of the Hindi questions")
    hi.add_argument("--results", required=True, help='results JSON: [{"question_id", "answer"}] (Hindi answers)')
    hi.add_argument("--classes", required=True, help="vqa/hi_ans2label.json")
    hi.add_argument("--out", help="write the accuracies (merged Hindi classes and English) here (JSON)")
    hi.add_argument("--per-question", help="write the per-question CSV here")
    _add_evaluator(hi)
    hi.set_defaults(func=_run_hindi)

    jvg = sub.add_parser("jvg", help="JVG accuracy, coverage, BLEU and per-question-word accuracy")
    truth = jvg.add_mutually_exclusive_group(required=True)
    truth.add_argument("--unknown", help="test-dev2015_qla_mrcnn.json.unknown (all test rows, with answer strings)")
    truth.add_argument("--qla", help="a labelled QLA file (e.g. vg/val2014_qla_mrcnn.json), scored through the "
                       "trainval_label2ans.pkl beside it (rows without a label are left out; a file without unique "
                       "q_ids, as the release's train/val, names its rows by position: question_id 0, 1, ...)")
    jvg.add_argument("--results", required=True, help='results JSON: [{"question_id", "answer"}]')
    jvg.add_argument("--lang", default=None, help="the questions' language (default: the JVG set's, Japanese): its "
                     "language file gives the BLEU tokenizer and the question types (cvil/languages)")
    jvg.add_argument("--bleu-tokenizer", default=None, metavar="NAME",
                     help="fugashi (NLTK), a sacrebleu tokenizer (ja-mecab, char, zh, 13a, ...) or none "
                          "(default: the language file's)")
    _add_bleu_options(jvg)
    jvg.add_argument("--out", help="write summary, counts and BLEU signature here (JSON)")
    jvg.add_argument("--per-question", help="write the per-question CSV here")
    jvg.set_defaults(func=_run_jvg)
