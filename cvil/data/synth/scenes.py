"""Scenes: regions (objects with class, colour, size, box), their feature vectors, and the detector's tags.

A region's feature is `class prototype + colour prototype + size prototype + noise` (D-6 dims, unit-variance
prototypes drawn once per world), followed by the 6 box dims in [0, 1] (x1, y1, x2, y2, w, h; the VinVL
convention). Boxes are placed in one of the 3 × 3 cells of the image, so "where is the X?" is answered by the
geometry of the region whose class prototype matches X. Colours and positions live only in the features; the
detector tags (`o`) name classes only, with misses and hallucinations, so a model must look at the regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvil.data.synth.lexicon import CLASSES, POSITION_BY_CELL

SIZES = ("small", "medium", "large")
SIZE_EXTENT = {"small": (0.08, 0.16), "medium": (0.16, 0.28), "large": (0.28, 0.4)}
SIZE_PROBS = (0.4, 0.4, 0.2)
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))


@dataclass(frozen=True)
class Region:
    cls: int
    colour: int
    size: int               # index into SIZES
    box: tuple              # (x1, y1, x2, y2) in [0, 1]

    @property
    def cell(self) -> tuple[int, int]:
        cx = (self.box[0] + self.box[2]) / 2
        cy = (self.box[1] + self.box[3]) / 2
        return (min(int(cy * 3), 2), min(int(cx * 3), 2))

    @property
    def position(self) -> str:
        return POSITION_BY_CELL[self.cell].en


@dataclass(frozen=True)
class Detection:
    cls: int
    rect: tuple             # pixel box (x1, y1, x2, y2)
    conf: float


@dataclass(frozen=True)
class Scene:
    img_id: int
    width: int
    height: int
    regions: tuple
    detections: tuple       # sorted by confidence, descending (capped at the preset's max_tags)

    @property
    def tags(self) -> str:
        return ";".join(CLASSES[d.cls].en for d in self.detections)

    def count(self, cls: int) -> int:
        return sum(1 for r in self.regions if r.cls == cls)

    def unique_classes(self) -> list[int]:
        """Classes present exactly once (so "what color is the X?" has one answer), sorted."""
        counts: dict[int, int] = {}
        for r in self.regions:
            counts[r.cls] = counts.get(r.cls, 0) + 1
        return sorted(c for c, n in counts.items() if n == 1)

    def lone_regions_by_cell(self) -> dict[tuple[int, int], Region]:
        """The 3 x 3 cells holding exactly one region (so "what is in the top left?" has one answer), sorted."""
        by_cell: dict[tuple[int, int], list[Region]] = {}
        for r in self.regions:
            by_cell.setdefault(r.cell, []).append(r)
        return {cell: rs[0] for cell, rs in sorted(by_cell.items()) if len(rs) == 1}

    def region_of(self, cls: int) -> Region:
        return next(r for r in self.regions if r.cls == cls)


class Prototypes:
    """The per-world prototype vectors: one per class, colour, size and 3 x 3 image cell."""

    def __init__(self, rng: np.random.Generator, n_classes: int, n_colours: int, dim: int):
        self.dim = dim
        self.cls = rng.standard_normal((n_classes, dim)).astype(np.float32)
        self.colour = rng.standard_normal((n_colours, dim)).astype(np.float32)
        self.size = rng.standard_normal((len(SIZES), dim)).astype(np.float32)
        self.cell = rng.standard_normal((9, dim)).astype(np.float32)  # drawn last: earlier prototypes unchanged


def zipf_weights(n: int, exponent: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Class/colour frequencies ∝ 1/rank^exponent, ranks permuted by `rng` (or in lexicon order)."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    if rng is not None:
        w = w[rng.permutation(n)]
    return w / w.sum()


def make_region(rng: np.random.Generator, cls: int, colour: int, jitter: float | None = None) -> Region:
    size = int(rng.choice(len(SIZES), p=SIZE_PROBS))
    lo, hi = SIZE_EXTENT[SIZES[size]]
    w, h = rng.uniform(lo, hi, size=2)
    row, col = rng.integers(0, 3, size=2)
    margin = 0.05 if jitter is None else 1 / 6 - jitter
    cx = rng.uniform(col / 3 + margin, (col + 1) / 3 - margin)
    cy = rng.uniform(row / 3 + margin, (row + 1) / 3 - margin)
    # clipping at the border keeps the centre inside the same cell (extent <= 0.4, margin 0.05)
    x1, x2 = max(0.0, cx - w / 2), min(1.0, cx + w / 2)
    y1, y2 = max(0.0, cy - h / 2), min(1.0, cy + h / 2)
    box = tuple(round(float(v), 4) for v in (x1, y1, x2, y2))
    return Region(cls=cls, colour=colour, size=size, box=box)


def make_scene(rng: np.random.Generator, img_id: int, preset, class_w: np.ndarray, colour_w: np.ndarray) -> Scene:
    lo, hi = preset.regions_large if rng.random() < preset.large_scene_frac else preset.regions_small
    n = int(rng.integers(lo, hi + 1))
    classes = rng.choice(len(class_w), size=n, p=class_w)
    colours = rng.choice(len(colour_w), size=n, p=colour_w)
    regions = tuple(make_region(rng, int(c), int(k), preset.position_jitter) for c, k in zip(classes, colours))
    width, height = IMAGE_SIZES[int(rng.integers(0, len(IMAGE_SIZES)))]
    detections = _detect(rng, regions, preset, width, height, len(class_w))
    return Scene(img_id=img_id, width=width, height=height, regions=regions, detections=detections)


def _detect(rng, regions, preset, width, height, n_classes) -> tuple:
    dets = []
    for r in regions:
        conf = float(rng.uniform(0.5, 0.99))
        if rng.random() < preset.tag_miss:
            continue
        rect = (r.box[0] * width, r.box[1] * height, r.box[2] * width, r.box[3] * height)
        dets.append(Detection(r.cls, tuple(round(v, 2) for v in rect), round(conf, 4)))
    present = {r.cls for r in regions}
    absent = [c for c in range(n_classes) if c not in present]
    for chance in (preset.tag_false_pos, preset.tag_false_pos / 2):
        if absent and rng.random() < chance:
            c = int(absent[int(rng.integers(0, len(absent)))])
            fake = make_region(rng, c, 0).box
            rect = (fake[0] * width, fake[1] * height, fake[2] * width, fake[3] * height)
            dets.append(Detection(c, tuple(round(v, 2) for v in rect), round(float(rng.uniform(0.3, 0.6)), 4)))
    dets.sort(key=lambda d: (-d.conf, d.cls, d.rect))
    return tuple(dets[: preset.max_tags])


def scene_features(rng: np.random.Generator, scene: Scene, protos: Prototypes, preset) -> np.ndarray:
    """float32 [n_regions, feat_dim]: prototypes + noise, then the 6 box dims in [0, 1]."""
    n = len(scene.regions)
    cls = np.array([r.cls for r in scene.regions])
    col = np.array([r.colour for r in scene.regions])
    size = np.array([r.size for r in scene.regions])
    cells = np.array([r.cell[0] * 3 + r.cell[1] for r in scene.regions])
    body = preset.body_scale * (protos.cls[cls] + preset.colour_scale * protos.colour[col]
                                + preset.size_scale * protos.size[size]
                                + preset.feat_noise * rng.standard_normal((n, protos.dim)).astype(np.float32))
    if preset.cell_scale:  # where the region sits also shows in its appearance, as in a real detector's ROI features
        body = body + preset.body_scale * preset.cell_scale * protos.cell[cells]
    boxes = np.array([r.box for r in scene.regions], dtype=np.float32).reshape(n, 4)
    geom = np.concatenate([boxes, boxes[:, 2:3] - boxes[:, 0:1], boxes[:, 3:4] - boxes[:, 1:2]], axis=1)
    return np.concatenate([body, geom], axis=1).astype(np.float32)
