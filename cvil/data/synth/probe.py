"""Learnability probe of a synthetic world: can a small non-transformer model recover the answers from the files?

`python -m cvil.data.synth.probe ROOT [--epochs N]` reads only the written files (QLA JSON, label maps, per-image
features), trains

- `image`: a bag-of-words question encoder that attends over the regions (one attention head: the question picks
  the region whose class prototype it names) and answers from the question and the attended region; and
- `text-only`: the same without the regions (the question-type prior),

on the English VQA set (BCE on the soft scores) and on the JVG-like set (character uni+bigram bag of the Japanese
question, one-hot targets), and prints the validation VQA score / accuracy per question type. The gap between the
two rows is what the image contributes; a transformer teacher should reach at least the `image` row.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cvil.data import layout
from cvil.data.synth.lexicon import JA
from cvil.data.safe_pickle import load_restricted_pickle
from cvil.data.text import english_words


def _num_labels(folder: Path) -> int:
    """The label count of a dataset folder, read through the restricted unpickler (a label map may be untrusted)."""
    return len(load_restricted_pickle(folder / layout.LABEL2ANS))

MAX_REGIONS = 50


def _load_rows(folder: Path, split: str) -> list[dict]:
    with open(layout.qla_path(folder, split), encoding="utf-8") as f:
        return [r for r in json.load(f) if r["an"]]


def _features(folder: Path, split: str, img_ids) -> dict[int, torch.Tensor]:
    d = layout.feature_dir(folder, split)
    return {i: torch.load(d / f"{i}.pt", weights_only=True)[:MAX_REGIONS] for i in sorted(set(img_ids))}


def _bag(tokens_per_row: list[list[str]], vocab: dict[str, int]) -> torch.Tensor:
    x = torch.zeros(len(tokens_per_row), len(vocab) + 1)
    for i, toks in enumerate(tokens_per_row):
        for t in toks:
            x[i, vocab.get(t, len(vocab))] = 1.0
    return x


def _stack(rows, feats) -> tuple[torch.Tensor, torch.Tensor]:
    r = max(feats[row["img_id"]].shape[0] for row in rows)
    dim = next(iter(feats.values())).shape[1]
    x = torch.zeros(len(rows), r, dim)
    mask = torch.zeros(len(rows), r, dtype=torch.bool)
    for i, row in enumerate(rows):
        f = feats[row["img_id"]]
        x[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = True
    return x, mask


def _targets(rows, n_labels: int) -> torch.Tensor:
    y = torch.zeros(len(rows), n_labels)
    for i, row in enumerate(rows):
        for a, s in zip(row["an"], row["s"]):
            y[i, a] = float(s)
    return y


class Probe(nn.Module):
    def __init__(self, n_words: int, feat_dim: int, n_labels: int, hidden: int = 128, use_image: bool = True):
        super().__init__()
        self.use_image = use_image
        self.q = nn.Sequential(nn.Linear(n_words, hidden), nn.ReLU())
        self.key = nn.Linear(feat_dim, hidden)
        self.value = nn.Linear(feat_dim, hidden)
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_labels))

    def forward(self, bag, feats, mask):
        q = self.q(bag)
        if self.use_image:
            att = torch.einsum("bh,brh->br", q, self.key(feats)) / q.shape[-1] ** 0.5
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            v = torch.einsum("br,brh->bh", att, self.value(feats))
        else:
            v = torch.zeros_like(q)
        return self.out(torch.cat([q, v * q], -1))


def _fit(train, val, n_labels, use_image, epochs, seed=0, lr=3e-3, batch=128, init=None, return_model=False):
    torch.manual_seed(seed)
    bag, feats, mask, y = train
    model = Probe(bag.shape[1], feats.shape[2], n_labels, use_image=use_image)
    if init is not None:        # transfer everything but the answer layer
        state = {k: v for k, v in init.state_dict().items() if not k.startswith("out.2.")}
        model.load_state_dict(state, strict=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(bag), generator=g)
        for k in range(0, len(bag), batch):
            idx = perm[k:k + batch]
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(bag[idx], feats[idx], mask[idx]), y[idx]) * n_labels
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        vb, vf, vm, vy = val
        pred = model(vb, vf, vm).argmax(-1)
        scores = vy[torch.arange(len(vy)), pred]        # VQA score / 1-0 accuracy of each val row
    return (scores, model) if return_model else scores


def _report(name: str, scores: torch.Tensor, groups: list[str], scale: float = 1.0) -> dict:
    by = defaultdict(list)
    for s, g in zip(scores.tolist(), groups):
        by[g].append(s)
    out = {"all": round(100 * scale * float(scores.mean()), 1)}
    out.update({g: round(100 * scale * float(np.mean(v)), 1) for g, v in sorted(by.items())})
    print(f"  {name:<10} " + "  ".join(f"{k}={v}" for k, v in out.items()))
    return out


def probe_vqa(root: Path, epochs: int) -> dict:
    folder = root / "vqa"
    n_labels = _num_labels(folder)
    data = {}
    vocab: dict[str, int] = {}
    for split in ("train", "val"):
        rows = _load_rows(folder, split)
        toks = [list(english_words(r["en"])) for r in rows]
        if split == "train":
            vocab = {w: i for i, w in enumerate(sorted({t for ts in toks for t in ts}))}
        feats, mask = _stack(rows, _features(folder, split, [r["img_id"] for r in rows]))
        data[split] = ((_bag(toks, vocab), feats, mask, _targets(rows, n_labels)), rows)
    groups = [r["question_type"] for r in data["val"][1]]
    print(f"VQA (English, val VQA score, {len(data['train'][1])} train / {len(data['val'][1])} val questions)")
    res = {}
    for name, use_image in (("image", True), ("text-only", False)):
        res[name] = _report(name, _fit(data["train"][0], data["val"][0], n_labels, use_image, epochs), groups)
    return res


def _ja_tokens(text: str) -> list[str]:
    return list(text) + [text[i:i + 2] for i in range(len(text) - 1)]


def probe_jvg(root: Path, epochs: int) -> dict:
    """JVG alone (2k questions) overfits a probe trained from scratch; `image+aug` first trains the same probe on
    the translated Japanese VQA questions (the AUG idea) and then fine-tunes it on JVG with a new answer layer."""
    folder = root / "vg"
    n_labels = _num_labels(folder)
    with open(layout.qla_path(folder, "val"), encoding="utf-8") as f:
        all_val = json.load(f)
    coverage = sum(1 for r in all_val if r["an"]) / len(all_val)
    rows = {s: _load_rows(folder, s) for s in ("train", "val")}
    aug = {s: _load_rows(root / "vqa", s) for s in ("train", "val")}
    counts = Counter(t for r in rows["train"] + aug["train"] for t in _ja_tokens(r[JA]))
    vocab = {w: i for i, w in enumerate(sorted(w for w, n in counts.items() if n >= 2))}

    def tensors(folder_, split, rs, n):
        feats, mask = _stack(rs, _features(folder_, split, [r["img_id"] for r in rs]))
        return _bag([_ja_tokens(r[JA]) for r in rs], vocab), feats, mask, _targets(rs, n)

    data = {s: tensors(folder, s, rows[s], n_labels) for s in ("train", "val")}
    groups = [r.get("question_type", "?") for r in rows["val"]]
    print(f"JVG (Japanese, val accuracy on covered rows; coverage {coverage:.1%}, "
          f"{len(rows['train'])} train / {len(rows['val'])} val covered questions)")
    res = {}
    for name, use_image in (("image", True), ("text-only", False)):
        res[name] = _report(name, _fit(data["train"], data["val"], n_labels, use_image, epochs * 3), groups)
    n_vqa = _num_labels(root / "vqa")
    aug_scores, pre = _fit(tensors(root / "vqa", "train", aug["train"], n_vqa),
                           tensors(root / "vqa", "val", aug["val"], n_vqa), n_vqa, True, epochs, return_model=True)
    print(f"  (translated ja VQA val score of the AUG-pretrained probe: {100 * float(aug_scores.mean()):.1f})")
    res["image+aug"] = _report("image+aug", _fit(data["train"], data["val"], n_labels, True, epochs * 3,
                                                 init=pre), groups)
    res["coverage"] = round(coverage, 4)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cvil.data.synth.probe", description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a world written by `cvil synth`")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = {"vqa": probe_vqa(args.root, args.epochs), "vg": probe_jvg(args.root, args.epochs)}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"probe took {res['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
