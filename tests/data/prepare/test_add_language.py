"""`cvil data add-language`: translations TSV + Pharaoh alignments -> `{lang}` and `{lang}-en` fields."""

from __future__ import annotations

import json

import pytest
from prepare_sources import ENGLISH_ROWS, PHARAOH, TRANSLATIONS_TSV

from cvil.cli import main
from cvil.data.errors import DataFormatError
from cvil.data.prepare.add_language import add_language, parse_pharaoh, write_aligner_input
from cvil.data.qla import read_qla
from cvil.data.text import japanese_words
from cvil.data.validate import _check_alignments, SplitReport


@pytest.fixture
def inputs(tmp_path):
    qla = tmp_path / "train2014_qla_mrcnn.json"
    qla.write_text(json.dumps(ENGLISH_ROWS), encoding="utf-8")
    tsv = tmp_path / "mt.tsv"
    tsv.write_text(TRANSLATIONS_TSV, encoding="utf-8")
    pharaoh = tmp_path / "align.en-ja"
    pharaoh.write_text(PHARAOH, encoding="utf-8")
    return {"qla": qla, "translations": tsv, "alignments": pharaoh}


def test_japanese_words_are_fugashi_unidic_lite_and_concatenate_back():
    sentence = "テーブルの上にある赤い車は何色ですか？"
    words = japanese_words(sentence)
    assert words == ("テーブル", "の", "上", "に", "ある", "赤い", "車", "は", "何色", "です", "か", "？")
    assert "".join(japanese_words("白い 犬 は どこ ？")) == "白い犬はどこ？"  # what the code-mixer rebuilds


def test_pharaoh_alignments_become_reference_entries(inputs, tmp_path):
    out = tmp_path / "ja.json"
    report = add_language(**inputs, lang="ja", out=out, allow_missing=True, show_progress=False)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["q_id"] for r in rows] == [10, 11, 12]  # "How many dogs?" has no translation: dropped, reported
    assert rows[0]["ja"] == rows[2]["ja"] == "車は何色ですか？"  # line 3 repeats line 1: counted, not a conflict
    assert rows[0]["ja-en"] == [["車", "car", 4], ["は"], ["何色", "What", 0], ["です"], ["か"], ["？", "?", 5]]
    assert rows[1]["ja-en"] == [["猫", "cat", 3], ["は"], ["どこ", "Where", 0], ["に"], ["い", "is", 1], ["ます"],
                                ["か"], ["？", "?", 4]]
    assert {k: rows[0][k] for k in ("en", "o", "an", "s", "img_id")} == {k: ENGLISH_ROWS[0][k] for k in
                                                                          ("en", "o", "an", "s", "img_id")}
    assert report["rows_dropped_missing_translation"] == 1 and report["duplicates"] == 1
    assert report["duplicate_translation_lines"] == [3]
    assert (report["target_words"], report["aligned_words"]) == (20, 10)
    # the cvil reader and the validator accept it: every en_idx indexes english_words(en) with the same word
    qla = read_qla(out)
    split = SplitReport("train")
    errors: list[str] = []
    _check_alignments(qla, split, errors)
    assert not errors and split.alignments["ja"].word_mismatches == 0 and split.alignments["ja"].words_aligned == 10


def test_tgt_en_order_reads_swapped_pairs(inputs, tmp_path):
    swapped = tmp_path / "align.ja-en"
    swapped.write_text("\n".join(" ".join("-".join(p.split("-")[::-1]) for p in line.split())
                                 for line in PHARAOH.splitlines()) + "\n", encoding="utf-8")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    add_language(**inputs, lang="ja", out=a, allow_missing=True, show_progress=False)
    add_language(**(inputs | {"alignments": swapped}), lang="ja", out=b, alignment_order="tgt-en",
                 allow_missing=True, show_progress=False)
    assert a.read_bytes() == b.read_bytes()


def test_aligner_input_lines_match_the_indices(inputs, tmp_path):
    path = tmp_path / "text.en-ja"
    assert write_aligner_input(translations=inputs["translations"], lang="ja", out=path) == 3
    assert path.read_text(encoding="utf-8").splitlines()[0] == "What color is the car ? ||| 車 は 何色 です か ？"


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_errors(inputs, tmp_path, capsys):
    argv = ["data", "add-language", "--qla", str(inputs["qla"]), "--lang", "ja", "--translations",
            str(inputs["translations"]), "--alignments", str(inputs["alignments"]), "--out", str(tmp_path / "o.json")]
    err = _error(capsys, argv)  # a question without a translation, no --allow-missing
    assert f"{inputs['translations']}: rows: expected a translation of every question" in err
    assert "1 missing, e.g. row 3: 'How many dogs?'" in err
    inputs["translations"].write_text(TRANSLATIONS_TSV + "How many dogs?\t犬は何匹？\textra\n", encoding="utf-8")
    assert (f"{inputs['translations']}: line 4: expected 2 tab-separated columns (english question \\t translation)"
            ", got 3 in" in _error(capsys, argv))
    inputs["translations"].write_text(TRANSLATIONS_TSV + "How many dogs?\t犬は何匹？\n", encoding="utf-8")
    assert _error(capsys, argv) == (f"cvil data: {inputs['alignments']}: lines: expected 4 lines, one per line of "
                                    "mt.tsv, got 3")
    inputs["alignments"].write_text(PHARAOH + "0-0 2-9\n", encoding="utf-8")
    err = _error(capsys, argv)
    assert err == (f"cvil data: {inputs['alignments']}: line 4: expected English index < 4 and target index < 5 "
                   "(en-tgt), got '2-9'")


def test_malformed_pharaoh_pair():
    with pytest.raises(DataFormatError, match=r"a.txt: line 7: expected Pharaoh pairs i-j of word indices, got '1:2'"):
        parse_pharaoh("0-0 1:2", file="a.txt", line_no=7, n_en=3, n_tgt=3)


def _tiny_marian(folder):
    """A random MarianMT model and a word-level tokenizer over the fixture's words (no download)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>", "what", "color", "is", "the", "car", "?", "where", "cat", "how", "many",
             "dogs", "車", "猫", "何色", "どこ", "は", "か"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    MarianMTModel(MarianConfig(vocab_size=len(words), d_model=16, encoder_layers=1, decoder_layers=1,
                               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                               decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                               decoder_start_token_id=0, forced_eos_token_id=1)).save_pretrained(folder)
    return folder


def _tiny_bert(folder, words):
    """A random BERT encoder with a vocab over the fixture's words and characters, for the embedding aligner."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_mt_model_writes_the_translations_tsv_then_the_aligner_aligns(inputs, tmp_path):
    mt = _tiny_marian(tmp_path / "marian")
    tsv_a, tsv_b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    base = ["data", "add-language", "--qla", str(inputs["qla"]), "--lang", "ja", "--mt-model", str(mt),
            "--batch-size", "2"]
    assert main([*base, "--translations", str(tsv_a), "--write-aligner-input", str(tmp_path / "in.txt")]) == 0
    lines = tsv_a.read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in lines] == ["What color is the car?", "Where is the cat?", "How many dogs?"]
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1] for line in lines)
    assert main([*base, "--translations", str(tsv_b), "--write-aligner-input", str(tmp_path / "in.txt")]) == 0
    assert tsv_a.read_bytes() == tsv_b.read_bytes()  # greedy decoding: the same TSV twice
    from cvil.data.label_maps import save_label_maps

    save_label_maps(tmp_path / "vqa", ["car", "cat", "what"])  # hindi-classes --mt-model translates the answers
    assert main(["data", "hindi-classes", "--ans2label", str(tmp_path / "vqa" / "trainval_ans2label.pkl"),
                 "--translations", str(tmp_path / "answers.tsv"), "--mt-model", str(mt), "--out",
                 str(tmp_path / "vqa")]) == 0
    assert [line.split("\t")[0] for line in (tmp_path / "answers.tsv").read_text().splitlines()] == ["car", "cat", "what"]

    chars = [c for line in TRANSLATIONS_TSV.splitlines() for c in line.split("\t")[1]]
    encoder = _tiny_bert(tmp_path / "bert", chars + ["what", "color", "is", "the", "car", "?", "where", "cat"])
    out = tmp_path / "ja.json"
    report = add_language(qla=inputs["qla"], lang="ja", translations=inputs["translations"], out=out,
                          aligner=str(encoder), aligner_options={"layer": 1}, allow_missing=True, show_progress=False)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [[e[0] for e in r["ja-en"]] for r in rows[:2]] == [list(japanese_words(r["ja"])) for r in rows[:2]]
    english = [["What", "color", "is", "the", "car", "?"], ["Where", "is", "the", "cat", "?"]]
    for row, en in zip(rows, english):
        assert all(len(e) == 1 or en[e[2]] == e[1] for e in row["ja-en"])
    assert report["alignment_source"] == f"aligner {encoder}" and report["aligned_words"] > 0


# ------------------------------------------------------------------------------------------------ any language file
ZH_TSV = "What color is the car?\t汽车是什么颜色的？\nWhere is the cat?\t猫在哪里？\nHow many dogs?\t有几只狗？\n"
# char words: [汽, 车, 是, 什, 么, 颜, 色, 的, ？] / [猫, 在, 哪, 里, ？] / [有, 几, 只, 狗, ？]
ZH_PHARAOH = "4-0 4-1 2-2 0-3 0-4 1-5 1-6 5-8\n3-0 1-1 0-2 0-3 4-4\n0-1 1-2 2-3 3-4\n"


def test_chinese_is_segmented_per_character_by_its_language_file(inputs, tmp_path):
    (tmp_path / "zh.tsv").write_text(ZH_TSV, encoding="utf-8")
    (tmp_path / "zh.pharaoh").write_text(ZH_PHARAOH, encoding="utf-8")
    out = tmp_path / "zh.json"
    assert main(["data", "add-language", "--qla", str(inputs["qla"]), "--lang", "zh", "--translations",
                 str(tmp_path / "zh.tsv"), "--alignments", str(tmp_path / "zh.pharaoh"), "--out", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert rows[0]["zh"] == "汽车是什么颜色的？"
    assert rows[0]["zh-en"] == [["汽", "car", 4], ["车", "car", 4], ["是", "is", 2], ["什", "What", 0],
                                ["么", "What", 0], ["颜", "color", 1], ["色", "color", 1], ["的"], ["？", "?", 5]]
    assert rows[3]["zh-en"][3] == ["狗", "dogs", 2]
    qla = read_qla(out)
    assert qla.rows[1].questions["zh"] == "猫在哪里？" and qla.rows[1].alignments["zh"][2] == ("哪", "Where", 0)


def test_a_new_language_file_names_the_fields_and_the_segmentation(inputs, tmp_path, capsys):
    langs = tmp_path / "langs"
    langs.mkdir()
    (langs / "pig.yaml").write_text("code: pig\nname: Pig Latin\nquestion_field: q_pig\nalignment_field: pig_align\n"
                                    "segmentation: whitespace\n", encoding="utf-8")
    (tmp_path / "pig.tsv").write_text("What color is the car?\tatwhay olorcay isway ethay arcay ?\n"
                                      "Where is the cat?\terewhay isway ethay atcay ?\n", encoding="utf-8")
    (tmp_path / "pig.pharaoh").write_text("0-0 1-1 2-2 3-3 4-4 5-5\n0-0 1-1 2-2 3-3 4-4\n", encoding="utf-8")
    argv = ["data", "add-language", "--qla", str(inputs["qla"]), "--lang", "pig", "--translations",
            str(tmp_path / "pig.tsv"), "--alignments", str(tmp_path / "pig.pharaoh"), "--allow-missing",
            "--out", str(tmp_path / "pig.json")]
    assert _error(capsys, argv).startswith("cvil data: unknown language 'pig' (known: en, hi, ja, zh;")
    from cvil import languages

    try:
        assert main(argv + ["--language-file", str(langs)]) == 0
        rows = json.loads((tmp_path / "pig.json").read_text(encoding="utf-8"))
        assert rows[1]["q_pig"] == "erewhay isway ethay atcay ?" and rows[1]["pig_align"][3] == ["atcay", "cat", 3]
        qla = read_qla(tmp_path / "pig.json")  # the reader maps the declared fields to the code
        assert qla.rows[1].questions["pig"] == "erewhay isway ethay atcay ?"
        assert qla.rows[1].alignments["pig"][0] == ("erewhay", "Where", 0)
    finally:
        languages.forget_added()
