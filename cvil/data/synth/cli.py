"""`cvil synth`: generate the embedded synthetic multilingual VQA world in the real dataset layout."""

from __future__ import annotations

import argparse
import json

from cvil.data.synth.lexicon import EXTRA_LEXICONS
from cvil.data.synth.presets import DEFAULT_PRESET, PRESETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate the synthetic multilingual VQA world",
        description="Generate a deterministic synthetic VQA world (English VQA v2-like set with Japanese/Hindi "
                    "(and, with PRESET+LANG, other) translations and alignments, a JVG-like Japanese set, region "
                    "features, tokenisers) in the "
                    "real file layout. Same preset and seed -> byte-identical files.")
    p.add_argument("--preset", default=DEFAULT_PRESET, metavar="PRESET",
                   help=f"world size: {', '.join(sorted(PRESETS))} (default: {DEFAULT_PRESET}); PRESET+LANG adds the "
                        f"questions and alignments of another language ({', '.join(sorted(EXTRA_LEXICONS))}), e.g. "
                        f"small+zh; PRESET@teacher=N,mvqa=N,jvg=N sets the train images of the teacher's English-only corpus, the "
                        f"translated set and the JVG-like set (teacher=0: no corpus), e.g. small@teacher=0")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--force", action="store_true", help="replace an existing synthetic world in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvil.data.synth.writer import TIMING_FILE, generate

    manifest = generate(args.preset, args.seed, args.out, force=args.force)
    with open(f"{args.out}/{TIMING_FILE}", encoding="utf-8") as f:
        timing = json.load(f)
    vqa, vg = manifest["vqa"]["splits"], manifest["vg"]["splits"]
    print(f"synthetic world '{manifest['preset']}' (seed {manifest['seed']}) written to {args.out} "
          f"in {timing['seconds_to_generate']:.1f} s")
    print("  vqa questions: " + ", ".join(f"{s} {v['questions']}" for s, v in vqa.items())
          + f"; {manifest['vqa']['num_labels']} labels ({manifest['vqa']['num_hindi_labels']} Hindi)")
    print("  vg questions:  " + ", ".join(f"{s} {v['questions']} ({v['coverage']:.0%} covered)"
                                          for s, v in vg.items()) + f"; {manifest['vg']['num_labels']} labels")
    if "pretrain" in manifest:
        pre = manifest["pretrain"]["splits"]
        print("  teacher's English-only corpus: " + ", ".join(f"{s} {v['questions']}" for s, v in pre.items())
              + f" questions; {manifest['pretrain']['num_labels']} labels")
    print("  size MB: " + ", ".join(f"{k} {v}" for k, v in manifest["size_mb"].items()))
    return 0
