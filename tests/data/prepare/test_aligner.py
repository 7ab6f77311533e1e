"""`cvil align`: link extraction on hand-made similarity matrices, subword->word merging, scores, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from cvil.data.prepare.aligner import (
    alignment_scores,
    extract_links,
    reference_entries,
    word_links,
    word_similarity,
)

SIM = torch.tensor([
    [0.9, 0.1, 0.0],
    [0.8, 0.2, 0.1],  # prefers column 0, but column 0 prefers row 0
    [0.0, 0.3, 0.7],
])


def test_argmax_is_the_intersection_of_both_directions():
    links = extract_links(SIM, "argmax")
    assert links.nonzero().tolist() == [[0, 0], [2, 2]]


def test_softmax_threshold_on_both_directions():
    sim = torch.tensor([[10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    assert extract_links(sim, "softmax", threshold=1e-3).nonzero().tolist() == [[0, 0], [1, 1], [2, 0], [2, 1]]
    assert extract_links(sim, "softmax", threshold=0.4).nonzero().tolist() == [[0, 0], [1, 1]]
    with pytest.raises(ValueError, match="unknown extraction"):
        extract_links(sim, "itermax")
    assert extract_links(torch.zeros(0, 3)).shape == (0, 3)


def test_subword_links_merge_into_word_links_and_word_similarity():
    # target subwords: w0 = (0, 1), w1 = (2); English subwords: e0 = (0), e1 = (1, 2)
    src_of, tgt_of = [0, 0, 1], [0, 1, 1]
    links = torch.tensor([[False, True, False], [False, False, True], [True, False, False]])
    assert word_links(links, src_of, tgt_of) == {(0, 1), (1, 0)}
    ws = word_similarity(SIM, src_of, tgt_of, 3, 2)  # a third target word without subwords
    assert ws[:2].tolist() == [[pytest.approx(0.9), pytest.approx(0.2)], [0.0, pytest.approx(0.7)]]
    assert ws[2].tolist() == [float("-inf")] * 2


def test_reference_entries_pick_the_most_similar_english_word():
    ws = torch.tensor([[0.2, 0.9], [0.5, 0.1], [0.0, 0.0]])
    entries = reference_entries(["猫", "何", "は"], ["What", "cat"], {(0, 0), (0, 1), (1, 0)}, ws)
    assert entries == [["猫", "cat", 1], ["何", "What", 0], ["は"]]


def test_alignment_scores():
    s = alignment_scores([{(0, 0), (1, 1), (2, 0)}, set()], [[[0, 0], [1, 2]], [[0, 0]]])
    assert (s.precision, s.recall) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert s.aer == pytest.approx(1 - 2 / 6)
    assert alignment_scores([{(0, 0)}], [[(0, 0)]]).aer == 0.0


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, teacher_tok):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoder")
    cfg = BertConfig(vocab_size=len(teacher_tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(folder)
    teacher_tok.save_pretrained(folder)
    return folder


def test_cli_identical_sentences_align_perfectly(tmp_path, tiny_encoder, capsys):
    from cvil.cli import main

    questions = ["what color is the cat ?", "how many dogs are on the table ?", "is the man on a bus ?"]
    rows = [{"en": q, "hi": q, "o": "cat", "an": [], "s": [], "img_id": 1, "q_id": i,
             "gold-hi-en": [[k, k] for k in range(len(q.split()))]} for i, q in enumerate(questions)]
    src, out = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert main(["align", "--input", str(src), "--lang", "hi", "--model", str(tiny_encoder), "--out", str(out),
                 "--layer", "2", "--gold", "gold-hi-en"]) == 0
    printed = capsys.readouterr().out
    assert "precision 1.0000 recall 1.0000 AER 0.0000" in printed
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written[1]["hi-en"] == [[w, w, k] for k, w in enumerate(questions[1].split())]
    assert {k: v for k, v in written[1].items() if k != "hi-en"} == rows[1]  # every other field kept


def test_cli_softmax_and_bad_layer(tmp_path, tiny_encoder, capsys):
    from cvil.cli import main

    rows = [{"en": "the cat", "ja": "猫", "ja-en": [["猫"], ["は"]], "o": "", "an": [], "s": [], "img_id": 1,
             "q_id": 9}]
    src = tmp_path / "in.json"
    src.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.json"
    assert main(["align", "--input", str(src), "--lang", "ja", "--model", str(tiny_encoder), "--out", str(out),
                 "--method", "softmax", "--layer", "1"]) == 0
    entries = json.loads(out.read_text(encoding="utf-8"))[0]["ja-en"]
    assert [e[0] for e in entries] == ["猫", "は"]  # the row's own segmentation is kept
    assert all(len(e) == 1 or (e[1] == ["the", "cat"][e[2]]) for e in entries)
    capsys.readouterr()
    assert main(["align", "--input", str(src), "--lang", "ja", "--model", str(tiny_encoder), "--layer", "5"]) == 2
    assert "cvil align: --layer 5 is outside 0..2 for the 2-layer encoder" in capsys.readouterr().err


def test_cli_segments_a_row_without_alignments_like_add_language(tmp_path, tiny_encoder):
    """A Japanese row with no `ja-en` field gets fugashi words, the segmentation `cvil data add-language` writes
    (before: runs of one character class, so ですか where add-language has です / か)."""
    from cvil.cli import main
    from cvil.data.text import japanese_words

    question = "猫は何色ですか？"
    rows = [{"en": "What color is the cat?", "ja": question, "o": "", "an": [], "s": [], "img_id": 1, "q_id": 3}]
    src, out = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert main(["align", "--input", str(src), "--lang", "ja", "--model", str(tiny_encoder), "--out", str(out),
                 "--layer", "1"]) == 0
    words = [e[0] for e in json.loads(out.read_text(encoding="utf-8"))[0]["ja-en"]]
    assert words == list(japanese_words(question)) == ["猫", "は", "何色", "です", "か", "？"]
    assert "".join(words) == question  # what the code-mixer rebuilds the question from
