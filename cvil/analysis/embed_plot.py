"""`cvil embed-plot`: the paper's Fig. 3, a 2-D map of last-layer token embeddings of teacher and student.

The teacher runs on the English questions (+ tags + image) of the VQA-like split (`vqa/`), the student on the
Japanese questions of the JVG-like split (`vg/`), as in the paper (§V-B). For the chosen objects (default car, cat,
elephant, horse, umbrella) two kinds of points are taken from each model's LAST layer:

- word tokens: question tokens equal to the object's word, English for the teacher (`cat`) and its translation for
  the student (`猫`); only words that are a single subword in both tokenizers are used, as in the paper. The
  translations come from `--pairs car=車,cat=猫,...`, or, by default, from the synthetic world's lexicon.
- image tokens: region slots labelled with their detector class from the split's `image_labels.tsv` (VinVL
  `predictions.tsv` format). A region is matched to its detection by its box (the last 6 feature dims are the
  normalised box, the VinVL convention) and, when that is not possible, by position (region r = detection r, the
  order of VinVL's own files). Without an `image_labels.tsv` a side's image tokens are skipped with a warning.

Three panels, each embedded on its own: (a) teacher vs student word tokens, (b) teacher vs student image tokens,
(c) student word vs image tokens; colour = object, marker = model/modality. t-SNE is scikit-learn's; without
scikit-learn a PCA projection is drawn instead and the figure says so. The PNG can be logged to an MLflow run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cvil.analysis.embed_plot_draw import draw
from cvil.errors import CvilError
from cvil.languages import JVG_LANGUAGE

DEFAULT_OBJECTS = ("car", "cat", "elephant", "horse", "umbrella")


class EmbedPlotError(CvilError, ValueError):
    pass


@dataclass
class EmbedPlotResult:
    path: Path
    counts: dict[str, dict[str, int]]  # panel -> group -> number of points drawn
    method: str  # "t-SNE" or "PCA"
    pairs: dict[str, str]  # the object words used: English -> target language
    skipped: list[str] = field(default_factory=list)  # warnings (dropped words, sides without image labels)


# ------------------------------------------------------------------------------------------- object words
def parse_pairs(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        en, sep, tgt = item.partition("=")
        if not sep or not en.strip() or not tgt.strip():
            raise EmbedPlotError(f"--pairs entry {item!r} is not EN=TRANSLATION")
        pairs[en.strip().lower()] = tgt.strip()
    return pairs


def object_pairs(objects: Sequence[str], pairs: dict[str, str] | None, lang: str = JVG_LANGUAGE) -> dict[str, str]:
    """English object -> target-language word, from `pairs` or the synthetic lexicon's words in `lang`."""
    if pairs is None:
        from cvil.data.synth.lexicon import class_words

        try:
            pairs = class_words(lang)
        except KeyError as exc:
            raise EmbedPlotError(f"{exc.args[0]}: pass --pairs EN=WORD,...") from None
        source = f"the synthetic lexicon's {lang!r} words (pass --pairs for real data)"
    else:
        source = "--pairs"
    missing = [o for o in objects if o not in pairs]
    if missing:
        raise EmbedPlotError(f"no translation for {missing} in {source}")
    return {o: pairs[o] for o in objects}


def single_subword_ids(pairs: dict[str, str], teacher_tok, student_tok, notes: list[str]) -> dict[str, tuple[int, int]]:
    """English object -> (teacher token id, student token id) for words that are ONE subword in both tokenizers."""
    kept = {}
    for en, tgt in pairs.items():
        t_pieces, s_pieces = teacher_tok.tokenize(en), student_tok.tokenize(tgt)
        unknown = [p for p, tok in ((t_pieces, teacher_tok), (s_pieces, student_tok)) if tok.unk_token in p]
        if unknown:
            notes.append(f"'{en}'/{tgt!r} dropped: unknown to a tokenizer (teacher {t_pieces}, student {s_pieces})")
            continue
        if len(t_pieces) != 1 or len(s_pieces) != 1:
            notes.append(f"'{en}'/{tgt!r} dropped: not a single subword in both tokenizers "
                         f"(teacher {t_pieces}, student {s_pieces})")
            continue
        kept[en] = (teacher_tok.convert_tokens_to_ids(t_pieces[0]), student_tok.convert_tokens_to_ids(s_pieces[0]))
    return kept


# ---------------------------------------------------------------------------------------------- image labels
def region_classes(detections: Sequence, feats: np.ndarray, *, tol: float = 0.005) -> list[str | None]:
    """The detector class of each region row of `feats` (`[n, D]`), or None when no detection matches.

    With VinVL-style box dims (last 6 = x1, y1, x2, y2, w, h normalised to [0, 1]) regions are matched to
    detections by box: the image size is estimated from pairs whose four coordinates agree with one scale, then each
    region takes the detection whose pixel box it reproduces (within `tol` of the image size). Otherwise region r
    takes detection r, the order of VinVL's own prediction and feature files.
    """
    n = feats.shape[0]
    by_order = [detections[r].cls if r < len(detections) else None for r in range(n)]
    if n == 0 or not detections or feats.shape[1] < 7:
        return by_order
    boxes = feats[:, -6:-2].astype(np.float64)
    if not (np.all(boxes >= -1e-3) and np.all(boxes <= 1 + 1e-3) and np.all(boxes[:, 2:] >= boxes[:, :2])):
        return by_order
    rects = np.array([d.rect for d in detections], dtype=np.float64)  # [m, 4] pixels
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    rw, rh = rects[:, 2] - rects[:, 0], rects[:, 3] - rects[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = rw[None, :] / bw[:, None]  # [n, m] implied image width / height per pair
        h = rh[None, :] / bh[:, None]
        scale = np.stack([w, h, w, h], axis=-1)
        err = np.abs(boxes[:, None, :] * scale - rects[None, :, :]).max(-1) / np.maximum(w, h)
    consistent = np.isfinite(err) & (err < tol) & (bw[:, None] > 1e-3) & (bh[:, None] > 1e-3)
    if not consistent.any():
        return by_order
    size = np.array([np.median(w[consistent]), np.median(h[consistent])])
    dist = np.abs(boxes[:, None, :] * np.tile(size, 2)[None, None, :] - rects[None, :, :]).max(-1) / size.max()
    best = dist.argmin(1)
    return [detections[j].cls if dist[i, j] < 2 * tol else None for i, j in enumerate(best)]


# ----------------------------------------------------------------------------------------------- embeddings
@dataclass
class SideSpec:
    name: str  # "teacher" or "student"
    model_dir: Path
    tokenizer_dir: Path
    folder: Path  # dataset folder (vqa/ or vg/)
    lang: str


def _default_tokenizer(model_dir: Path, root: Path, side: str) -> Path:
    """The dataset's tokenizer folder for this side when there is one (as the training configs set it), else the
    checkpoint folder (an Oscar checkpoint ships its `vocab.txt`)."""
    shared = root / "tokenizers" / side
    return shared if shared.is_dir() else model_dir


def _load_model(model_dir: Path, num_labels: int, img_dim: int, device: torch.device):
    from cvil.models.checkpoint import CheckpointError
    from cvil.models.oscar import OscarVQA

    try:
        model = OscarVQA.from_pretrained(model_dir)
    except CheckpointError as exc:  # a text-only BERT (a student init): the image embedding starts fresh
        if "text-only" not in str(exc):
            raise
        model = OscarVQA.from_pretrained(model_dir, num_labels=num_labels, img_feature_dim=img_dim)
    return model.to(device).eval()


@torch.no_grad()
def side_embeddings(spec: SideSpec, split: str, word_ids: dict[int, str], classes: set[str], *,
                    max_examples: int, max_regions: int, batch_size: int, device: torch.device,
                    notes: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """{"text": (labels, [N, H]), "image": (labels, [M, H])}: last-layer embeddings of one model on one split."""
    from cvil.data import layout
    from cvil.inputs.collate import collate
    from cvil.data.image_labels import read_image_labels
    from cvil.data.qla import read_qla
    from cvil.inputs.dataset import VQADataset
    from cvil.data.label_sets import label_maps
    from cvil.data.split_features import open_split_features
    from cvil.data.tokenizers import load_tokenizer

    path = layout.qla_path(spec.folder, split)
    if not path.is_file():
        raise EmbedPlotError(f"{spec.name}: no {split} split at {path}")
    rows = [r for r in read_qla(path, drop_empty=False).rows if spec.lang in r.questions]
    if not rows:
        raise EmbedPlotError(f"{spec.name}: no {spec.lang!r} questions in {path}")
    labels_path = spec.folder / layout.IMAGE_LABELS
    image_labels = read_image_labels(labels_path) if labels_path.is_file() else None
    if image_labels is None:
        msg = f"{spec.name}: no {labels_path}: its image tokens are skipped"
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
    tokenizer = load_tokenizer(spec.tokenizer_dir)
    # questions that mention an object first, so a small --max-examples still finds them
    words = [tokenizer.convert_ids_to_tokens(i) for i in word_ids]
    rows.sort(key=lambda r: not any(w in r.questions[spec.lang].lower() for w in words))
    rows = rows[:max_examples]
    features = open_split_features(spec.folder, split)
    model = _load_model(spec.model_dir, len(label_maps(spec.folder)), features.dim, device)
    max_text = min(128, int(model.config.max_position_embeddings))
    ds = VQADataset(rows, tokenizer, features, len(label_maps(spec.folder)), spec.lang, max_regions,
                    max_text_len=max_text)
    ids_t = torch.tensor(sorted(word_ids))
    text_labels, text_vecs, img_labels, img_vecs = [], [], [], []
    for start in range(0, len(ds), batch_size):
        idx = range(start, min(start + batch_size, len(ds)))
        batch = collate([ds[i] for i in idx])
        hidden = model.encode(*(batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask",
                                                              "img_feats"))).last_hidden_state.float().cpu()
        t = batch["input_ids"].shape[1]
        question = (batch["token_type_ids"] == 0) & batch["attention_mask"][:, :t].bool()
        hits = question & torch.isin(batch["input_ids"], ids_t)
        for b, p in hits.nonzero().tolist():
            text_labels.append(word_ids[int(batch["input_ids"][b, p])])
            text_vecs.append(hidden[b, p].numpy())
        if image_labels is None:
            continue
        n_regions = batch["attention_mask"][:, t:].sum(1).tolist()
        for b, i in enumerate(idx):
            dets = image_labels.get(int(ds.img_ids[i]), [])
            names = region_classes(dets, batch["img_feats"][b, : n_regions[b]].numpy())
            for r, cls in enumerate(names):
                if cls in classes:
                    img_labels.append(cls)
                    img_vecs.append(hidden[b, t + r].numpy())
    dim = int(model.config.hidden_size)

    def pack(vecs):
        return np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)

    return {"text": (text_labels, pack(text_vecs)), "image": (img_labels, pack(img_vecs))}


# --------------------------------------------------------------------------------------------------- drawing
def _cap(labels: list[str], vecs: np.ndarray, per_class: int, rng: np.random.Generator):
    keep = []
    for cls in sorted(set(labels)):
        where = [i for i, lab in enumerate(labels) if lab == cls]
        if len(where) > per_class:
            where = sorted(rng.choice(where, per_class, replace=False).tolist())
        keep.extend(where)
    keep.sort()
    return [labels[i] for i in keep], vecs[keep] if keep else vecs[:0]


# -------------------------------------------------------------------------------------------------------- API
def embed_plot(
    teacher: str | Path,
    student: str | Path,
    data_root: str | Path,
    *,
    objects: Sequence[str] = DEFAULT_OBJECTS,
    pairs: dict[str, str] | None = None,
    split: str = "val",
    out: str | Path = "embed_plot.png",
    max_examples: int = 2000,
    max_points_per_class: int = 200,
    teacher_tokenizer: str | Path | None = None,
    student_tokenizer: str | Path | None = None,
    teacher_dataset: str = "vqa",
    student_dataset: str = "vg",
    student_lang: str = JVG_LANGUAGE,
    max_regions: int = 50,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    run_id: str | None = None,
    tracking_uri: str = "",
) -> EmbedPlotResult:
    """Draw Fig. 3 into `out` (PNG) and return the point counts per panel; see the module docstring."""
    from cvil.data.tokenizers import load_tokenizer

    root, teacher, student = Path(data_root), Path(teacher), Path(student)
    objects = [o.strip().lower() for o in objects if o.strip()]
    if not objects:
        raise EmbedPlotError("no objects chosen")
    notes: list[str] = []
    chosen = object_pairs(objects, pairs, student_lang)
    t_spec = SideSpec("teacher", teacher, Path(teacher_tokenizer or _default_tokenizer(teacher, root, "teacher")),
                      root / teacher_dataset, "en")
    s_spec = SideSpec("student", student, Path(student_tokenizer or _default_tokenizer(student, root, "student")),
                      root / student_dataset, student_lang)
    ids = single_subword_ids(chosen, load_tokenizer(t_spec.tokenizer_dir), load_tokenizer(s_spec.tokenizer_dir), notes)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if not ids:
        raise EmbedPlotError(f"none of the objects {objects} is a single subword in both tokenizers")
    used = {o: chosen[o] for o in ids}
    classes = set(ids)
    dev = torch.device(device)
    common = dict(max_examples=max_examples, max_regions=max_regions, batch_size=batch_size, device=dev, notes=notes)
    t_emb = side_embeddings(t_spec, split, {t: o for o, (t, _) in ids.items()}, classes, **common)
    s_emb = side_embeddings(s_spec, split, {s: o for o, (_, s) in ids.items()}, classes, **common)
    rng = np.random.default_rng(seed)
    points = {f"{side}_{kind}": _cap(*emb[kind], max_points_per_class, rng)
              for side, emb in (("teacher", t_emb), ("student", s_emb)) for kind in ("text", "image")}
    if not any(len(labels) for labels, _ in points.values()):
        raise EmbedPlotError(
            f"none of the objects {sorted(used)} occurs in the {split} split: no word token "
            f"({', '.join(f'{o}/{t}' for o, t in used.items())}) in the questions of {t_spec.folder} / "
            f"{s_spec.folder} and no image region of those classes")
    out = Path(out)
    counts, method = draw(points, list(used), out, seed)
    if run_id:
        from mlflow.tracking import MlflowClient

        from cvil.tracking import resolve_tracking_uri

        MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri)).log_artifact(run_id, str(out), "figures")
    return EmbedPlotResult(path=out, counts=counts, method=method, pairs=used, skipped=notes)

