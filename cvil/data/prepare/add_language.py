"""`cvil data add-language`: add a machine-translated question and its `{lang}-en` word alignment to a QLA file.

mVQA (the release's translated questions and alignments) was never published (reference §4.2 [GAP]). This rebuilds
it from any MT output and any word aligner:
- `translations`: a TSV `english question \\t translation`, one line per distinct question (a repeated question
  with the same translation is counted in the report, one with another translation is an error naming both lines,
  as in `hindi-classes`; a QLA question without a line is an error unless `allow_missing`, which drops the row and
  reports it);
- `alignments`: Pharaoh lines (`0-0 1-2 ...`), one per TSV line, as fast_align / awesome-align / SimAlign write for
  `english ||| target` input (`write_aligner_input` writes that input); `i-j` links English word `i` of
  `english_words(en)` to target word `j` of `target_words(translation, lang)`; `order="tgt-en"` reads `j-i` files;
- or `aligner`: cvil's embedding aligner (`cvil.data.prepare.aligner`) on any HF encoder folder.
Each target word becomes `[tgt_word, en_word, en_idx]` (its linked English word with the lowest index; the aligner
picks its most similar) or `[tgt_word]` when unaligned. `lang` is a language of the registry (`cvil.languages`: a
shipped file or one given with `language_files` / `--language-file`); its file names the two fields written
(`question_field`, `alignment_field`) and the target words (`segmentation`): Japanese words are fugashi + unidic-lite
surface forms (`cvil.data.text.japanese_words`): the release's segmenter is unknown, and the code-mixer only needs
words that concatenate back to the sentence with the file's `codemix_joiner`, which these do.
Rows are read and written as plain JSON objects, so every other field survives unchanged (keys are written sorted).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json, read_text
from cvil.data.prepare.common import progress, read_tsv, write_json
from cvil.data.text import english_words, target_words

ORDERS = ("en-tgt", "tgt-en")


def read_translations(path: str | Path) -> tuple[dict[str, tuple[int, str]], list[int]]:
    """`{english: (tsv line number, translation)}` and the line numbers of duplicates. A duplicate line with the same
    translation (compared without surrounding whitespace) is counted and the first line kept; one with a different
    translation is an error naming both lines, as in `hindi-classes`: which one the rows should get is not ours to
    guess."""
    table: dict[str, tuple[int, str]] = {}
    duplicates: list[int] = []
    for line_no, (english, translation) in read_tsv(path, 2, "english question \\t translation"):
        if english in table:
            first_line, first = table[english]
            if first.strip() != translation.strip():
                raise DataFormatError(path, f"line {line_no}", f"one translation of {english!r}",
                                      f"{translation!r} here, {first!r} at line {first_line}")
            duplicates.append(line_no)
            continue
        table[english] = (line_no, translation)
    return table, duplicates


def parse_pharaoh(line: str, *, file: str | Path, line_no: int, n_en: int, n_tgt: int,
                  order: str = "en-tgt") -> set[tuple[int, int]]:
    """Links `(tgt_idx, en_idx)` of one Pharaoh line; a pair outside the sentences' words is an error."""
    links = set()
    for pair in line.split():
        left, sep, right = pair.partition("-")
        if not sep or not left.isdigit() or not right.isdigit():
            raise DataFormatError(file, f"line {line_no}", "Pharaoh pairs i-j of word indices", repr(pair))
        en_idx, tgt_idx = (int(left), int(right)) if order == "en-tgt" else (int(right), int(left))
        if en_idx >= n_en or tgt_idx >= n_tgt:
            raise DataFormatError(file, f"line {line_no}",
                                  f"English index < {n_en} and target index < {n_tgt} ({order})", repr(pair))
        links.add((tgt_idx, en_idx))
    return links


def entries(tgt: Sequence[str], en: Sequence[str], links: set[tuple[int, int]]) -> list[list]:
    """One `[tgt_word, en_word, en_idx]` / `[tgt_word]` entry per target word (lowest linked English index)."""
    best: dict[int, int] = {}
    for t, e in links:
        best[t] = min(e, best.get(t, e))
    return [[w, en[best[t]], best[t]] if t in best else [w] for t, w in enumerate(tgt)]


def _english(row: object, path: Path, index: int) -> str:
    if not isinstance(row, dict):
        raise DataFormatError(path, f"row {index}", "a JSON object", type(row).__name__)
    text = row.get("en", row.get("q"))
    if not isinstance(text, str):
        raise DataFormatError(path, f"row {index}", "an English question field 'en' (or 'q')", f"keys {sorted(row)}")
    return text


def write_aligner_input(*, translations: str | Path, lang: str, out: str | Path) -> int:
    """`english words ||| target words`, one line per TSV line (the input fast_align / awesome-align read)."""
    lines = [" ".join(english_words(en)) + " ||| " + " ".join(target_words(tr, lang))
             for _, (en, tr) in read_tsv(translations, 2, "english question \\t translation")]
    Path(out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def add_language(*, qla: str | Path, lang: str, translations: str | Path, out: str | Path,
                 alignments: str | Path | None = None, alignment_order: str = "en-tgt", aligner: str | None = None,
                 aligner_options: dict | None = None, allow_missing: bool = False,
                 show_progress: bool | None = None, language_files: Sequence[str | Path] = ()) -> dict:
    """Write `out`: the rows of `qla` with the language's question and alignment fields (`{lang}`, `{lang}-en`)
    added; returns the report (also `out.report.json`). `language_files` are registered first (`cvil.languages`)."""
    from cvil.languages import add_paths, get_language

    add_paths(language_files)
    language = get_language(lang)  # an unknown code: one line with the closest known ones
    if language.alignment_field is None:
        raise DataFormatError(language.source, "alignment_field", f"an alignment field for {lang!r} (it is the "
                              "language the others align to)", "null")
    question_field, alignment_field = language.question_field, language.alignment_field
    if (alignments is None) == (aligner is None):
        raise DataFormatError("add-language", "options", "exactly one of --alignments FILE or --aligner MODEL",
                              "both" if alignments else "neither")
    if alignment_order not in ORDERS:
        raise DataFormatError("--alignment-order", "value", " or ".join(ORDERS), repr(alignment_order))
    if aligner is not None:  # the encoder's folder and depth, before any file is read or the model loaded
        from cvil.data.prepare.encoder_folder import check_encoder

        opts = aligner_options or {}
        check_encoder(aligner, layer=opts.get("layer", 8), method=opts.get("method", "argmax"),
                      similarity=opts.get("similarity"), option="--aligner")
    qla, out = Path(qla), Path(out)
    rows = load_json(qla, "a QLA JSON file")
    if not isinstance(rows, list):
        raise DataFormatError(qla, "top level", "a JSON list of question rows", type(rows).__name__)
    table, duplicate_lines = read_translations(translations)
    english = [_english(row, qla, i) for i, row in enumerate(rows)]
    missing = [i for i, en in enumerate(english) if en not in table or not table[en][1].strip()]
    if missing and not allow_missing:
        i = missing[0]
        raise DataFormatError(translations, "rows", f"a translation of every question of {qla.name} (or --allow-missing)",
                              f"{len(missing)} missing, e.g. row {i}: {english[i]!r}")
    # Links of each distinct English question, keyed by its TSV line.
    needed = sorted({table[en][0] for i, en in enumerate(english) if en in table and table[en][1].strip()})
    by_line = {line_no: (en, tr) for en, (line_no, tr) in table.items()}
    words = {ln: (english_words(by_line[ln][0]), target_words(by_line[ln][1], lang)) for ln in needed}
    field_of: dict[int, list] = {}  # the `{lang}-en` field of each needed TSV line
    if alignments is not None:
        alignments = Path(alignments)
        if not alignments.is_file():
            raise DataFormatError(alignments, "file", "Pharaoh alignments, one line per translation", "no such file")
        pharaoh = read_text(alignments, "Pharaoh alignments, one line per translation").splitlines()
        # line k of the alignment file belongs to the k-th non-blank line of the TSV (duplicates included)
        tsv_lines = sorted([ln for ln, _ in table.values()] + duplicate_lines)
        if len(pharaoh) != len(tsv_lines):
            raise DataFormatError(alignments, "lines", f"{len(tsv_lines)} lines, one per line of "
                                  f"{Path(translations).name}", len(pharaoh))
        position = {ln: k for k, ln in enumerate(tsv_lines)}
        for ln in progress(needed, desc="alignments", total=len(needed), enabled=show_progress):
            k, (en_w, tgt_w) = position[ln], words[ln]
            links = parse_pharaoh(pharaoh[k], file=alignments, line_no=k + 1, n_en=len(en_w), n_tgt=len(tgt_w),
                                  order=alignment_order)
            field_of[ln] = entries(tgt_w, en_w, links)
    else:
        from cvil.data.prepare.aligner import EmbeddingAligner

        model = EmbeddingAligner(aligner, **(aligner_options or {}))
        aligned = model.align_many([(words[ln][1], words[ln][0]) for ln in needed])
        field_of = {ln: a.entries(words[ln][1], words[ln][0]) for ln, a in zip(needed, aligned)}
    skip = set(missing)
    kept = [{**row, question_field: by_line[table[english[i]][0]][1], alignment_field: field_of[table[english[i]][0]]}
            for i, row in enumerate(progress(rows, desc="rows", total=len(rows), enabled=show_progress))
            if i not in skip]
    write_json(out, kept)
    n_words = sum(len(r[alignment_field]) for r in kept)
    n_aligned = sum(len(e) >= 3 for r in kept for e in r[alignment_field])
    report = {"input": qla.name, "lang": lang, "rows_in": len(rows), "rows_out": len(kept),
              "rows_dropped_missing_translation": len(missing), "translation_lines": len(table) + len(duplicate_lines),
              "duplicate_translation_lines": duplicate_lines[:20], "duplicates": len(duplicate_lines),
              "unused_translations": len(set(table) - set(english)), "target_words": n_words,
              "aligned_words": n_aligned, "aligned_fraction": round(n_aligned / n_words, 4) if n_words else 0.0,
              "alignment_source": f"pharaoh ({alignment_order})" if alignments is not None else f"aligner {aligner}"}
    write_json(out.with_name(out.name + ".report.json"), report, indent=2)
    return report
