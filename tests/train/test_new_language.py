"""A language is a file: a language written into a temp folder, its fields added with `add_language` from a
translations TSV and Pharaoh alignments, then the tiny KD schedule trained on it, without a line of Python for it."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from cvil import languages
from cvil.config import load_config
from cvil.data import layout
from cvil.data.prepare.add_language import add_language
from cvil.data.text import english_words
from cvil.train.api import run

# Japanese read one character at a time: another segmentation and BLEU tokenizer than ja.yaml, the same script
XX = """\
code: xx
name: Japanese by character
question_field: q_xx
alignment_field: xx-en
segmentation: char
codemix_joiner: ""
bleu: char
needs_accents: true
accent_note: "dakuten go"
"""


def _char_pharaoh(row: dict) -> str:
    """Pharaoh `en-tgt` pairs over the characters of the row's Japanese words, from its gold word alignment."""
    words = [str(e[0]) for e in row["ja-en"]]
    start = [sum(len(w) for w in words[:i]) for i in range(len(words))]
    return " ".join(f"{e}-{start[t] + k}" for t, e in row["gold-ja-en"] for k in range(len(words[t])))


@pytest.fixture
def xx_world(tiny_world, tmp_path):
    """The tiny world's VQA folder with the `q_xx` / `xx-en` fields added by `add_language`."""
    folder, langs = tmp_path / "world" / "vqa", tmp_path / "langs"
    shutil.copytree(tiny_world.root / "vqa", folder)
    langs.mkdir()
    (langs / "xx.yaml").write_text(XX, encoding="utf-8")
    for split in layout.SPLITS:
        qla = layout.qla_path(folder, split)
        rows = json.loads(qla.read_text(encoding="utf-8"))
        first = {}
        for row in rows:
            first.setdefault(row["en"], row)
        (tmp_path / f"{split}.tsv").write_text("".join(f"{en}\t{r['ja']}\n" for en, r in first.items()),
                                               encoding="utf-8")
        (tmp_path / f"{split}.pharaoh").write_text("".join(_char_pharaoh(r) + "\n" for r in first.values()),
                                                   encoding="utf-8")
        out = tmp_path / f"{split}.json"
        report = add_language(qla=qla, lang="xx", translations=tmp_path / f"{split}.tsv",
                              alignments=tmp_path / f"{split}.pharaoh", out=out, show_progress=False,
                              language_files=[langs])
        assert report["rows_out"] == len(rows) and report["aligned_words"] > 0
        shutil.copy(out, qla)
    yield tmp_path / "world", langs
    languages.forget_added()


def test_a_language_file_in_a_temp_folder_trains_the_tiny_kd_schedule(xx_world, overrides_for, synthetic_config,
                                                                       tmp_path, caplog):
    root, langs = xx_world
    row = json.loads(layout.qla_path(root / "vqa", "train").read_text(encoding="utf-8"))[0]
    assert [e[0] for e in row["xx-en"]] == [c for c in row["ja"] if not c.isspace()]
    assert all(e[1] == english_words(row["en"])[int(e[2])] for e in row["xx-en"] if len(e) == 3)
    languages.forget_added()  # the run's config names the folder: nothing registered by hand
    out = tmp_path / "run"
    stages = ("stages=[{name: kd, dataset: vqa, lang: xx, epochs: 1, lr: 1.0e-3, trainable: all, objective: kd, "
              "select: last}, {name: mvqa_head, dataset: vqa, lang: xx, epochs: 1, lr: 1.0e-2, trainable: head, "
              "reset_head: true}]")
    cfg = load_config(synthetic_config("kd.yaml"), overrides_for(out, f"data.root={root}", f"data.languages=[{langs}]",
                                                                 stages, "evaluate=[val]"))
    with caplog.at_level(logging.WARNING, logger="cvil.languages"):
        metrics = run(cfg)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("train.kd.l3.codemix" in r for r in logged)  # code-mixing on the character alignments
    assert "val.accuracy" in metrics and 0 <= metrics["val.accuracy"] <= 100
    assert any("Japanese by character questions need them" in r.getMessage() for r in caplog.records)
