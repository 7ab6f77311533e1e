"""The synthetic world generator (`cvil synth`): layout, formats, determinism, tokenisers, JVG coverage."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch

from cvil.data import layout
from cvil.data.synth.presets import PRESETS, get_preset
from cvil.data.synth.questions import normalize_answer, vqa_score
from cvil.data.synth.writer import TIMING_FILE, generate
from cvil.data.text import english_words

SPLITS = ("train", "val", "test")


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != TIMING_FILE}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate("tiny", 0, root)
    return root


def _load(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _rows(world: Path, folder: str, split: str) -> list[dict]:
    return _load(layout.qla_path(world / folder, split))


# ------------------------------------------------------------------------------------------------ determinism
def test_same_seed_is_byte_identical_and_other_seed_differs(world, tmp_path):
    generate("tiny", 0, tmp_path / "again")
    first, again = _hashes(world), _hashes(tmp_path / "again")
    assert len(first) > 50
    assert first == again
    generate("tiny", 1, tmp_path / "other")
    other = _hashes(tmp_path / "other")
    assert other.keys() != first.keys() or other != first
    assert json.loads((world / TIMING_FILE).read_text())["seconds_to_generate"] >= 0


def test_refuses_to_overwrite_without_force(world, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate("tiny", 0, tmp_path / "x", force=True)       # not a synthetic world: refuse even with force
    with pytest.raises(FileExistsError, match="--force"):
        generate("tiny", 0, world)


def test_cli_registers_synth_command(tmp_path, capsys):
    from cvil.cli import main

    assert main(["synth", "--preset", "tiny", "--seed", "2", "--out", str(tmp_path / "w")]) == 0
    assert "tiny" in capsys.readouterr().out
    assert main(["synth", "--preset", "tiny", "--seed", "2", "--out", str(tmp_path / "w"), "--force"]) == 0
    manifest = _load(tmp_path / "w" / "world.json")
    assert manifest["preset"] == "tiny" and manifest["seed"] == 2


def test_unknown_preset_suggests_a_name():
    with pytest.raises(ValueError, match="did you mean 'small'"):
        get_preset("smal")


# ------------------------------------------------------------------------------------------------ VQA files
def test_layout_and_manifest(world):
    manifest = _load(world / "world.json")
    assert manifest["preset"] == "tiny" and manifest["feature_dim"] == PRESETS["tiny"].feat_dim
    for folder in ("vqa", "vg"):
        for split in SPLITS:
            assert layout.qla_path(world / folder, split).is_file()
            assert any(layout.feature_dir(world / folder, split).glob("*.pt"))
        assert (world / folder / layout.ANS2LABEL).is_file() and (world / folder / layout.LABEL2ANS).is_file()
    assert layout.unknown_path(world / "vg").is_file()
    for name in ("hi_ans2label.json", "image_labels.tsv", "v2_OpenEnded_mscoco_val2014_questions.json",
                 "v2_mscoco_val2014_annotations.json", "v2_OpenEnded_mscoco_test-dev2015_questions.json",
                 "v2_mscoco_test-dev2015_annotations.json"):
        assert (world / "vqa" / name).is_file(), name
    assert sum(manifest["vqa"]["splits"][s]["questions"] for s in SPLITS) > 200


def test_label_maps_are_plain_builtins(world):
    for folder in ("vqa", "vg"):
        ans2label = pickle.loads((world / folder / layout.ANS2LABEL).read_bytes())
        label2ans = pickle.loads((world / folder / layout.LABEL2ANS).read_bytes())
        assert type(ans2label) is dict and type(label2ans) is list
        assert all(type(k) is str and type(v) is int for k, v in ans2label.items())
        assert sorted(ans2label.values()) == list(range(len(label2ans)))
        assert all(label2ans[i] == a for a, i in ans2label.items())


def test_vqa_rows(world):
    n_labels = len(pickle.loads((world / "vqa" / layout.LABEL2ANS).read_bytes()))
    q_ids, qtypes, atypes = set(), Counter(), Counter()
    scores = set()
    for split in SPLITS:
        for row in _rows(world, "vqa", split):
            for key, typ in (("en", str), ("ja", str), ("hi", str), ("o", str), ("an", list), ("s", list),
                             ("img_id", int), ("q_id", int), ("answer_type", str), ("question_type", str)):
                assert isinstance(row[key], typ), (key, row)
            assert len(row["an"]) == len(row["s"])
            assert all(0 <= a < n_labels for a in row["an"])
            scores.update(row["s"])
            assert row["q_id"] not in q_ids
            q_ids.add(row["q_id"])
            qtypes[row["question_type"]] += 1
            atypes[row["answer_type"]] += 1
            tags = row["o"].split(";")
            assert not {"red", "blue", "left", "right", "top"} & set(tags)     # colours/positions only in features
    assert scores <= {0.3, 0.6, 0.9, 1.0} and {0.3, 1.0} <= scores
    for split in SPLITS:  # real Oscar test rows have `o: ''`: every split has some
        rows = _rows(world, "vqa", split)
        assert any(r["o"] == "" for r in rows) and any(r["o"] for r in rows), split
    assert set(atypes) <= {"yes/no", "number", "other"} and len(atypes) == 3
    assert {"what color is the", "where is the", "is there a", "how many"} <= set(qtypes)


def test_alignments_index_english_words(world):
    stats = Counter()
    for split in SPLITS:
        for row in _rows(world, "vqa", split):
            en = english_words(row["en"])
            for lang in ("ja", "hi"):
                entries = row[f"{lang}-en"]
                words = [e[0] for e in entries]
                joined = "".join(words) if lang == "ja" else " ".join(words).replace(" ?", "?")
                assert joined == row[lang]                                   # one entry per target word
                targets = Counter()
                for e in entries:
                    assert len(e) in (1, 3), e
                    if len(e) == 1:
                        stats["unaligned"] += 1
                        continue
                    stats["string_idx"] += isinstance(e[2], str)
                    idx = int(e[2])
                    assert 0 <= idx < len(en) and en[idx] == e[1]
                    targets[idx] += 1
                stats["duplicate_target"] += any(n > 1 for n in targets.values())
                for t, e in row[f"gold-{lang}-en"]:
                    assert 0 <= t < len(words) and 0 <= e < len(en)
                gold = {t: e for t, e in row[f"gold-{lang}-en"]}
                for i, e in enumerate(entries):
                    stats["agree"] += len(e) == 3 and gold.get(i) == int(e[2])
                    stats["aligned_gold"] += i in gold
    assert stats["unaligned"] > 0 and stats["duplicate_target"] > 0 and stats["string_idx"] > 0
    assert 0.85 < stats["agree"] / stats["aligned_gold"] < 1.0        # noisy, but mostly the gold alignment


def test_translations_use_real_words():
    from cvil.data.synth.lexicon import templates_of
    from cvil.data.synth.questions import Question
    from cvil.data.synth.translate import render

    q = Question("color", templates_of("color")[0], 0, None, None, "red")
    assert q.en == "what color is the cat?"
    assert render(q, "ja")[0] == "猫は何色ですか？"
    assert render(q, "hi")[0] == "बिल्ली किस रंग की है?"
    dog = Question("position", templates_of("position")[0], 1, None, None, "left")
    assert render(dog, "ja")[0] == "犬はどこにいますか？" and render(dog, "hi")[0] == "कुत्ता कहाँ है?"


def test_features(world):
    dim = PRESETS["tiny"].feat_dim
    sizes = []
    for split in SPLITS:
        rows = _rows(world, "vqa", split)
        for img_id in sorted({r["img_id"] for r in rows}):
            t = torch.load(layout.feature_dir(world / "vqa", split) / f"{img_id}.pt", weights_only=True)
            assert t.dtype == torch.float32 and t.ndim == 2 and t.shape[1] == dim
            assert torch.isfinite(t).all()
            box = t[:, -6:]
            assert (box >= 0).all() and (box <= 1).all()
            assert torch.allclose(box[:, 4], box[:, 2] - box[:, 0], atol=1e-5)
            sizes.append(t.shape[0])
    assert max(sizes) > 50 and min(sizes) < 50                          # truncation to 50 is exercised


def test_official_vqa_files(world):
    for sub, split in (("val2014", "val"), ("test-dev2015", "test")):
        qs = _load(world / "vqa" / f"v2_OpenEnded_mscoco_{sub}_questions.json")["questions"]
        anns = _load(world / "vqa" / f"v2_mscoco_{sub}_annotations.json")["annotations"]
        rows = _rows(world, "vqa", split)
        assert [q["question_id"] for q in qs] == [r["q_id"] for r in rows] == [a["question_id"] for a in anns]
        raw = set()
        for a in anns:
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert a["answer_type"] in ("yes/no", "number", "other")
            raw.update(x["answer"] for x in a["answers"])
        assert any(normalize_answer(x) != x for x in raw)                  # some need the official normalisation


def test_image_labels_tsv(world):
    lines = (world / "vqa" / "image_labels.tsv").read_text(encoding="utf-8").splitlines()
    ids = set()
    for line in lines:
        img_id, payload = line.split("\t")
        objs = json.loads(payload)["objects"]
        assert all(set(o) == {"class", "rect", "conf"} and len(o["rect"]) == 4 for o in objs)
        ids.add(int(img_id))
    for split in SPLITS:
        assert {r["img_id"] for r in _rows(world, "vqa", split)} <= ids


def test_hindi_class_set_merges_synonyms(world):
    hi = _load(world / "vqa" / "hi_ans2label.json")
    ans2label = pickle.loads((world / "vqa" / layout.ANS2LABEL).read_bytes())
    assert set(hi["en_to_hi"]) == set(ans2label)
    assert set(hi["en_to_hi"].values()) == set(hi["labels"]) and len(set(hi["labels"])) == len(hi["labels"])
    assert len(hi["labels"]) < len(ans2label)
    from cvil.data.synth.lexicon import hindi_answer
    assert hindi_answer("up") == hindi_answer("above") == hindi_answer("top") == "ऊपर"


def test_vqa_score_rule():
    assert [vqa_score(n) for n in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]
    assert normalize_answer("Red.") == "red" and normalize_answer("two") == "2" and normalize_answer("a cat") == "cat"


# ------------------------------------------------------------------------------------------------ JVG
def test_jvg_set(world):
    vg = world / "vg"
    n_labels = len(pickle.loads((vg / layout.LABEL2ANS).read_bytes()))
    real_fields = ["ja", "o", "an", "s", "img_id", "q_id"]  # reference §4.6: no answer strings in these splits
    for split in SPLITS:
        rows = _rows(world, "vg", split)
        assert all(list(r) == real_fields for r in rows), split
        covered = [r for r in rows if r["an"]]
        if split != "test":
            assert 0 < len(covered) < len(rows)                            # coverage well below 100 %
        assert all(r["s"] == [1.0] and len(r["an"]) == 1 and r["an"][0] < n_labels for r in covered)
        assert any(r["o"] == "" for r in rows) and any(r["o"] for r in rows), split
    unknown = _load(layout.unknown_path(vg))
    assert all(list(r) == real_fields + ["answer"] for r in unknown)
    test = _rows(world, "vg", "test")
    assert [r["q_id"] for r in test] == [r["q_id"] for r in unknown if r["an"]]
    assert len(test) < len(unknown) and all(r["answer"] for r in unknown)
    train = _rows(world, "vg", "train")
    assert all(len([r for r in train if r["img_id"] == i]) == 8 for i in {r["img_id"] for r in train})
    text = " ".join(r["ja"] for s in SPLITS for r in _rows(world, "vg", s))
    for word in ("何", "どこ", "どんな", "どれくらい", "いくつ"):
        assert word in text, word


@pytest.mark.parametrize("name, translated", [("small", (5_500, 6_500)), ("small-v2", (11_000, 13_000))])
def test_small_presets_are_learnable_by_design(name, translated):
    p = PRESETS[name]
    assert p.regions_small[1] <= 12 and p.regions_large[1] <= 12 and p.max_tags <= 12
    assert p.n_classes == 16 and p.n_colours == 8
    for mix in (p.vqa_mix, p.teacher_mix):  # the teacher's corpus too: colour + position dominate (DESIGN.md §3)
        assert (mix["color"] + mix["position"]) / sum(mix.values()) >= 0.8
    assert translated[0] <= p.vqa_images["train"] * p.vqa_q_per_image <= translated[1]
    assert 1_800 <= p.jvg_images["train"] * p.jvg_q_per_image <= 2_200


# ------------------------------------------------------------------------------------------------ tokenisers
def test_tokenizers_load_and_behave(world):
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(world / "tokenizers" / "teacher")
    student = AutoTokenizer.from_pretrained(world / "tokenizers" / "student")
    for tok in (teacher, student):
        assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        assert tok.pad_token_id == 0
    assert teacher.tokenize("What COLOR is the cat?") == ["what", "color", "is", "the", "cat", "?"]
    pieces = student.tokenize("猫は何色ですか？")
    assert "何" in pieces and "色" in pieces                               # kanji split into single characters
    assert not any("で" in p for p in pieces) and any("て" in p for p in pieces)   # dakuten stripped (です -> てす)
    enc = student("猫は何色ですか？", "cat dog")
    assert enc["input_ids"][0] == student.cls_token_id and 1 in enc["token_type_ids"]
    tags = _load(world / "world.json")["classes"]
    same = [w for w in tags if teacher.tokenize(w) == student.tokenize(w)]
    assert same and len(same) < len(tags)                                 # some tag words split differently


def test_probe_runs_on_the_tiny_world(world, tmp_path):
    from cvil.data.synth.probe import main

    assert main([str(world), "--epochs", "1", "--json", str(tmp_path / "probe.json")]) == 0
    res = _load(tmp_path / "probe.json")
    assert {"image", "text-only"} <= set(res["vqa"]) and {"image", "text-only", "image+aug"} <= set(res["vg"])
    assert 0 < res["vg"]["coverage"] < 1
