"""`cvil embed-plot`: the command line of `cvil.analysis.embed_plot` (paper Fig. 3). Its errors (`EmbedPlotError`,
a `CvilError`) go to the dispatcher, which prints them as one line with exit code 2."""

from __future__ import annotations

import argparse

import torch

from cvil.analysis import embed_plot as _module
from cvil.analysis.embed_plot import DEFAULT_OBJECTS, embed_plot, parse_pairs
from cvil.languages import JVG_LANGUAGE


def register(subparsers) -> None:
    p = subparsers.add_parser("embed-plot", help="t-SNE of teacher/student token embeddings (paper Fig. 3)",
                              description=_module.__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint folder (Oscar format or our save)")
    p.add_argument("--student", required=True, help="student checkpoint folder (e.g. a run's final/)")
    p.add_argument("--data", required=True, help="dataset root (holds vqa/ and vg/)")
    p.add_argument("--objects", default=",".join(DEFAULT_OBJECTS), help="English object names, comma-separated")
    p.add_argument("--pairs", default="", help="EN=TRANSLATION,... (default: the synthetic lexicon)")
    p.add_argument("--split", default="val", choices=("train", "val", "test"),
                   help="split whose questions are embedded (default val)")
    p.add_argument("--out", default="embed_plot.png", help="PNG to write (default embed_plot.png)")
    p.add_argument("--run-id", default="", help="MLflow run to log the figure to (artifact path figures/)")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--max-examples", type=int, default=2000, help="questions per side")
    p.add_argument("--max-points-per-class", type=int, default=200,
                   help="at most this many token embeddings per object word and side (default 200)")
    p.add_argument("--teacher-tokenizer", default="", help="default: the teacher folder, else DATA/tokenizers/teacher")
    p.add_argument("--student-tokenizer", default="", help="default: the student folder, else DATA/tokenizers/student")
    p.add_argument("--teacher-dataset", default="vqa", help="dataset folder under --data of the English side (default vqa)")
    p.add_argument("--student-dataset", default="vg", help="dataset folder under --data of the student side (default vg)")
    p.add_argument("--student-lang", default=JVG_LANGUAGE,
                   help=f"the student questions' language (default {JVG_LANGUAGE}, the JVG set's; cvil/languages)")
    p.add_argument("--max-regions", type=int, default=50, help="image regions per question fed to the models (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the question sample and of t-SNE (default 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default cuda when available, else cpu)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    result = embed_plot(
        args.teacher, args.student, args.data, objects=args.objects.split(","),
        pairs=parse_pairs(args.pairs) if args.pairs else None, split=args.split, out=args.out,
        max_examples=args.max_examples, max_points_per_class=args.max_points_per_class,
        teacher_tokenizer=args.teacher_tokenizer or None, student_tokenizer=args.student_tokenizer or None,
        teacher_dataset=args.teacher_dataset, student_dataset=args.student_dataset,
        student_lang=args.student_lang, max_regions=args.max_regions, seed=args.seed, device=args.device,
        run_id=args.run_id or None, tracking_uri=args.tracking_uri)
    summary = "; ".join(f"({p}) " + ", ".join(f"{g} {n}" for g, n in c.items()) for p, c in result.counts.items())
