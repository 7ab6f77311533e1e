"""Hand-written inputs in the SOURCE formats the preparation commands read (not made by the synthetic generator):
Visual Genome `question_answers.json` with Japanese QAs, VinVL `image_labels.tsv`, UC2-style split files, a VinVL
feature TSV, a translations TSV and Pharaoh alignment lines."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

# 10 images, 3 questions each; answers include variants that must stay distinct classes (白 / 白色 / 白です。).
_QAS = {
    1: [("車は何色ですか？", "白"), ("空は何色ですか？", "青"), ("何台の車がありますか？", "2台")],
    2: [("猫はどこにいますか？", "木の上"), ("猫は何色ですか？", "白色"), ("天気はどうですか？", "晴れ")],
    3: [("車は何色ですか？", "赤"), ("人は何をしていますか？", "歩いている"), ("空は何色ですか？", "青")],
    4: [("犬はどこにいますか？", "テーブルの上"), ("犬は何色ですか？", "白"), ("空は何色ですか？", "青")],
    5: [("壁は何色ですか？", "白です。"), ("何人いますか？", "2人"), ("車は何色ですか？", "赤")],
    6: [("バスは何色ですか？", "赤"), ("道はどこですか？", "左"), ("空は何色ですか？", "青")],
    7: [("車は何色ですか？", "白"), ("猫はどこにいますか？", "木の上"), ("何台の車がありますか？", "2台")],
    8: [("壁は何色ですか？", "白"), ("犬は何色ですか？", "黒"), ("空は何色ですか？", "灰色")],
    9: [("車は何色ですか？", "赤"), ("人はどこにいますか？", "道の上"), ("空は何色ですか？", "青")],
    10: [("猫は何色ですか？", "白"), ("犬はどこにいますか？", "家の中"), ("天気はどうですか？", "雨")],
}
SPLITS = {"train": [1, 2, 3, 4, 5, 6], "val": [7, 8], "test": [9, 10]}
FEATURE_DIM = 2054


def question_answers() -> list[dict]:
    """The VG layout: images with `qas`; qa_id = 100 * image + k (unique)."""
    return [{"id": img, "qas": [{"qa_id": 100 * img + k, "image_id": img, "question": q, "answer": a,
                                  "q_objects": [], "a_objects": []} for k, (q, a) in enumerate(qas)]}
            for img, qas in _QAS.items()]


def image_labels_tsv() -> str:
    """VinVL predictions for images 1..9 (image 10 has none): two objects each, one of them low-confidence."""
    lines = []
    for img in range(1, 10):
        objects = [{"class": "car", "rect": [0, 0, 10, 10], "conf": 0.9},
                   {"class": "tree" if img % 2 else "dog", "rect": [5, 5, 20, 30], "conf": 0.3}]
        lines.append(f"{img}\t{json.dumps({'objects': objects})}")
    return "\n".join(lines) + "\n"


def write_jvg_sources(folder: Path, *, splits: bool = True) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"qa": folder / "question_answers.json", "tags": folder / "image_labels.tsv"}
    paths["qa"].write_text(json.dumps(question_answers(), ensure_ascii=False), encoding="utf-8")
    paths["tags"].write_text(image_labels_tsv(), encoding="utf-8")
    if splits:
        paths["splits"] = folder / "splits"
        paths["splits"].mkdir(exist_ok=True)
        for name, ids in SPLITS.items():
            (paths["splits"] / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return paths


def write_feature_tsv(path: Path, img_ids, *, dim: int = FEATURE_DIM, seed: int = 0) -> Path:
    """A VinVL feature TSV (`img_id \\t num_boxes \\t base64(float32)`), last 6 dims box geometry in [0, 1]."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="ascii") as handle:
        for img in img_ids:
            n = 5 + img % 4
            feats = rng.standard_normal((n, dim)).astype(np.float32)
            feats[:, -6:] = rng.uniform(0, 1, (n, 6))
            handle.write(f"{img}\t{n}\t{base64.b64encode(feats.tobytes()).decode()}\n")
    return path


# English questions, their Japanese translations (line 3 repeats line 1, same translation: a counted duplicate; one
# with another translation is a conflict, tests/faults/test_data_faults.py; "How many dogs?" has none).
ENGLISH_ROWS = [
    {"en": "What color is the car?", "o": "car", "an": [0], "s": [1.0], "img_id": 1, "q_id": 10},
    {"en": "Where is the cat?", "o": "cat;tree", "an": [1], "s": [1.0], "img_id": 1, "q_id": 11},
    {"en": "What color is the car?", "o": "car", "an": [2], "s": [0.6], "img_id": 2, "q_id": 12},
    {"en": "How many dogs?", "o": "dog", "an": [3], "s": [1.0], "img_id": 2, "q_id": 13},
]
TRANSLATIONS_TSV = ("What color is the car?\t車は何色ですか？\n"
                    "Where is the cat?\t猫はどこにいますか？\n"
                    "What color is the car?\t車は何色ですか？\n")
# english_words: [What, color, is, the, car, ?] / [Where, is, the, cat, ?]
# japanese_words: [車, は, 何色, です, か, ？] / [猫, は, どこ, に, い, ます, か, ？]
PHARAOH = "4-0 0-2 1-2 5-5\n3-0 0-2 1-4 4-7\n0-0\n"
