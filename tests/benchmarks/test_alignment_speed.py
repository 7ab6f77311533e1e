"""KD alignment preprocessing: precomputed once at dataset construction vs the reference's per-step Python walk.

Run with `pytest tests/benchmarks/test_alignment_speed.py --benchmark-only` (skipped by default). Synthetic rows:
5 questions per image sharing the image's tags (as VQA), a teacher and a student vocabulary that split some words
differently. Variants:
- `construction`: `VQADataset(..., kd=KDSelection())`, i.e. encoding both texts and the tag walk for every example,
  once per run (examples/s);
- `precomputed_step`: what a step then pays for the KD pairs (`__getitem__` with a no-op feature store);
- `codemix_construction` / `codemix_step`: the same with code-mixing (Hindi-like rows), whose step draws a sentence,
  tokenises it, runs alignment B and the (cached) tag walk;
- `naive_walk_step`: the reference's per-step `get_align` on already tokenised texts (178-slot arrays, walk);
- `naive_tokenize_walk_step`: the reference's `__getitem__` path, tokenising both texts and then walking.
The ratio test alternates the two per-step variants in one process and reports medians (shared machine: gate on
ratios only).
"""

from __future__ import annotations

import random
import statistics
import time

import pytest
import torch
from transformers import BertTokenizerFast

from cvil.inputs.encoding import encode_text
from cvil.data.qla import QLARow
from cvil.inputs.dataset import VQADataset
from cvil.inputs.alignment import KDSelection
from bench.throughput.reference_align import reference_get_align

N_IMAGES, PER_IMAGE, WORDS = 400, 5, 300
N = N_IMAGES * PER_IMAGE
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class _NoFeatures:
    def get(self, img_id: int, max_regions: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(max_regions, 4), max_regions


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align_bench")
    words = [f"w{i}" for i in range(WORDS)]
    pieces = [f"##{i}" for i in range(WORDS)]
    (folder / "t.txt").write_text("\n".join(SPECIALS + words + ["w"] + pieces + ["?"]) + "\n")
    # the student lacks every third whole word, so those are split `w` `##i` (different splits on the two sides)
    student_words = [w for i, w in enumerate(words) if i % 3]
    (folder / "s.txt").write_text("\n".join(SPECIALS + student_words + ["w"] + pieces + ["?"]) + "\n")
    teacher = BertTokenizerFast(str(folder / "t.txt"), do_lower_case=True)
    student = BertTokenizerFast(str(folder / "s.txt"), do_lower_case=True, tokenize_chinese_chars=True,
                                strip_accents=True)
    rng = random.Random(0)
    rows = []
    for img in range(N_IMAGES):
        tags = ";".join(rng.sample(words, rng.randint(5, 15)))
        for k in range(PER_IMAGE):
            q_words = rng.sample(words, rng.randint(5, 12)) + ["?"]
            q = " ".join(q_words)
            hi_en = [[f"x{w}", w, i] if rng.random() < 0.7 else [f"x{w}"] for i, w in enumerate(q_words)]
            rows.append(QLARow(questions={"en": q, "ja": q, "hi": " ".join(f"x{w}" for w in q_words)}, tags=tags,
                               answer_ids=(0,), scores=(1.0,), img_id=img, q_id=img * PER_IMAGE + k,
                               alignments={"hi": hi_en}))
    return {"rows": rows, "teacher": teacher, "student": student}


def _dataset(world, codemix: bool = False) -> VQADataset:
    return VQADataset(world["rows"], world["student"], _NoFeatures(), 1, "hi" if codemix else "ja", 50,
                      teacher_tokenizer=world["teacher"], kd=KDSelection(codemix=codemix))


def _texts(world, row):
    return (encode_text(world["teacher"], row.questions["en"], row.tags).tokens,
            encode_text(world["student"], row.questions["ja"], row.tags).tokens)


def _report(benchmark, n_examples: int) -> None:
    if benchmark.stats is not None:
        benchmark.extra_info["examples_per_s"] = round(n_examples / benchmark.stats.stats.median, 1)


def test_construction(benchmark, world):
    ds = benchmark.pedantic(lambda: _dataset(world), rounds=3, iterations=1)
    assert len(ds) == N
    _report(benchmark, N)


def test_precomputed_step(benchmark, world):
    ds = _dataset(world)
    benchmark.pedantic(lambda: [ds[i]["kd_text_pairs"] for i in range(N)], rounds=3, iterations=1)
    _report(benchmark, N)


def test_codemix_construction(benchmark, world):
    ds = benchmark.pedantic(lambda: _dataset(world, codemix=True), rounds=3, iterations=1)
    assert len(ds) == N
    _report(benchmark, N)


def test_codemix_step(benchmark, world):
    """A code-mix draw per step: new sentence, its tokenisation, alignment B and the cached tag walk."""
    ds = _dataset(world, codemix=True)
    epochs = iter(range(10**6))

    def epoch():
        ds.set_epoch(next(epochs))
        return [ds[i]["kd_text_pairs"] for i in range(N)]

    benchmark.pedantic(epoch, rounds=3, iterations=1)
    _report(benchmark, N)


def test_naive_walk_step(benchmark, world):
    texts = [_texts(world, row) for row in world["rows"]]
    benchmark.pedantic(lambda: [reference_get_align(t, s) for t, s in texts], rounds=3, iterations=1)
    _report(benchmark, N)


def test_naive_tokenize_walk_step(benchmark, world):
    benchmark.pedantic(lambda: [reference_get_align(*_texts(world, row)) for row in world["rows"]], rounds=3,
                       iterations=1)
    _report(benchmark, N)


def test_precomputed_step_beats_naive_walk(benchmark, world):
    """Same selected pairs, and the per-step cost ratio (alternating variants, medians)."""
    ds = _dataset(world)
    texts = [_texts(world, row) for row in world["rows"]]
    for i in range(0, N, 97):  # the precomputed pairs select what the reference's walk selects
        apply, align = reference_get_align(*texts[i])
        pairs = ds[i]["kd_text_pairs"]
        text_apply = apply[:128].nonzero().flatten().tolist()
        assert sorted(pairs[:, 0].tolist()) == text_apply
        assert all(align[s] == t for s, t, _ in pairs.tolist())
    timings: dict[str, list[float]] = {"precomputed": [], "naive": []}

    def once():
        for _ in range(3):
            start = time.perf_counter()
            for i in range(N):
                ds[i]["kd_text_pairs"]
            timings["precomputed"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for t, s in texts:
                reference_get_align(t, s)
            timings["naive"].append(time.perf_counter() - start)

    benchmark.pedantic(once, rounds=1, iterations=1)
    pre, naive = statistics.median(timings["precomputed"]), statistics.median(timings["naive"])
    benchmark.extra_info.update(precomputed_examples_per_s=round(N / pre, 1), naive_examples_per_s=round(N / naive, 1),
                                speedup=round(naive / pre, 2))
    assert naive / pre > 1.0
