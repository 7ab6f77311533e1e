"""`cvil data pack` and `cvil data validate`: prepare and check a dataset folder before training on it."""

from __future__ import annotations

import argparse
import sys

from cvil.data.region_features import SOURCES


def _pack(args: argparse.Namespace) -> int:
    from cvil.data.errors import DataFormatError
    from cvil.data.feature_store import pack_features
    from cvil.data.region_features import open_feature_source

    try:
        source = open_feature_source(args.source, args.input, args.offset_map, args.dim)
        store = pack_features(source, args.out, dim=args.dim)
    except (DataFormatError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"packed {len(store)} images, {store.total_regions} regions x {store.dim} (float16) into {args.out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cvil.data.validate import dataset_folders, format_report, validate_dataset

    failed = False
    for folder in dataset_folders(args.dir):
        report = validate_dataset(folder)
        print(format_report(report))
        failed |= not report.ok
        if report.ok:
            from cvil.data.answer_stats import folder_answer_lengths

            lengths = folder_answer_lengths(folder)  # JVG-like folders only (those with a `.unknown` file)
            if lengths is not None:
                print(f"  {lengths.format()}")
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="pack region features; validate a dataset folder")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    pack = commands.add_parser("pack", help="pack region features into a memory-mapped fp16 store")
    pack.add_argument("--source", required=True, choices=sorted(SOURCES),
                      help="pt-dir: folder of {img_id}.pt; vinvl-pt: one {img_id: tensor} .pt; tsv: VinVL feature TSV")
    pack.add_argument("--input", required=True, help="the folder or file to read")
    pack.add_argument("--offset-map", help="tsv only: JSON {img_id: byte offset} (else the TSV is scanned once)")
    pack.add_argument("--out", required=True, help="output folder (e.g. ROOT/vg/packed/train)")
    pack.add_argument("--dim", type=int, help="expected feature dim (default: taken from the first image)")
    pack.set_defaults(func=_pack)

    validate = commands.add_parser("validate", help="check a dataset folder end to end and print its counts")
    validate.add_argument("dir", help="a dataset folder (ROOT/vg, ROOT/vqa) or a ROOT holding vqa/ and vg/")
    validate.set_defaults(func=_validate)
