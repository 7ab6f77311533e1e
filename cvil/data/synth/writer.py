"""Generate a whole synthetic world and write it in the real dataset layout (docs/architecture.md §1).

Determinism: every random draw comes from `numpy.random.default_rng([seed, stream, ...])` streams, iteration is over
sorted ids, JSON keeps a fixed field order, pickles use a fixed protocol, and nothing time-dependent enters the
hashed files. The only non-deterministic output, the generation time, goes to `world_timing.json`.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from cvil.data import layout
from cvil.errors import OutputExistsError
from cvil.data.synth import questions as Q
from cvil.data.synth.jvg import make_jvg_questions, top_k_vocabulary
from cvil.data.synth.lexicon import CLASSES, COLOURS, HI, JA, hindi_answer
from cvil.data.synth.manifest import GENERATOR_VERSION
from cvil.data.synth.presets import get_preset
from cvil.data.synth.scenes import Prototypes, make_scene, scene_features, zipf_weights
from cvil.data.synth.tokenizers import build_tokenizers
from cvil.data.synth.translate import translate_extra, translate_row
from cvil.languages import get_language

PICKLE_PROTOCOL = 4
OFFICIAL_SUBTYPE = {"val": "val2014", "test": "test-dev2015"}
WORLD_FILE = "world.json"
TIMING_FILE = "world_timing.json"
PRETRAIN = "pretrain"  # the teacher's English-only corpus (world v3), a VQA-format dataset folder of its own
OWNED_ENTRIES = (WORLD_FILE, TIMING_FILE, "vqa", "vg", "tokenizers", PRETRAIN)

# stream ids of the random generators (never reorder: changing one would change every world)
S_PROTO, S_IDS, S_SCENE, S_FEAT, S_QUESTION, S_ANNOT, S_TRANSLATE, S_JVG_W, S_JVG = range(1, 10)
S_TRANSLATE_EXTRA = 10  # a language of `Preset.languages`: its own stream per (language, split), drawn after the rest
S_PRETRAIN = 11  # the teacher's corpus: its ids, scenes, features, questions, annotators (after every other stream)
SPLIT_NO = {"train": 0, "val": 1, "test": 2}
EMPTY_TAGS_EVERY = 16  # every 16th image of a split (the first included) has `o: ''`, as real Oscar test rows


def _empty_tag_images(img_ids: list[int]) -> set[int]:
    """Images whose rows carry no detector tags (`o: ''`), in every split; no random draw, so the rest is unchanged."""
    return set(img_ids[::EMPTY_TAGS_EVERY])


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *keys])


def _language_key(code: str) -> int:
    """A stable integer of a language code for its random stream (crc32: the same on every platform and run)."""
    return zlib.crc32(code.encode("utf-8"))


def _write_json(path: Path, obj, *, indent=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def _write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=PICKLE_PROTOCOL)


def _image_ids(seed: int, stream: int, counts: dict, low: int, high: int) -> dict[str, list[int]]:
    rng = _rng(seed, S_IDS, stream)
    total = sum(counts[s] for s in layout.SPLITS)
    ids = rng.choice(np.arange(low, high), size=total, replace=False)
    out, start = {}, 0
    for split in layout.SPLITS:
        out[split] = sorted(int(i) for i in ids[start:start + counts[split]])
        start += counts[split]
    return out


def _save_features(folder: Path, img_id: int, feats: np.ndarray) -> None:
    torch.save(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)), folder / f"{img_id}.pt")


def _scenes(folder: Path, split: str, img_ids: list[int], r_scene, r_feat, preset, class_w, colour_w, protos):
    """Each image's scene, in order, once its features are written to `folder`'s feature folder of `split` (the
    scene's draws, then its features', so every world keeps its bytes whatever else its loop draws)."""
    fdir = layout.feature_dir(folder, split)
    fdir.mkdir(parents=True, exist_ok=True)
    for img_id in img_ids:
        scene = make_scene(r_scene, img_id, preset, class_w, colour_w)
        _save_features(fdir, img_id, scene_features(r_feat, scene, protos, preset))
        yield img_id, scene


# ------------------------------------------------------------------------------------------------------ VQA
def _vqa(root: Path, preset, seed: int, protos: Prototypes) -> tuple[dict, dict]:
    vqa = root / "vqa"
    ids = _image_ids(seed, 0, preset.vqa_images, 100_000, 600_000)
    class_w = zipf_weights(preset.n_classes, 0.4)
    colour_w = zipf_weights(preset.n_colours, 0.2)
    scenes, items = {}, {}
    for split in layout.SPLITS:
        k = SPLIT_NO[split]
        r_scene, r_feat, r_q = _rng(seed, S_SCENE, 0, k), _rng(seed, S_FEAT, 0, k), _rng(seed, S_QUESTION, 0, k)
        r_ann, r_tr = _rng(seed, S_ANNOT, 0, k), _rng(seed, S_TRANSLATE, 0, k)
        scenes[split], items[split] = [], []
        for img_id, scene in _scenes(vqa, split, ids[split], r_scene, r_feat, preset, class_w, colour_w, protos):
            scenes[split].append(scene)
            for j, q in enumerate(Q.make_questions(r_q, scene, preset, preset.vqa_q_per_image)):
                raw = Q.annotate(r_ann, q, preset)
                items[split].append((scene, img_id * 1000 + j, q, raw, translate_row(r_tr, q, preset)))
        for code in preset.languages:  # after every other draw: the ja/hi fields are those of a world without it
            r_extra = _rng(seed, S_TRANSLATE_EXTRA, _language_key(code), k)
            for *_, q, _, tr in items[split]:
                tr.setdefault("extra", {}).update(translate_extra(r_extra, q, preset, code))

    # label set: normalised answers given >= answer_min_count times by train+val annotators (as VQA's 3,129)
    counts = Counter(Q.normalize_answer(a) for s in ("train", "val") for *_, raw, _ in items[s] for a in raw)
    answers = sorted((a for a, n in counts.items() if n >= preset.answer_min_count), key=lambda a: (-counts[a], a))
    ans2label = {a: i for i, a in enumerate(answers)}
    _write_pickle(vqa / layout.ANS2LABEL, ans2label)
    _write_pickle(vqa / layout.LABEL2ANS, list(answers))

    en_to_hi = {a: hindi_answer(a) for a in answers}
    hi_labels = list(dict.fromkeys(en_to_hi[a] for a in answers))
    _write_json(vqa / layout.HINDI_CLASSES, {"labels": hi_labels, "en_to_hi": en_to_hi}, indent=1)

    counts_out = {}
    for split in layout.SPLITS:
        rows, official_q, official_a = [], [], []
        untagged = _empty_tag_images(ids[split])
        for scene, q_id, q, raw, tr in items[split]:
            norm = [Q.normalize_answer(a) for a in raw]
            scores = Q.soft_scores(norm)
            labelled = sorted(((ans2label[a], s) for a, s in scores.items() if a in ans2label),
                              key=lambda x: (-x[1], x[0]))
            rows.append({
                "en": q.en, JA: tr[JA], HI: tr[HI], "o": "" if scene.img_id in untagged else scene.tags,
                "an": [a for a, _ in labelled], "s": [s for _, s in labelled],
                "img_id": scene.img_id, "q_id": q_id,
                "answer_type": q.template.answer_type, "question_type": q.template.question_type,
                f"{JA}-en": tr[f"{JA}-en"], f"{HI}-en": tr[f"{HI}-en"],
                f"gold-{JA}-en": tr[f"gold-{JA}-en"], f"gold-{HI}-en": tr[f"gold-{HI}-en"],
                **tr.get("extra", {}),  # the fields of `preset.languages`, last
            })
            official_q.append({"image_id": scene.img_id, "question": q.en, "question_id": q_id})
            official_a.append({
                "question_id": q_id, "image_id": scene.img_id, "question_type": q.template.question_type,
                "answer_type": q.template.answer_type, "multiple_choice_answer": Q.majority(norm),
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(raw)],
            })
        _write_json(layout.qla_path(vqa, split), rows)
        if split in OFFICIAL_SUBTYPE:
            sub = OFFICIAL_SUBTYPE[split]
            _write_json(vqa / f"v2_OpenEnded_mscoco_{sub}_questions.json",
                        {"task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": sub,
                         "questions": official_q})
            _write_json(vqa / f"v2_mscoco_{sub}_annotations.json",
                        {"data_type": "mscoco", "data_subtype": sub, "annotations": official_a})
        counts_out[split] = {"images": len(scenes[split]), "questions": len(rows),
                             "empty_an": sum(1 for r in rows if not r["an"]),
                             "max_regions": max(len(s.regions) for s in scenes[split]),
                             "images_over_50_regions": sum(1 for s in scenes[split] if len(s.regions) > 50),
                             "types": dict(sorted(Counter(q.qtype for *_, q, _, _ in items[split]).items()))}

    with open(vqa / layout.IMAGE_LABELS, "w", encoding="utf-8") as f:
        for split in layout.SPLITS:
            for s in scenes[split]:
                objs = [{"class": CLASSES[d.cls].en, "rect": list(d.rect), "conf": d.conf} for d in s.detections]
                f.write(f"{s.img_id}\t{json.dumps({'objects': objs}, ensure_ascii=False)}\n")

    texts = {"en": [], JA: [], HI: [], "tags": []}
    for *_, q, _, tr in items["train"]:
        texts["en"].append(q.en)
        texts[JA].append(tr[JA])
        texts[HI].append(tr[HI])
    texts["extra"] = [tr["extra"][get_language(code).question_field] for code in preset.languages
                      for *_, tr in items["train"]]
    texts["tags"] = [s.tags.replace(";", " ") for s in scenes["train"]]
    texts["answers_en"] = answers
    texts["answers_hi"] = hi_labels
    summary = {"splits": counts_out, "num_labels": len(answers), "num_hindi_labels": len(hi_labels)}
    return summary, texts


# ------------------------------------------------------------------------------------------------------ JVG
def _jvg(root: Path, preset, seed: int, protos: Prototypes) -> tuple[dict, dict]:
    vg = root / "vg"
    ids = _image_ids(seed, 1, preset.jvg_images, 1_000_000, 1_400_000)
    wr = _rng(seed, S_JVG_W)
    class_w = zipf_weights(preset.n_classes, 1.0, wr)           # a different, steeper class distribution
    colour_w = zipf_weights(preset.n_colours, 0.7, wr)
    items = {}
    for split in layout.SPLITS:
        k = SPLIT_NO[split]
        r_scene, r_feat, r_q = _rng(seed, S_SCENE, 1, k), _rng(seed, S_FEAT, 1, k), _rng(seed, S_JVG, k)
        items[split] = []
        for img_id, scene in _scenes(vg, split, ids[split], r_scene, r_feat, preset, class_w, colour_w, protos):
            for j, q in enumerate(make_jvg_questions(r_q, scene, preset)):
                items[split].append((scene, img_id * 1000 + j, q))

    vocab = top_k_vocabulary([q.answer for *_, q in items["train"]], preset.jvg_coverage)
    ans2label = {a: i for i, a in enumerate(vocab)}
    _write_pickle(vg / layout.ANS2LABEL, ans2label)
    _write_pickle(vg / layout.LABEL2ANS, list(vocab))

    counts_out = {}
    for split in layout.SPLITS:
        # exactly the fields of real JVG rows (reference §4.6): answer strings only in the test `.unknown` file
        rows, answers = [], []
        untagged = _empty_tag_images(ids[split])
        for scene, q_id, q in items[split]:
            label = ans2label.get(q.answer)
            rows.append({JA: q.ja, "o": "" if scene.img_id in untagged else scene.tags,
                         "an": [] if label is None else [label], "s": [] if label is None else [1.0],
                         "img_id": scene.img_id, "q_id": q_id})
            answers.append(q.answer)
        if split == "test":
            _write_json(layout.unknown_path(vg), [r | {"answer": a} for r, a in zip(rows, answers)])
            rows_written = [r for r in rows if r["an"]]
        else:
            rows_written = rows
        _write_json(layout.qla_path(vg, split), rows_written)
        covered = sum(1 for r in rows if r["an"])
        counts_out[split] = {"images": len(ids[split]), "questions": len(rows), "covered": covered,
                             "coverage": round(covered / max(len(rows), 1), 4),
                             "types": dict(sorted(Counter(q.qtype for *_, q in items[split]).items()))}
    texts = {JA: [q.ja for *_, q in items["train"]], "answers_ja": sorted(set(q.answer for *_, q in items["train"])),
             "tags": sorted(set(s.tags.replace(";", " ") for s, *_ in items["train"]))}
    return {"splits": counts_out, "num_labels": len(vocab)}, texts


# ------------------------------------------------------------------------------------------------------ teacher
def _pretrain(root: Path, preset, seed: int, protos: Prototypes) -> tuple[dict, dict]:
    """The teacher's English-only pre-training corpus: VQA-format rows (English fields only) over scenes of its own,
    with the question mix `preset.teacher_mix` (sizes, what-is-where, counts besides colour and position) and the
    same annotators; its own label maps. Every draw comes from `S_PRETRAIN` streams, so the translated and JVG-like
    files are byte-identical whatever its size."""
    folder = root / PRETRAIN
    counts = {split: preset.teacher_images.get(split, 0) for split in layout.SPLITS}
    ids = _image_ids(seed, S_PRETRAIN, counts, 2_000_000, 3_000_000)
    class_w = zipf_weights(preset.n_classes, 0.4)
    colour_w = zipf_weights(preset.n_colours, 0.2)
    items, tags = {}, []
    for split in (s for s in layout.SPLITS if counts[s]):
        k = SPLIT_NO[split]
        r_scene, r_feat = _rng(seed, S_PRETRAIN, S_SCENE, k), _rng(seed, S_PRETRAIN, S_FEAT, k)
        r_q, r_ann = _rng(seed, S_PRETRAIN, S_QUESTION, k), _rng(seed, S_PRETRAIN, S_ANNOT, k)
        items[split] = []
        for img_id, scene in _scenes(folder, split, ids[split], r_scene, r_feat, preset, class_w, colour_w, protos):
            if split == "train":
                tags.append(scene.tags.replace(";", " "))
            for j, q in enumerate(Q.make_questions(r_q, scene, preset, preset.teacher_q_per_image, preset.teacher_mix)):
                items[split].append((scene, img_id * 1000 + j, q, Q.annotate(r_ann, q, preset)))
    counts_a = Counter(Q.normalize_answer(a) for split in items for *_, raw in items[split] for a in raw)
    answers = sorted((a for a, n in counts_a.items() if n >= preset.answer_min_count), key=lambda a: (-counts_a[a], a))
    ans2label = {a: i for i, a in enumerate(answers)}
    _write_pickle(folder / layout.ANS2LABEL, ans2label)
    _write_pickle(folder / layout.LABEL2ANS, list(answers))
    summary = {}
    for split, split_items in items.items():
        rows = []
        untagged = _empty_tag_images(ids[split])
        for scene, q_id, q, raw in split_items:
            scores = Q.soft_scores([Q.normalize_answer(a) for a in raw])
            labelled = sorted(((ans2label[a], sc) for a, sc in scores.items() if a in ans2label),
                              key=lambda x: (-x[1], x[0]))
            rows.append({"en": q.en, "o": "" if scene.img_id in untagged else scene.tags,
                         "an": [a for a, _ in labelled], "s": [sc for _, sc in labelled],
                         "img_id": scene.img_id, "q_id": q_id,
                         "answer_type": q.template.answer_type, "question_type": q.template.question_type})
        _write_json(layout.qla_path(folder, split), rows)
        summary[split] = {"images": len(ids[split]), "questions": len(rows),
                          "types": dict(sorted(Counter(q.qtype for *_, q, _ in split_items).items()))}
    texts = {"en": [q.en for *_, q, _ in items.get("train", [])], "tags": tags, "answers": answers}
    return {"splits": summary, "num_labels": len(answers)}, texts


# ------------------------------------------------------------------------------------------------------ world
def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def generate(preset_name: str, seed: int, out: str | Path, *, force: bool = False) -> dict:
    """Generate the world `preset_name` with `seed` into `out`; returns the manifest written to world.json."""
    preset = get_preset(preset_name)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(f"{out} is not empty; pass --force to replace the synthetic world in it")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWNED_ENTRIES)
        if foreign and not (out / WORLD_FILE).exists():
            raise OutputExistsError(f"{out} holds files that are not a synthetic world ({', '.join(foreign[:5])}); "
                                  "refusing to overwrite")
    t0 = time.perf_counter()
    tmp = out.parent / f".{out.name}.synth-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        protos = Prototypes(_rng(seed, S_PROTO), preset.n_classes, preset.n_colours, preset.feat_dim - 6)
        vqa_summary, vqa_texts = _vqa(tmp, preset, seed, protos)
        jvg_summary, jvg_texts = _jvg(tmp, preset, seed, protos)
        english = vqa_texts["en"] + vqa_texts["tags"] + vqa_texts["answers_en"]
        pretrain_summary = None
        if preset.teacher_images:  # the teacher's words only: the student's tokenizer never sees this corpus
            pretrain_summary, pretrain_texts = _pretrain(tmp, preset, seed, protos)
            english += pretrain_texts["en"] + pretrain_texts["tags"] + pretrain_texts["answers"]
        # the student sees less English than the teacher, so some English words end up split differently
        multilingual = (vqa_texts[JA] + vqa_texts[HI] + vqa_texts["en"][::4] + vqa_texts["tags"][::4]
                        + vqa_texts["answers_hi"] + jvg_texts[JA] + jvg_texts["answers_ja"] + jvg_texts["tags"]
                        + vqa_texts["extra"])  # empty unless the preset adds languages
        tok_summary = build_tokenizers(tmp, english, multilingual, [c.en for c in CLASSES[:preset.n_classes]],
                                       preset)
        t_gen = time.perf_counter() - t0
        manifest = {
            "generator": "cvil.data.synth", "generator_version": GENERATOR_VERSION,
            "preset": preset.name, "seed": int(seed),
            "feature_dim": preset.feat_dim, "max_regions": 50,
            "regions_per_image": {"small": list(preset.regions_small), "large": list(preset.regions_large),
                                  "large_share": preset.large_scene_frac},
            "max_tags": preset.max_tags, "num_classes": preset.n_classes, "num_colours": preset.n_colours,
            "classes": [c.en for c in CLASSES[:preset.n_classes]],
            "colours": [c.en for c in COLOURS[:preset.n_colours]],
            "teacher_accuracy_target": preset.teacher_accuracy_target,
            "vqa": vqa_summary, "vg": jvg_summary, "tokenizers": tok_summary,
            "size_mb": {name: round(_dir_size(tmp / name) / 2**20, 3) for name in ("vqa", "vg", "tokenizers")},
            "files": {name: _files(tmp / name) for name in ("vqa", "vg", "tokenizers")},
        }
        if preset.languages:  # absent from the default worlds' manifests (byte-identical to before)
            manifest["languages"] = list(preset.languages)
        if pretrain_summary is not None:  # absent from world v2's manifest
            manifest[PRETRAIN] = pretrain_summary
            manifest["size_mb"][PRETRAIN] = round(_dir_size(tmp / PRETRAIN) / 2**20, 3)
            manifest["files"][PRETRAIN] = _files(tmp / PRETRAIN)
        _write_json(tmp / WORLD_FILE, manifest, indent=2)
        if out.exists():
            for name in OWNED_ENTRIES:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        out.mkdir(parents=True, exist_ok=True)
        for p in sorted(tmp.iterdir()):
            p.rename(out / p.name)
        _write_json(out / TIMING_FILE, {"seconds_to_generate": round(t_gen, 3),
                                        "seconds_total": round(time.perf_counter() - t0, 3)}, indent=2)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest
