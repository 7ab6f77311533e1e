"""`cvil data add-language --mt-model DIR`: translate the English questions offline with a HF seq2seq folder.

Any `AutoModelForSeq2SeqLM` folder works (MarianMT `Helsinki-NLP/opus-mt-en-*`, NLLB, M2M100...). The distinct
questions are translated in file order of first appearance, in batches, greedy or beam search (deterministic), and
written as the `english \\t translation` TSV that `add-language --translations` reads, so the whole mVQA step can
be regenerated. NLLB/M2M100 need the target language token: pass `forced_bos_token` (e.g. `jpn_Jpan`, `hin_Deva`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cvil.data.errors import DataFormatError
from cvil.data.json_file import load_json
from cvil.data.prepare.common import progress


def translate(sentences: Sequence[str], *, model_dir: str | Path, batch_size: int = 32, num_beams: int = 1,
              max_new_tokens: int = 64, device: str = "cpu", forced_bos_token: str | None = None,
              show_progress: bool | None = None) -> list[str]:
    """Translations of `sentences`, one per sentence, in order."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if not Path(model_dir, "config.json").is_file():
        raise DataFormatError(model_dir, "config.json", "a Hugging Face seq2seq model folder", "no config.json")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir)).to(device).eval()
    extra = {}
    if forced_bos_token is not None:
        extra["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(forced_bos_token)
    out: list[str] = []
    starts = range(0, len(sentences), batch_size)
    for start in progress(starts, desc="translating", total=len(starts), enabled=show_progress):
        batch = tokenizer(list(sentences[start : start + batch_size]), return_tensors="pt", padding=True,
                          truncation=True).to(device)
        batch.pop("token_type_ids", None)
        with torch.no_grad():
            generated = model.generate(**batch, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
                                       **extra)
        out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [" ".join(t.split()) for t in out]  # no tabs or newlines inside a TSV field


def translate_qla(*, qla: str | Path, out_tsv: str | Path, model_dir: str | Path, **options) -> int:
    """Write the translations TSV of the distinct English questions of a QLA file; returns how many."""
    rows = load_json(qla, "a QLA JSON file")
    if not isinstance(rows, list):
        raise DataFormatError(qla, "top level", "a JSON list of question rows", type(rows).__name__)
    questions = list(dict.fromkeys(r.get("en", r.get("q")) for r in rows if isinstance(r, dict)))
    questions = [q for q in questions if isinstance(q, str) and "\t" not in q and "\n" not in q]
    translations = translate(questions, model_dir=model_dir, **options)
    Path(out_tsv).write_text("".join(f"{q}\t{t}\n" for q, t in zip(questions, translations)),
                             encoding="utf-8")
    return len(questions)


def translate_answers(*, ans2label: str | Path, out_tsv: str | Path, model_dir: str | Path, **options) -> int:
    """Write the `english answer \\t translation` TSV of every answer of a `trainval_ans2label.pkl`."""
    from cvil.data.prepare.hindi_classes import read_ans2label

    answers = [a for a in read_ans2label(ans2label) if "\t" not in a and "\n" not in a]
    translations = translate(answers, model_dir=model_dir, **options)
    Path(out_tsv).write_text("".join(f"{a}\t{t}\n" for a, t in zip(answers, translations)), encoding="utf-8")
    return len(answers)
